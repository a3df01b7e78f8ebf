//! Passive HTTP/2 frame decoding for one direction of one connection (RFC 9113).
//!
//! Built for watching traffic, not for taking part in it: nothing is ever answered, flow
//! control is not enforced, and errors a peer would treat as fatal (an unknown stream, a bad
//! HPACK index after a capture started mid-connection) degrade to a flagged event instead of
//! ending the decode. Each direction keeps its own HPACK dynamic table, because each encoder
//! (client, server) indexes what it sent.
//!
//! HPACK is `loona-hpack`, a maintained fork of the `hpack` crate (the original is
//! unmaintained since 2016): it decodes into a callback so that a block that fails part-way
//! still yields the fields before the failure, which is what a mid-connection start needs.
//!
//! After a capture hole ([`Decoder::gap`]) decoding resumes at the next plausible frame
//! boundary ([`frame_boundary`]).

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::model::{Header, HeaderValue, Text};

/// The client connection preface (RFC 9113 §3.4).
pub const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
/// Largest header block (HEADERS + CONTINUATION) kept; beyond it the block is dropped.
const MAX_HEADER_BLOCK: usize = 1024 * 1024;
const FRAME_HEADER: usize = 9;

/// Frame types this decoder acts on.
mod kind {
    pub const DATA: u8 = 0;
    pub const HEADERS: u8 = 1;
    pub const RST_STREAM: u8 = 3;
    pub const PUSH_PROMISE: u8 = 5;
    pub const GOAWAY: u8 = 7;
    pub const CONTINUATION: u8 = 9;
}
const END_STREAM: u8 = 0x1;
const END_HEADERS: u8 = 0x4;
const PADDED: u8 = 0x8;
const PRIORITY: u8 = 0x20;

/// What the decoder found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A complete header block (HEADERS plus any CONTINUATION). `damaged` when HPACK failed
    /// part-way (typically a capture that began mid-connection): `headers` holds the fields
    /// decoded before the failure.
    Headers {
        stream: u32,
        headers: Vec<Header>,
        end_stream: bool,
        damaged: bool,
    },
    /// Payload of a DATA frame, padding removed.
    Data {
        stream: u32,
        data: Bytes,
        end_stream: bool,
    },
    /// RST_STREAM with its error code.
    Reset { stream: u32, code: u32 },
    /// GOAWAY: the sender processes no stream above `last_stream`.
    GoAway { last_stream: u32, code: u32 },
}

/// Why decoding this direction stopped.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("bytes are not HTTP/2 frames (frame type {kind} of {len} bytes on stream {stream})")]
    NotHttp2 { kind: u8, len: usize, stream: u32 },
    #[error("frame padding longer than the frame")]
    BadPadding,
    #[error("CONTINUATION expected on stream {0}")]
    ExpectedContinuation(u32),
}

/// Decodes one direction of an HTTP/2 connection. See the module docs.
pub struct Decoder {
    buf: BytesMut,
    /// Client side: the preface may still be (partly) ahead.
    expect_preface: bool,
    hpack: loona_hpack::Decoder<'static>,
    /// Header block in progress: stream, fragments so far, END_STREAM of the HEADERS frame,
    /// whether it belongs to a PUSH_PROMISE (decoded for HPACK state only).
    block: Option<(u32, Vec<u8>, bool, bool)>,
    events: VecDeque<Event>,
    failed: bool,
    max_frame: usize,
    /// After a capture hole: bytes are dropped until a plausible frame boundary.
    resync: bool,
    /// A hole may have taken header blocks with it: the HPACK table may have lost entries.
    hpack_unsure: bool,
}

/// Largest frame a resynchronising decoder believes in: the default
/// SETTINGS_MAX_FRAME_SIZE (RFC 9113 §6.5.2) times four, because a peer may have raised it
/// in SETTINGS the capture never showed; real frames are rarely larger.
const RESYNC_MAX_FRAME: usize = 4 * 16_384;

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("h2::Decoder")
            .field("buffered", &self.buf.len())
            .field("failed", &self.failed)
            .finish()
    }
}

impl Decoder {
    /// A decoder for the client's direction (skips the preface) or the server's.
    pub fn new(client: bool) -> Self {
        let mut hpack = loona_hpack::Decoder::new();
        // A passive observer did not see (or cannot trust) the SETTINGS exchange: accept any
        // table size the encoder announces rather than failing.
        hpack.set_max_allowed_table_size(1 << 24);
        Decoder {
            buf: BytesMut::new(),
            expect_preface: client,
            hpack,
            block: None,
            events: VecDeque::new(),
            failed: false,
            // RFC 9113 §4.2: the 24-bit length field caps a frame at 2^24-1 bytes.
            max_frame: (1 << 24) - 1,
            resync: false,
            hpack_unsure: false,
        }
    }

    /// Bytes were lost (a capture hole): the frame in progress is dropped and decoding
    /// resumes at the next frame boundary found by [`frame_boundary`]. Later header blocks
    /// that HPACK cannot decode come out `damaged` (see [`Decoder::hpack_unsure`]).
    pub fn gap(&mut self) {
        if self.failed {
            return;
        }
        self.buf.clear();
        self.block = None;
        self.expect_preface = false;
        self.resync = true;
        self.hpack_unsure = true;
    }

    /// True once a hole may have taken header blocks: the HPACK state of this direction
    /// may be wrong from then on.
    pub fn hpack_unsure(&self) -> bool {
        self.hpack_unsure
    }

    /// True after an error: later bytes are ignored.
    pub fn is_failed(&self) -> bool {
        self.failed
    }

    /// Bytes waiting for the rest of their frame.
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// Appends bytes and decodes every complete frame.
    ///
    /// # Errors
    /// The bytes cannot be HTTP/2; the decoder ignores everything after.
    pub fn feed(&mut self, data: &[u8]) -> Result<(), Error> {
        if self.failed {
            return Ok(());
        }
        self.buf.extend_from_slice(data);
        let result = self.decode();
        if result.is_err() {
            self.failed = true;
            self.buf.clear();
        }
        result
    }

    /// The next decoded event.
    pub fn poll(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn decode(&mut self) -> Result<(), Error> {
        if self.expect_preface {
            let n = self.buf.len().min(PREFACE.len());
            if self.buf[..n] != PREFACE[..n] {
                // No preface: the capture began after it, frames follow directly.
                self.expect_preface = false;
            } else if n < PREFACE.len() {
                return Ok(());
            } else {
                self.buf.advance(PREFACE.len());
                self.expect_preface = false;
            }
        }
        if self.resync {
            match frame_boundary(&self.buf) {
                Boundary::At(p) => {
                    self.buf.advance(p);
                    self.resync = false;
                }
                Boundary::NeedMore(p) => {
                    self.buf.advance(p);
                    return Ok(());
                }
            }
        }
        while self.buf.len() >= FRAME_HEADER {
            let len = usize::from(self.buf[0]) << 16
                | usize::from(self.buf[1]) << 8
                | usize::from(self.buf[2]);
            let kind = self.buf[3];
            let flags = self.buf[4];
            let stream = u32::from_be_bytes([self.buf[5], self.buf[6], self.buf[7], self.buf[8]])
                & 0x7fff_ffff;
            if len > self.max_frame || kind > 0x20 {
                return Err(Error::NotHttp2 { kind, len, stream });
            }
            if self.buf.len() < FRAME_HEADER + len {
                return Ok(());
            }
            self.buf.advance(FRAME_HEADER);
            let payload = self.buf.split_to(len).freeze();
            self.frame(kind, flags, stream, payload)?;
        }
        Ok(())
    }

    fn frame(&mut self, kind: u8, flags: u8, stream: u32, payload: Bytes) -> Result<(), Error> {
        if let Some((block_stream, _, _, _)) = &self.block {
            if kind != kind::CONTINUATION || stream != *block_stream {
                return Err(Error::ExpectedContinuation(*block_stream));
            }
        }
        match kind {
            kind::DATA => {
                let data = unpad(flags, payload)?;
                self.events.push_back(Event::Data {
                    stream,
                    data,
                    end_stream: flags & END_STREAM != 0,
                });
            }
            kind::HEADERS => {
                let mut frag = unpad(flags, payload)?;
                if flags & PRIORITY != 0 {
                    if frag.len() < 5 {
                        return Err(Error::BadPadding);
                    }
                    frag.advance(5);
                }
                self.block = Some((stream, frag.to_vec(), flags & END_STREAM != 0, false));
                if flags & END_HEADERS != 0 {
                    self.end_block();
                }
            }
            kind::PUSH_PROMISE => {
                let mut frag = unpad(flags, payload)?;
                if frag.len() < 4 {
                    return Err(Error::BadPadding);
                }
                frag.advance(4);
                self.block = Some((stream, frag.to_vec(), false, true));
                if flags & END_HEADERS != 0 {
                    self.end_block();
                }
            }
            kind::CONTINUATION => {
                let Some((_, block, _, _)) = &mut self.block else {
                    // A CONTINUATION whose HEADERS came before the capture: nothing to add to.
                    return Ok(());
                };
                if block.len() + payload.len() > MAX_HEADER_BLOCK {
                    self.block = None;
                    return Ok(());
                }
                block.extend_from_slice(&payload);
                if flags & END_HEADERS != 0 {
                    self.end_block();
                }
            }
            kind::RST_STREAM if payload.len() >= 4 => {
                let code = u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]]);
                self.events.push_back(Event::Reset { stream, code });
            }
            kind::GOAWAY if payload.len() >= 8 => {
                let last_stream =
                    u32::from_be_bytes([payload[0], payload[1], payload[2], payload[3]])
                        & 0x7fff_ffff;
                let code = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
                self.events.push_back(Event::GoAway { last_stream, code });
            }
            // SETTINGS, PING, PRIORITY, WINDOW_UPDATE and extension frames carry nothing an
            // exchange records.
            _ => {}
        }
        Ok(())
    }

    fn end_block(&mut self) {
        let Some((stream, block, end_stream, promise)) = self.block.take() else {
            return;
        };
        let mut headers = Vec::new();
        let result = self.hpack.decode_with_cb(&block, |name, value| {
            headers.push(Header {
                name: Text::from_utf8_lossy(&name),
                value: HeaderValue::from_slice(&value),
            });
        });
        if !promise {
            self.events.push_back(Event::Headers {
                stream,
                headers,
                end_stream,
                damaged: result.is_err(),
            });
        }
    }
}

/// Where a resynchronising decoder may resume.
#[derive(Debug, PartialEq, Eq)]
pub enum Boundary {
    /// A frame starts at this offset.
    At(usize),
    /// Nothing before this offset can start a frame; the rest needs more bytes to tell.
    NeedMore(usize),
}

/// Whether a frame header at the start of `b` is plausible: a known type, a length a peer
/// would send, the reserved bit clear, and the stream id each type requires (RFC 9113 §6).
fn plausible_header(b: &[u8]) -> bool {
    let len = usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]);
    let (kind, flags) = (b[3], b[4]);
    let stream = u32::from_be_bytes([b[5], b[6], b[7], b[8]]);
    if stream & 0x8000_0000 != 0 || len > RESYNC_MAX_FRAME {
        return false;
    }
    match kind {
        // DATA, HEADERS, PRIORITY, RST_STREAM, PUSH_PROMISE, CONTINUATION: on a stream.
        0 => stream != 0 && flags & !(END_STREAM | PADDED) == 0,
        1 => stream != 0 && flags & !(END_STREAM | END_HEADERS | PADDED | PRIORITY) == 0,
        2 => stream != 0 && len == 5,
        3 => stream != 0 && len == 4,
        5 => stream != 0 && flags & !(END_HEADERS | PADDED) == 0,
        9 => stream != 0 && flags & !END_HEADERS == 0,
        // SETTINGS, PING, GOAWAY: on the connection.
        4 => stream == 0 && len % 6 == 0 && flags & !1 == 0,
        6 => stream == 0 && len == 8 && flags & !1 == 0,
        7 => stream == 0 && len >= 8,
        8 => len == 4,
        _ => false,
    }
}

/// The first offset of `b` where a plausible frame header is followed, right after its
/// payload, by another plausible header: one header alone matches random bytes too often,
/// two in a row rarely do.
pub fn frame_boundary(b: &[u8]) -> Boundary {
    let mut p = 0;
    while p + FRAME_HEADER <= b.len() {
        if plausible_header(&b[p..]) {
            let len = usize::from(b[p]) << 16 | usize::from(b[p + 1]) << 8 | usize::from(b[p + 2]);
            let next = p + FRAME_HEADER + len;
            if next + FRAME_HEADER > b.len() {
                return Boundary::NeedMore(p);
            }
            if plausible_header(&b[next..]) {
                return Boundary::At(p);
            }
        }
        p += 1;
    }
    Boundary::NeedMore(p)
}

fn unpad(flags: u8, mut payload: Bytes) -> Result<Bytes, Error> {
    if flags & PADDED == 0 {
        return Ok(payload);
    }
    let Some(&pad) = payload.first() else {
        return Err(Error::BadPadding);
    };
    payload.advance(1);
    let pad = usize::from(pad);
    if pad > payload.len() {
        return Err(Error::BadPadding);
    }
    payload.truncate(payload.len() - pad);
    Ok(payload)
}

/// Test and benchmark helper: one frame's bytes.
pub fn encode_frame(out: &mut Vec<u8>, kind: u8, flags: u8, stream: u32, payload: &[u8]) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(kind);
    out.push(flags);
    out.extend_from_slice(&(stream & 0x7fff_ffff).to_be_bytes());
    out.extend_from_slice(payload);
}

/// Test and benchmark helper: an HPACK block encoding `fields` (literal, indexed by the
/// encoder's dynamic table where `loona-hpack` chooses to).
pub fn encode_headers(
    encoder: &mut loona_hpack::Encoder<'_>,
    fields: &[(&[u8], &[u8])],
) -> Vec<u8> {
    encoder.encode(fields.iter().map(|(n, v)| (*n, *v)))
}

#[cfg(test)]
#[path = "h2_tests.rs"]
mod tests;
