//! Record framing (RFC 8446 §5.1, RFC 5246 §6.2.1) and the handshake messages a passive
//! observer needs: the ClientHello's random, SNI (RFC 6066 §3) and ALPN offer (RFC 7301),
//! the ServerHello's random, suite and version (RFC 8446 §4.1.3, §4.2.1), and the ALPN of
//! a TLS 1.3 EncryptedExtensions (§4.3.1). Everything else in a handshake is skipped.

pub(crate) const CHANGE_CIPHER_SPEC: u8 = 20;
pub(crate) const ALERT: u8 = 21;
pub(crate) const HANDSHAKE: u8 = 22;
pub(crate) const APPLICATION_DATA: u8 = 23;

pub(crate) const CLIENT_HELLO: u8 = 1;
pub(crate) const SERVER_HELLO: u8 = 2;
pub(crate) const ENCRYPTED_EXTENSIONS: u8 = 8;
pub(crate) const FINISHED: u8 = 20;
pub(crate) const KEY_UPDATE: u8 = 24;

/// Largest record body: 2^14 plus the expansion TLS 1.2 allows (RFC 5246 §6.2.3).
const MAX_RECORD: usize = (1 << 14) + 2048;
/// Largest handshake message held (certificate chains included).
const MAX_HANDSHAKE: usize = 1 << 20;

/// The random of a ServerHello that is really a HelloRetryRequest (RFC 8446 §4.1.3).
const RETRY_RANDOM: [u8; 32] = [
    0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11, 0xBE, 0x1D, 0x8C, 0x02, 0x1E, 0x65, 0xB8, 0x91,
    0xC2, 0xA2, 0x11, 0x16, 0x7A, 0xBB, 0x8C, 0x5E, 0x07, 0x9E, 0x09, 0xE2, 0xC8, 0xA8, 0x33, 0x9C,
];

/// The record layer was not TLS (or lost its framing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FramingError {
    #[error("not a TLS record header")]
    BadHeader,
    #[error("handshake message over the size limit")]
    HandshakeTooLarge,
}

/// The header of the first whole record of `buf` and the record's total length, `None`
/// while it is incomplete.
pub(crate) fn next_record(buf: &[u8]) -> Result<Option<([u8; 5], usize)>, FramingError> {
    if buf.len() < 5 {
        return Ok(None);
    }
    let header = [buf[0], buf[1], buf[2], buf[3], buf[4]];
    let len = usize::from(u16::from_be_bytes([buf[3], buf[4]]));
    if !(CHANGE_CIPHER_SPEC..=24).contains(&header[0]) || header[1] != 3 || len > MAX_RECORD {
        return Err(FramingError::BadHeader);
    }
    Ok((buf.len() >= 5 + len).then_some((header, 5 + len)))
}

/// Whether a flow's first bytes are a TLS handshake record carrying a ClientHello (or,
/// with `any_hello`, a ServerHello: a capture that missed the client's first flight).
pub(crate) fn starts_hello(b: &[u8], any_hello: bool) -> bool {
    b.len() >= 6
        && b[0] == HANDSHAKE
        && b[1] == 3
        && b[2] <= 4
        && (b[5] == CLIENT_HELLO || any_hello && b[5] == SERVER_HELLO)
}

/// Handshake messages of one direction, reassembled across records (RFC 8446 §5.1 lets a
/// message span records and a record hold several).
#[derive(Default)]
pub(crate) struct HandshakeReader {
    buf: Vec<u8>,
}

impl HandshakeReader {
    pub(crate) fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// The next whole message: its type and body.
    pub(crate) fn next(&mut self) -> Result<Option<(u8, Vec<u8>)>, FramingError> {
        if self.buf.len() < 4 {
            return Ok(None);
        }
        let len = usize::from(self.buf[1]) << 16
            | usize::from(self.buf[2]) << 8
            | usize::from(self.buf[3]);
        if len > MAX_HANDSHAKE {
            return Err(FramingError::HandshakeTooLarge);
        }
        if self.buf.len() < 4 + len {
            return Ok(None);
        }
        let kind = self.buf[0];
        let body = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Ok(Some((kind, body)))
    }
}

/// A byte cursor whose reads fail (`None`) past the end: handshake bytes are outside data.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u16(&mut self) -> Option<u16> {
        let b = self.take(2)?;
        Some(u16::from_be_bytes([b[0], b[1]]))
    }
    fn vec8(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }
    fn vec16(&mut self) -> Option<&'a [u8]> {
        let n = usize::from(self.u16()?);
        self.take(n)
    }
    fn random(&mut self) -> Option<[u8; 32]> {
        self.take(32)?.try_into().ok()
    }
}

/// Extensions as (type, data), from a `vec16` of them.
fn extensions(mut c: Cursor<'_>) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    let mut list = Cursor(if c.0.is_empty() { &[] } else { c.vec16()? });
    while !list.0.is_empty() {
        let kind = list.u16()?;
        out.push((kind, list.vec16()?));
    }
    Some(out)
}

/// ALPN protocol names (RFC 7301 §3.1).
fn alpn(data: &[u8]) -> Option<Vec<String>> {
    let mut list = Cursor(Cursor(data).vec16()?);
    let mut out = Vec::new();
    while !list.0.is_empty() {
        out.push(String::from_utf8_lossy(list.vec8()?).into_owned());
    }
    Some(out)
}

/// What a ClientHello says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ClientHello {
    pub random: [u8; 32],
    /// The host_name of server_name (RFC 6066 §3).
    pub sni: Option<String>,
    pub alpn: Vec<String>,
}

pub(crate) fn parse_client_hello(body: &[u8]) -> Option<ClientHello> {
    let mut c = Cursor(body);
    c.take(2)?; // legacy_version
    let random = c.random()?;
    c.vec8()?; // legacy_session_id
    c.vec16()?; // cipher_suites
    c.vec8()?; // legacy_compression_methods
    let mut hello = ClientHello {
        random,
        sni: None,
        alpn: Vec::new(),
    };
    for (kind, data) in extensions(c)? {
        match kind {
            0 => {
                let mut list = Cursor(Cursor(data).vec16()?);
                while !list.0.is_empty() {
                    let name_type = list.u8()?;
                    let name = list.vec16()?;
                    if name_type == 0 {
                        hello.sni = Some(String::from_utf8_lossy(name).into_owned());
                    }
                }
            }
            16 => hello.alpn = alpn(data)?,
            _ => {}
        }
    }
    Some(hello)
}

/// What a ServerHello says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServerHello {
    pub random: [u8; 32],
    pub suite: u16,
    /// The negotiated version: supported_versions' choice, else legacy_version.
    pub version: u16,
    /// ALPN's choice (TLS 1.2 puts it here; 1.3 in EncryptedExtensions).
    pub alpn: Option<String>,
    /// A HelloRetryRequest: a second ClientHello and ServerHello follow.
    pub retry: bool,
}

pub(crate) fn parse_server_hello(body: &[u8]) -> Option<ServerHello> {
    let mut c = Cursor(body);
    let legacy = c.u16()?;
    let random = c.random()?;
    c.vec8()?; // legacy_session_id_echo
    let suite = c.u16()?;
    c.u8()?; // legacy_compression_method
    let mut hello = ServerHello {
        random,
        suite,
        version: legacy,
        alpn: None,
        retry: random == RETRY_RANDOM,
    };
    for (kind, data) in extensions(c)? {
        match kind {
            43 => hello.version = Cursor(data).u16()?,
            16 => hello.alpn = alpn(data)?.into_iter().next(),
            _ => {}
        }
    }
    Some(hello)
}

/// The ALPN choice in a TLS 1.3 EncryptedExtensions.
pub(crate) fn parse_encrypted_extensions(body: &[u8]) -> Option<Option<String>> {
    let mut chosen = None;
    for (kind, data) in extensions(Cursor(body))? {
        if kind == 16 {
            chosen = alpn(data)?.into_iter().next();
        }
    }
    Some(chosen)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    fn vec16(b: &[u8]) -> Vec<u8> {
        let mut v = (b.len() as u16).to_be_bytes().to_vec();
        v.extend_from_slice(b);
        v
    }

    fn ext(kind: u16, data: &[u8]) -> Vec<u8> {
        let mut v = kind.to_be_bytes().to_vec();
        v.extend(vec16(data));
        v
    }

    fn alpn_ext(names: &[&str]) -> Vec<u8> {
        let mut list = Vec::new();
        for n in names {
            list.push(n.len() as u8);
            list.extend_from_slice(n.as_bytes());
        }
        ext(16, &vec16(&list))
    }

    /// A handshake message: type, 24-bit length, body.
    pub(crate) fn message(kind: u8, body: &[u8]) -> Vec<u8> {
        let n = body.len();
        let mut v = vec![kind, (n >> 16) as u8, (n >> 8) as u8, n as u8];
        v.extend_from_slice(body);
        v
    }

    /// A plaintext record of `kind` around `body`.
    pub(crate) fn record(kind: u8, body: &[u8]) -> Vec<u8> {
        let mut v = vec![kind, 3, 3];
        v.extend_from_slice(&(body.len() as u16).to_be_bytes());
        v.extend_from_slice(body);
        v
    }

    pub(crate) fn client_hello(random: [u8; 32], sni: &str, alpn: &[&str]) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend_from_slice(&random);
        b.push(0);
        b.extend(vec16(&[0x13, 0x01, 0xc0, 0x2f]));
        b.extend_from_slice(&[1, 0]);
        let mut names = vec![0];
        names.extend(vec16(sni.as_bytes()));
        let mut exts = ext(0, &vec16(&names));
        exts.extend(alpn_ext(alpn));
        b.extend(vec16(&exts));
        message(CLIENT_HELLO, &b)
    }

    pub(crate) fn server_hello(
        random: [u8; 32],
        suite: u16,
        tls13: bool,
        alpn: &[&str],
    ) -> Vec<u8> {
        let mut b = vec![3, 3];
        b.extend_from_slice(&random);
        b.push(0);
        b.extend_from_slice(&suite.to_be_bytes());
        b.push(0);
        let mut exts = Vec::new();
        if tls13 {
            exts.extend(ext(43, &[3, 4]));
        }
        if !alpn.is_empty() {
            exts.extend(alpn_ext(alpn));
        }
        b.extend(vec16(&exts));
        message(SERVER_HELLO, &b)
    }

    pub(crate) fn encrypted_extensions(alpn: &[&str]) -> Vec<u8> {
        message(ENCRYPTED_EXTENSIONS, &vec16(&alpn_ext(alpn)))
    }

    #[test]
    fn hellos_parse_and_span_records() {
        let ch = client_hello([7; 32], "api.example", &["h2", "http/1.1"]);
        let mut r = HandshakeReader::default();
        // Split across two records' worth of bytes.
        r.push(&ch[..10]);
        assert_eq!(r.next(), Ok(None));
        r.push(&ch[10..]);
        let (kind, body) = r.next().unwrap().unwrap();
        assert_eq!(kind, CLIENT_HELLO);
        let hello = parse_client_hello(&body).unwrap();
        assert_eq!(hello.random, [7; 32]);
        assert_eq!(hello.sni.as_deref(), Some("api.example"));
        assert_eq!(hello.alpn, ["h2", "http/1.1"]);

        let sh = server_hello([9; 32], 0x1301, true, &[]);
        let s = parse_server_hello(&sh[4..]).unwrap();
        assert_eq!((s.version, s.suite, s.retry), (0x0304, 0x1301, false));
        let sh = server_hello(RETRY_RANDOM, 0x1301, true, &[]);
        assert!(parse_server_hello(&sh[4..]).unwrap().retry);
        let sh = server_hello([9; 32], 0xC02F, false, &["http/1.1"]);
        let s = parse_server_hello(&sh[4..]).unwrap();
        assert_eq!((s.version, s.alpn.as_deref()), (0x0303, Some("http/1.1")));
        let ee = encrypted_extensions(&["h2"]);
        assert_eq!(
            parse_encrypted_extensions(&ee[4..]),
            Some(Some("h2".into()))
        );
    }

    #[test]
    fn truncated_or_foreign_bytes_are_refused_without_panic() {
        let ch = client_hello([7; 32], "a", &["h2"]);
        for n in 0..ch.len() - 4 {
            let _ = parse_client_hello(&ch[4..4 + n]);
            let _ = parse_server_hello(&ch[4..4 + n]);
            let _ = parse_encrypted_extensions(&ch[4..4 + n]);
        }
        assert!(parse_client_hello(&ch[4..ch.len() - 1]).is_none());
        assert_eq!(
            next_record(b"GET / HTTP/1.1\r\n"),
            Err(FramingError::BadHeader)
        );
        let rec = record(HANDSHAKE, &ch);
        assert!(starts_hello(&rec, false));
        assert_eq!(next_record(&rec[..rec.len() - 1]), Ok(None));
        assert_eq!(next_record(&rec).unwrap().unwrap().1, rec.len());
        let mut big = HandshakeReader::default();
        big.push(&[1, 0xff, 0xff, 0xff]);
        assert_eq!(big.next(), Err(FramingError::HandshakeTooLarge));
    }
}
