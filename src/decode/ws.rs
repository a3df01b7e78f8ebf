//! WebSocket framing (RFC 6455 §5): a sans-IO frame decoder and a small encoder.
//!
//! One [`Decoder`] reads one direction of one connection. Frames come out exactly as the peer
//! framed them — fragments stay fragments, control frames are interleaved where they arrived —
//! with the payload unmasked. The decoder buffers at most one frame, bounded by
//! `max_frame`, so a long-lived socket never accumulates in memory.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

#[path = "ws_resync.rs"]
mod resync;

/// Largest frame payload accepted by default.
pub const DEFAULT_MAX_FRAME: usize = 16 * 1024 * 1024;

/// Opcodes (RFC 6455 §5.2).
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// One frame as the sender framed it, payload unmasked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    /// RSV1..3 bits (RSV1 set by permessage-deflate), in the low three bits.
    pub rsv: u8,
    pub opcode: u8,
    /// The masking key, when the frame was masked (client frames always are).
    pub mask: Option<[u8; 4]>,
    pub payload: Bytes,
}

impl Frame {
    /// Close, ping or pong.
    pub fn is_control(&self) -> bool {
        self.opcode & 0x8 != 0
    }

    /// For a close frame: the status code and reason, if the payload carries them.
    pub fn close_code_reason(&self) -> Option<(u16, String)> {
        if self.opcode != opcode::CLOSE {
            return None;
        }
        close_code_reason(&self.payload)
    }
}

/// Splits a close payload into its code and UTF-8 reason (`None` for an empty payload).
pub fn close_code_reason(payload: &[u8]) -> Option<(u16, String)> {
    if payload.len() < 2 {
        return None;
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    Some((code, String::from_utf8_lossy(&payload[2..]).into_owned()))
}

/// Builds a close payload from a code and reason.
pub fn close_payload(code: u16, reason: &str) -> Bytes {
    let mut b = BytesMut::with_capacity(2 + reason.len());
    b.extend_from_slice(&code.to_be_bytes());
    b.extend_from_slice(reason.as_bytes());
    b.freeze()
}

/// Why the bytes are not WebSocket frames.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("websocket frame of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge { size: u64, limit: usize },
    #[error("websocket control frame (opcode {opcode:#x}) is fragmented or longer than 125 bytes")]
    BadControl { opcode: u8 },
    #[error("reserved websocket opcode {0:#x}")]
    ReservedOpcode(u8),
    #[error("websocket 64-bit length has its most significant bit set")]
    BadLength,
}

/// Reassembles frames from arbitrary chunks of one direction.
#[derive(Debug)]
pub struct Decoder {
    buf: BytesMut,
    ready: VecDeque<Frame>,
    max_frame: usize,
    failed: Option<Error>,
    /// Looking for the next frame after a hole (see `ws_resync`).
    resync: bool,
    /// Bytes skipped since the last hole, until the next frame was found.
    skipped: u64,
    /// A resynchronisation finished and not yet reported by [`Decoder::take_resync`].
    resynced: Option<u64>,
    /// Whether this direction's frames are masked (known after the first frame).
    masked: Option<bool>,
    /// A hole came: a decoding error means a wrong resynchronisation, not a broken peer.
    after_hole: bool,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Decoder {
    /// A decoder with [`DEFAULT_MAX_FRAME`].
    pub fn new() -> Self {
        Decoder {
            buf: BytesMut::new(),
            ready: VecDeque::new(),
            max_frame: DEFAULT_MAX_FRAME,
            failed: None,
            resync: false,
            skipped: 0,
            resynced: None,
            masked: None,
            after_hole: false,
        }
    }

    /// Sets the largest frame payload accepted.
    pub fn with_max_frame(mut self, max: usize) -> Self {
        self.max_frame = max;
        self
    }

    /// Adds bytes; complete frames become available through [`Decoder::poll`].
    ///
    /// # Errors
    /// A frame over the size limit, a malformed control frame, a reserved opcode or an invalid
    /// length. After an error the decoder stays failed — unless a hole came before it
    /// ([`Decoder::gap`]): bytes after a hole may be misread, so the decoder looks for the
    /// next frame again instead.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), Error> {
        if let Some(e) = &self.failed {
            return Err(e.clone());
        }
        self.buf.extend_from_slice(data);
        loop {
            if self.resync && !self.find_frame() {
                return Ok(());
            }
            match self.parse_one() {
                Ok(Some(f)) => {
                    self.masked = Some(f.mask.is_some());
                    self.ready.push_back(f)
                }
                Ok(None) => return Ok(()),
                Err(_) if self.after_hole => {
                    // A frame found after a hole turned out wrong: look further.
                    self.buf.advance(1);
                    self.skipped += 1;
                    self.resync = true;
                }
                Err(e) => {
                    self.failed = Some(e.clone());
                    self.buf.clear();
                    return Err(e);
                }
            }
        }
    }

    /// Bytes were lost (a capture hole): the frame in progress is dropped and decoding
    /// resumes at the next plausible frame header.
    pub fn gap(&mut self) {
        if self.failed.is_some() {
            return;
        }
        self.skipped += self.buf.len() as u64;
        self.buf.clear();
        self.resync = true;
        self.after_hole = true;
    }

    /// After a hole, once the next frame was found: how many captured bytes were skipped
    /// to reach it (what was captured of the frame the hole cut, on both sides of it).
    /// Reported once.
    pub fn take_resync(&mut self) -> Option<u64> {
        self.resynced.take()
    }

    /// Moves to the next plausible frame start; false when more bytes are needed.
    fn find_frame(&mut self) -> bool {
        match resync::frame_boundary(&self.buf, self.masked, self.max_frame) {
            resync::Boundary::At(p) => {
                self.buf.advance(p);
                self.skipped += p as u64;
                self.resync = false;
                *self.resynced.get_or_insert(0) += std::mem::take(&mut self.skipped);
                true
            }
            resync::Boundary::NeedMore(p) => {
                self.buf.advance(p);
                self.skipped += p as u64;
                false
            }
        }
    }

    fn parse_one(&mut self) -> Result<Option<Frame>, Error> {
        let Some(h) = resync::head(&self.buf)? else {
            return Ok(None);
        };
        if h.len > self.max_frame as u64 {
            return Err(Error::TooLarge {
                size: h.len,
                limit: self.max_frame,
            });
        }
        let total = h.size + h.len as usize;
        if self.buf.len() < total {
            self.buf.reserve(total - self.buf.len());
            return Ok(None);
        }
        self.buf.advance(h.size);
        let mut payload = self.buf.split_to(h.len as usize);
        if let Some(m) = h.mask {
            apply_mask(&mut payload, m);
        }
        Ok(Some(Frame {
            fin: h.fin,
            rsv: h.rsv,
            opcode: h.op,
            mask: h.mask,
            payload: payload.freeze(),
        }))
    }

    /// The next complete frame, if any.
    pub fn poll(&mut self) -> Option<Frame> {
        self.ready.pop_front()
    }

    /// Bytes of a frame still being assembled.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }
}

/// XORs `data` with the masking key (RFC 6455 §5.3); masking and unmasking are the same.
pub fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    for (i, b) in data.iter_mut().enumerate() {
        *b ^= mask[i & 3];
    }
}

/// Appends one frame to `out`. `mask` is required for client-to-server frames (RFC 6455
/// §5.1); the replay server, which speaks as the server, passes `None`.
pub fn encode(out: &mut BytesMut, fin: bool, opcode: u8, payload: &[u8], mask: Option<[u8; 4]>) {
    encode_with_rsv(out, fin, 0, opcode, payload, mask);
}

/// [`encode`] with RSV bits (for frames recorded with permessage-deflate).
pub fn encode_with_rsv(
    out: &mut BytesMut,
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: &[u8],
    mask: Option<[u8; 4]>,
) {
    out.reserve(14 + payload.len());
    out.extend_from_slice(&[(u8::from(fin) << 7) | ((rsv & 0x7) << 4) | (opcode & 0x0F)]);
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    let len = payload.len();
    if len < 126 {
        out.extend_from_slice(&[mbit | len as u8]);
    } else if len <= u16::MAX as usize {
        out.extend_from_slice(&[mbit | 126]);
        out.extend_from_slice(&(len as u16).to_be_bytes());
    } else {
        out.extend_from_slice(&[mbit | 127]);
        out.extend_from_slice(&(len as u64).to_be_bytes());
    }
    match mask {
        Some(m) => {
            out.extend_from_slice(&m);
            let start = out.len();
            out.extend_from_slice(payload);
            apply_mask(&mut out[start..], m);
        }
        None => out.extend_from_slice(payload),
    }
}

/// The `Sec-WebSocket-Accept` value for a client's `Sec-WebSocket-Key` (RFC 6455 §4.2.2):
/// base64 of the SHA-1 of the key and a fixed GUID. A replayed handshake must compute it for
/// the live key; the recorded one answers a different key.
pub fn accept_key(key: &[u8]) -> String {
    let mut input = key.trim_ascii().to_vec();
    input.extend_from_slice(b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11");
    base64_encode(&sha1(&input))
}

/// SHA-1 (FIPS 180-4), only for the handshake above, where it is not a security boundary.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0];
    let mut msg = data.to_vec();
    let bit_len = (data.len() as u64).wrapping_mul(8);
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    for block in msg.chunks_exact(64) {
        let mut w = [0u32; 80];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A827999),
                20..=39 => (b ^ c ^ d, 0x6ED9EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1BBCDC),
                _ => (b ^ c ^ d, 0xCA62C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, v) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(v);
        }
    }
    let mut out = [0u8; 20];
    for (i, v) in h.iter().enumerate() {
        out[i * 4..i * 4 + 4].copy_from_slice(&v.to_be_bytes());
    }
    out
}

fn base64_encode(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(bytes: &[u8]) -> Result<Vec<Frame>, Error> {
        let mut d = Decoder::new();
        d.feed(bytes)?;
        Ok(std::iter::from_fn(|| d.poll()).collect())
    }

    #[test]
    fn rfc_examples() {
        // RFC 6455 §5.7: unmasked "Hello", masked "Hello", fragmented "Hel" + "lo", ping.
        let f = decode(&[0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]).unwrap();
        assert_eq!(f[0].payload, Bytes::from_static(b"Hello"));
        assert!(f[0].fin && f[0].mask.is_none() && f[0].opcode == opcode::TEXT);
        let f = decode(&[
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ])
        .unwrap();
        assert_eq!(f[0].payload, Bytes::from_static(b"Hello"));
        assert_eq!(f[0].mask, Some([0x37, 0xfa, 0x21, 0x3d]));
        let f = decode(&[0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]).unwrap();
        assert_eq!(f.len(), 2);
        assert!(!f[0].fin && f[0].opcode == opcode::TEXT);
        assert!(f[1].fin && f[1].opcode == opcode::CONTINUATION);
        let f = decode(&[0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]).unwrap();
        assert!(f[0].is_control() && f[0].opcode == opcode::PING);
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(base64_encode(b"ab"), "YWI=");
        assert_eq!(base64_encode(b"a"), "YQ==");
    }

    #[test]
    fn extended_lengths() {
        for len in [125usize, 126, 65535, 65536, 70000] {
            let payload = vec![7u8; len];
            let mut out = BytesMut::new();
            encode(&mut out, true, opcode::BINARY, &payload, Some([1, 2, 3, 4]));
            let f = decode(&out).unwrap();
            assert_eq!(f.len(), 1);
            assert_eq!(f[0].payload.len(), len);
            assert!(f[0].payload.iter().all(|&b| b == 7));
        }
    }

    #[test]
    fn close_code_and_reason() {
        let mut out = BytesMut::new();
        encode(
            &mut out,
            true,
            opcode::CLOSE,
            &close_payload(1011, "boom"),
            None,
        );
        let f = decode(&out).unwrap();
        assert_eq!(f[0].close_code_reason(), Some((1011, "boom".to_string())));
        assert_eq!(close_code_reason(&[]), None);
    }

    #[test]
    fn limits_and_malformed_frames_are_errors() {
        let mut d = Decoder::new().with_max_frame(100);
        assert_eq!(
            d.feed(&[0x82, 126, 0, 101]),
            Err(Error::TooLarge {
                size: 101,
                limit: 100
            })
        );
        assert!(d.feed(&[0x81, 0]).is_err(), "stays failed");
        assert_eq!(
            decode(&[0x09, 0]),
            Err(Error::BadControl { opcode: 9 }),
            "fragmented ping"
        );
        assert_eq!(
            decode(&[0x88, 126, 0, 200]),
            Err(Error::BadControl { opcode: 8 })
        );
        assert_eq!(decode(&[0x83, 0]), Err(Error::ReservedOpcode(3)));
        assert_eq!(
            decode(&[0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0]),
            Err(Error::BadLength)
        );
    }

    fn arb_frame() -> impl Strategy<Value = (bool, u8, Vec<u8>, Option<[u8; 4]>)> {
        (
            any::<bool>(),
            prop::sample::select(vec![0u8, 1, 2, 8, 9, 10]),
            proptest::collection::vec(any::<u8>(), 0..400),
            proptest::option::of(any::<[u8; 4]>()),
        )
            .prop_map(|(fin, op, mut p, m)| {
                if op & 0x8 != 0 {
                    p.truncate(125);
                    (true, op, p, m)
                } else {
                    (fin, op, p, m)
                }
            })
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_frames(
            frames in proptest::collection::vec(arb_frame(), 0..8),
            cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..12),
        ) {
            let mut w = BytesMut::new();
            for (fin, op, p, m) in &frames {
                encode(&mut w, *fin, *op, p, *m);
            }
            let mut points: Vec<usize> = cuts.iter().map(|i| i.index(w.len() + 1)).collect();
            points.sort_unstable();
            let mut d = Decoder::new();
            let mut got = Vec::new();
            let mut last = 0;
            for p in points.into_iter().chain([w.len()]) {
                d.feed(&w[last..p]).unwrap();
                last = p;
                while let Some(f) = d.poll() { got.push((f.fin, f.opcode, f.payload.to_vec(), f.mask)); }
            }
            prop_assert_eq!(d.pending(), 0);
            prop_assert_eq!(got, frames);
        }

        #[test]
        fn garbage_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut d = Decoder::new().with_max_frame(1000);
            let _ = d.feed(&bytes);
            while d.poll().is_some() {}
        }
    }
}
