//! One TLS connection seen from the wire: ciphertext in per direction, plaintext out.
//!
//! The ClientHello gives the client random (the key log's index), the SNI and the ALPN
//! offer; the ServerHello the suite and version. TLS 1.3 encrypts everything after the
//! ServerHello, first under the handshake traffic secrets, then, after each side's
//! Finished, under the application traffic secrets (RFC 8446 §7.1, Figure 2); a KeyUpdate
//! moves its sender to the next secret (§4.6.3). TLS 1.2 encrypts each direction from its
//! ChangeCipherSpec on, under keys from the master secret (RFC 5246 §6.3, §7.1).

use super::cipher::{OpenError, RecordCipher};
use super::handshake::{
    self as hs, next_record, parse_client_hello, parse_encrypted_extensions, parse_server_hello,
    FramingError, HandshakeReader,
};
use super::keylog::KeyLog;
use super::schedule::{tls12_keys, tls13_keys, tls13_next_secret, Suite};

/// Ciphertext held per direction while its keys are not (yet) in the key log.
const MAX_PENDING: usize = 256 * 1024;

/// What one direction's ciphertext became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Plain {
    /// Application data, in order.
    Data(Vec<u8>),
    /// A record that could not be opened: this many bytes of application data are lost.
    Lost(usize),
}

/// Where a connection stands, for the import summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// No ServerHello yet (or no ClientHello ever: a capture begun mid-connection).
    Handshake,
    /// Encrypted records wait for secrets the key log does not have (yet).
    NoKeys,
    /// Keys found: records are being opened.
    Decrypting,
    /// A suite this decoder does not support (CBC, CCM, …).
    UnsupportedSuite(u16),
    /// The record framing was lost (not TLS, or bytes missing).
    Broken,
}

/// Which secrets protect a TLS 1.3 direction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Epoch {
    Handshake,
    Application,
}

struct Dir {
    buf: Vec<u8>,
    hs: HandshakeReader,
    /// Records are protected (1.3: after the ServerHello; 1.2: after ChangeCipherSpec).
    encrypted: bool,
    epoch: Epoch,
    /// The current TLS 1.3 traffic secret (for a KeyUpdate).
    secret: Option<Vec<u8>>,
    cipher: Option<RecordCipher>,
    /// The direction stopped at a record whose keys are missing.
    waiting: bool,
}

impl Dir {
    fn new() -> Self {
        Dir {
            buf: Vec::new(),
            hs: HandshakeReader::default(),
            encrypted: false,
            epoch: Epoch::Handshake,
            secret: None,
            cipher: None,
            waiting: false,
        }
    }
}

/// The decryptor of one connection. Direction 0 is the client's, 1 the server's.
pub(crate) struct Decryptor {
    dirs: [Dir; 2],
    client_random: Option<[u8; 32]>,
    server_random: Option<[u8; 32]>,
    suite: Option<Suite>,
    tls13: bool,
    status: Status,
    /// The server name the client asked for.
    pub sni: Option<String>,
    /// The application protocol chosen (ServerHello or EncryptedExtensions).
    pub alpn: Option<String>,
    /// Records that failed authentication (wrong keys, or altered bytes).
    pub auth_failures: u64,
    /// Ciphertext dropped because its keys never came.
    pub dropped_bytes: u64,
}

impl Default for Decryptor {
    fn default() -> Self {
        Self::new()
    }
}

impl Decryptor {
    pub(crate) fn new() -> Self {
        Decryptor {
            dirs: [Dir::new(), Dir::new()],
            client_random: None,
            server_random: None,
            suite: None,
            tls13: false,
            status: Status::Handshake,
            sni: None,
            alpn: None,
            auth_failures: 0,
            dropped_bytes: 0,
        }
    }

    pub(crate) fn status(&self) -> Status {
        self.status
    }

    /// "1.3" or "1.2" once the ServerHello said.
    pub(crate) fn version(&self) -> Option<&'static str> {
        self.suite.map(|_| if self.tls13 { "1.3" } else { "1.2" })
    }

    /// Some direction waits for keys (worth a retry when the key log grows).
    pub(crate) fn waiting(&self) -> bool {
        self.dirs.iter().any(|d| d.waiting)
    }

    /// The client random, once the ClientHello was seen.
    pub(crate) fn client_random(&self) -> Option<&[u8; 32]> {
        self.client_random.as_ref()
    }

    /// Takes `data` of direction `dir` (0 client, 1 server); plaintext of both directions
    /// (a direction held for keys may be released by the other's progress) goes to `out`.
    pub(crate) fn feed(
        &mut self,
        dir: usize,
        data: &[u8],
        keys: &KeyLog,
        out: &mut [Vec<Plain>; 2],
    ) {
        if matches!(self.status, Status::Broken | Status::UnsupportedSuite(_)) {
            return;
        }
        let d = &mut self.dirs[dir & 1];
        if d.waiting && d.buf.len() + data.len() > MAX_PENDING {
            // Keys are not coming: stop holding this direction's bytes.
            self.dropped_bytes += (d.buf.len() + data.len()) as u64;
            d.buf.clear();
            return;
        }
        d.buf.extend_from_slice(data);
        self.pump(keys, out);
    }

    /// Tries the directions waiting for keys again (the key log grew).
    pub(crate) fn retry(&mut self, keys: &KeyLog, out: &mut [Vec<Plain>; 2]) {
        if self.waiting() {
            self.pump(keys, out);
        }
    }

    fn pump(&mut self, keys: &KeyLog, out: &mut [Vec<Plain>; 2]) {
        loop {
            let mut progressed = false;
            for (dir, out) in out.iter_mut().enumerate() {
                match self.pump_dir(dir, keys, out) {
                    Ok(p) => progressed |= p,
                    Err(_) => {
                        self.status = Status::Broken;
                        self.dirs = [Dir::new(), Dir::new()];
                        return;
                    }
                }
            }
            if !progressed {
                return;
            }
        }
    }

    /// Handles the whole records of one direction; whether any was consumed.
    fn pump_dir(
        &mut self,
        dir: usize,
        keys: &KeyLog,
        out: &mut Vec<Plain>,
    ) -> Result<bool, FramingError> {
        let mut consumed = 0;
        let mut progressed = false;
        loop {
            if matches!(self.status, Status::UnsupportedSuite(_)) {
                self.dirs[dir].buf.clear();
                return Ok(progressed);
            }
            let rest = &self.dirs[dir].buf[consumed..];
            let Some((header, total)) = next_record(rest)? else {
                break;
            };
            let body = rest[5..total].to_vec();
            if self.dirs[dir].encrypted && !(self.tls13 && header[0] == hs::CHANGE_CIPHER_SPEC) {
                if self.dirs[dir].cipher.is_none() && !self.install_keys(dir, keys) {
                    self.dirs[dir].waiting = true;
                    break;
                }
                self.dirs[dir].waiting = false;
                self.open(dir, header, &body, keys, out)?;
            } else {
                self.plain_record(dir, header[0], &body)?;
            }
            consumed += total;
            progressed = true;
        }
        self.dirs[dir].buf.drain(..consumed);
        Ok(progressed)
    }

    /// A record before encryption began: the hellos, or 1.2's ChangeCipherSpec.
    fn plain_record(&mut self, dir: usize, kind: u8, body: &[u8]) -> Result<(), FramingError> {
        match kind {
            hs::HANDSHAKE => {
                self.dirs[dir].hs.push(body);
                while let Some((msg, body)) = self.dirs[dir].hs.next()? {
                    self.plain_handshake(dir, msg, &body);
                }
            }
            hs::CHANGE_CIPHER_SPEC if !self.tls13 && self.suite.is_some() => {
                // RFC 5246 §7.1: the sender's next record is under the new keys, seq 0.
                self.dirs[dir].encrypted = true;
                self.dirs[dir].hs = HandshakeReader::default();
            }
            // Alerts, 1.3's compatibility ChangeCipherSpec, data before any handshake.
            _ => {}
        }
        Ok(())
    }

    fn plain_handshake(&mut self, dir: usize, msg: u8, body: &[u8]) {
        match (dir, msg) {
            (0, hs::CLIENT_HELLO) => {
                if let Some(hello) = parse_client_hello(body) {
                    self.client_random = Some(hello.random);
                    self.sni = hello.sni;
                }
            }
            (1, hs::SERVER_HELLO) => {
                let Some(hello) = parse_server_hello(body) else {
                    return;
                };
                if hello.retry {
                    return; // a HelloRetryRequest: the real ServerHello follows
                }
                self.tls13 = hello.version == 0x0304;
                self.server_random = Some(hello.random);
                self.alpn = hello.alpn;
                match Suite::lookup(hello.suite, self.tls13) {
                    Some(s) => self.suite = Some(s),
                    None => {
                        self.status = Status::UnsupportedSuite(hello.suite);
                        return;
                    }
                }
                if self.tls13 {
                    // RFC 8446 §2: everything after the ServerHello is encrypted.
                    for d in &mut self.dirs {
                        d.encrypted = true;
                        d.hs = HandshakeReader::default();
                    }
                }
            }
            _ => {}
        }
    }

    /// Derives the keys of `dir` for its current epoch; false when the key log lacks them.
    fn install_keys(&mut self, dir: usize, keys: &KeyLog) -> bool {
        let (Some(suite), Some(random)) = (self.suite, self.client_random) else {
            return false;
        };
        let Some(secrets) = keys.get(&random) else {
            if self.status == Status::Handshake {
                self.status = Status::NoKeys;
            }
            return false;
        };
        let cipher = if self.tls13 {
            let d = &mut self.dirs[dir];
            if d.secret.is_none() {
                d.secret = match (dir, d.epoch) {
                    (0, Epoch::Handshake) => secrets.client_handshake.clone(),
                    (_, Epoch::Handshake) => secrets.server_handshake.clone(),
                    (0, Epoch::Application) => secrets.client_traffic0.clone(),
                    (_, Epoch::Application) => secrets.server_traffic0.clone(),
                };
            }
            d.secret
                .as_deref()
                .and_then(|s| tls13_keys(suite, s))
                .and_then(|k| RecordCipher::new(suite, &k, true))
        } else {
            match (&secrets.master, self.server_random) {
                (Some(master), Some(server_random)) => {
                    let k = tls12_keys(suite, master, &random, &server_random);
                    RecordCipher::new(suite, &k[dir & 1], false)
                }
                _ => None,
            }
        };
        match cipher {
            Some(c) => {
                self.dirs[dir].cipher = Some(c);
                self.status = Status::Decrypting;
                true
            }
            None => {
                if self.status == Status::Handshake {
                    self.status = Status::NoKeys;
                }
                false
            }
        }
    }

    fn open(
        &mut self,
        dir: usize,
        header: [u8; 5],
        body: &[u8],
        keys: &KeyLog,
        out: &mut Vec<Plain>,
    ) -> Result<(), FramingError> {
        let Some(cipher) = self.dirs[dir].cipher.as_mut() else {
            return Ok(());
        };
        let opened = match cipher.open(header, body) {
            Ok(r) => Ok(r),
            Err(e) if self.tls13 && self.dirs[dir].epoch == Epoch::Handshake => {
                // The Finished may not have been seen (or a record of it was lost): the
                // record may already be under the application secret.
                let saved = self.dirs[dir].cipher.take();
                let secret = self.dirs[dir].secret.take();
                self.dirs[dir].epoch = Epoch::Application;
                let reopened = if self.install_keys(dir, keys) {
                    self.dirs[dir].cipher.as_mut().map(|c| c.open(header, body))
                } else {
                    None
                };
                match reopened {
                    Some(Ok(r)) => Ok(r),
                    _ => {
                        let d = &mut self.dirs[dir];
                        d.epoch = Epoch::Handshake;
                        d.cipher = saved;
                        d.secret = secret;
                        Err(e)
                    }
                }
            }
            Err(e) => Err(e),
        };
        match opened {
            Ok((hs::APPLICATION_DATA, plain)) => out.push(Plain::Data(plain)),
            Ok((hs::HANDSHAKE, plain)) if self.tls13 => {
                self.dirs[dir].hs.push(&plain);
                while let Some((msg, body)) = self.dirs[dir].hs.next()? {
                    self.encrypted_handshake(dir, msg, &body);
                }
            }
            // Alerts (close_notify among them) end nothing here: the TCP close does.
            Ok((hs::ALERT, _)) => {}
            // 1.2's encrypted Finished, and other handshake messages.
            Ok(_) => {}
            Err(OpenError::Auth | OpenError::Short | OpenError::NoContentType) => {
                self.auth_failures += 1;
                if !self.tls13 || self.dirs[dir].epoch == Epoch::Application {
                    out.push(Plain::Lost(body.len().saturating_sub(16)));
                }
            }
        }
        Ok(())
    }

    /// A TLS 1.3 handshake message under encryption.
    fn encrypted_handshake(&mut self, dir: usize, msg: u8, body: &[u8]) {
        let d = &mut self.dirs[dir];
        match msg {
            hs::ENCRYPTED_EXTENSIONS if dir == 1 => {
                if let Some(Some(alpn)) = parse_encrypted_extensions(body) {
                    self.alpn = Some(alpn);
                }
            }
            hs::FINISHED if d.epoch == Epoch::Handshake => {
                // RFC 8446 §4.4.4: the sender's next records are under its application secret.
                d.epoch = Epoch::Application;
                d.secret = None;
                d.cipher = None;
            }
            hs::KEY_UPDATE if d.epoch == Epoch::Application => {
                let next = match (self.suite, d.secret.as_deref()) {
                    (Some(s), Some(secret)) => tls13_next_secret(s.hash, secret).map(|n| (s, n)),
                    _ => None,
                };
                d.cipher = next.as_ref().and_then(|(s, n)| {
                    tls13_keys(*s, n).and_then(|k| RecordCipher::new(*s, &k, true))
                });
                d.secret = next.map(|(_, n)| n);
            }
            _ => {}
        }
    }
}
