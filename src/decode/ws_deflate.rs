//! WebSocket permessage-deflate (RFC 7692): the extension's negotiation parameters, and
//! per-direction inflating and deflating of message payloads. Sans-IO: bytes in, bytes out.
//!
//! A compressed message is a raw DEFLATE stream cut after a sync flush, with the flush's
//! trailing `00 00 ff ff` removed (§7.2.1); its first frame has RSV1 set (§6). With context
//! takeover (the default) one DEFLATE stream runs across all messages of a direction, so an
//! [`Inflater`] or [`Deflater`] lives as long as the connection direction does.

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension's token in `Sec-WebSocket-Extensions`.
pub(crate) const NAME: &str = "permessage-deflate";

/// What a receiver appends to a message before inflating it (RFC 7692 §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// RSV1 in [`super::ws::Frame::rsv`]'s low three bits (RSV1 is the highest of them).
pub(crate) const RSV1: u8 = 0b100;

/// Why a payload could not be inflated or deflated.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub(crate) enum Error {
    #[error("permessage-deflate: corrupt DEFLATE data: {0}")]
    Corrupt(String),
    #[error("permessage-deflate: message inflates past the limit of {limit} bytes")]
    TooLarge { limit: usize },
    #[error("permessage-deflate: compressor failed: {0}")]
    Compress(String),
}

// ---------------------------------------------------------------------------------------
// Negotiation (RFC 7692 §5, §7.1)
// ---------------------------------------------------------------------------------------

/// Splits a `Sec-WebSocket-Extensions` value into its comma-separated elements, trimmed,
/// honouring quoted strings (RFC 6455 §9.1: `1#extension`; a parameter value may be quoted).
pub(crate) fn elements(value: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    let mut escaped = false;
    for (i, &b) in value.iter().enumerate() {
        if quoted {
            match b {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => quoted = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => quoted = true,
            b',' => {
                out.push(value[start..i].trim_ascii());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim_ascii());
    out.retain(|e| !e.is_empty());
    out
}

/// The extension name of one element (`permessage-deflate; x=1` → `permessage-deflate`).
pub(crate) fn element_name(element: &[u8]) -> &[u8] {
    let end = element
        .iter()
        .position(|&b| b == b';')
        .unwrap_or(element.len());
    element[..end].trim_ascii()
}

/// Whether one element names permessage-deflate.
pub(crate) fn is_deflate(element: &[u8]) -> bool {
    element_name(element).eq_ignore_ascii_case(NAME.as_bytes())
}

/// The parameters of one permessage-deflate offer or response.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Params {
    pub server_no_context_takeover: bool,
    pub client_no_context_takeover: bool,
    /// `server_max_window_bits=N` (8–15).
    pub server_max_window_bits: Option<u8>,
    /// `client_max_window_bits`: absent, present without a value (`Some(None)`), or with one.
    pub client_max_window_bits: Option<Option<u8>>,
}

/// Parses one permessage-deflate element's parameters. `None` for an element that a server
/// must decline (§7.1): an unknown or repeated parameter, or an invalid value.
pub(crate) fn parse_params(element: &[u8]) -> Option<Params> {
    let mut parts = element.split(|&b| b == b';');
    let name = parts.next()?.trim_ascii();
    if !name.eq_ignore_ascii_case(NAME.as_bytes()) {
        return None;
    }
    let mut p = Params::default();
    for part in parts {
        let part = part.trim_ascii();
        let (key, value) = match part.iter().position(|&b| b == b'=') {
            Some(i) => (
                part[..i].trim_ascii(),
                Some(unquote(part[i + 1..].trim_ascii())),
            ),
            None => (part, None),
        };
        let key = std::str::from_utf8(key).ok()?.to_ascii_lowercase();
        match (key.as_str(), value) {
            ("server_no_context_takeover", None) if !p.server_no_context_takeover => {
                p.server_no_context_takeover = true;
            }
            ("client_no_context_takeover", None) if !p.client_no_context_takeover => {
                p.client_no_context_takeover = true;
            }
            ("server_max_window_bits", Some(v)) if p.server_max_window_bits.is_none() => {
                p.server_max_window_bits = Some(window_bits(v)?);
            }
            ("client_max_window_bits", v) if p.client_max_window_bits.is_none() => {
                p.client_max_window_bits = Some(match v {
                    Some(v) => Some(window_bits(v)?),
                    None => None,
                });
            }
            _ => return None,
        }
    }
    Some(p)
}

fn unquote(v: &[u8]) -> &[u8] {
    match v {
        [b'"', inner @ .., b'"'] => inner,
        _ => v,
    }
}

/// A window-bits value: a decimal 8–15 with no leading zero (§7.1.2.1).
fn window_bits(v: &[u8]) -> Option<u8> {
    match v {
        [d @ b'8'..=b'9'] => Some(d - b'0'),
        [b'1', d @ b'0'..=b'5'] => Some(10 + d - b'0'),
        _ => None,
    }
}

/// What the replay server agreed to for the one permessage-deflate offer it accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Agreement {
    /// The `Sec-WebSocket-Extensions` value to answer with.
    pub response: String,
    /// Whether the server resets its compressor after every message.
    pub server_no_context_takeover: bool,
    /// The server's LZ77 window: the client's inflater keeps no more than `2^bits` bytes.
    pub server_window_bits: u8,
}

/// Accepts the first acceptable permessage-deflate offer among the request's
/// `Sec-WebSocket-Extensions` values, as a server would (§5.1); `None` when there is none.
///
/// Parameters: `server_no_context_takeover` and `server_max_window_bits` are honoured and
/// echoed; a server window below 15 also makes the server drop its context after each message
/// (which it may declare unasked, §7.1.1.1) so no reference reaches past the client's window.
/// `client_no_context_takeover` is echoed when offered; `client_max_window_bits` is not
/// answered, leaving the client its default window, which the inflater handles whatever the
/// client uses.
pub(crate) fn accept<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> Option<Agreement> {
    let offer = values
        .into_iter()
        .flat_map(elements)
        .filter(|e| is_deflate(e))
        .find_map(parse_params)?;
    let bits = offer.server_max_window_bits.unwrap_or(15);
    let server_no_context_takeover = offer.server_no_context_takeover || bits < 15;
    let mut response = NAME.to_string();
    if server_no_context_takeover {
        response.push_str("; server_no_context_takeover");
    }
    if let Some(b) = offer.server_max_window_bits {
        response.push_str(&format!("; server_max_window_bits={b}"));
    }
    if offer.client_no_context_takeover {
        response.push_str("; client_no_context_takeover");
    }
    Some(Agreement {
        response,
        server_no_context_takeover,
        server_window_bits: bits,
    })
}

/// Whether a 101 response's `Sec-WebSocket-Extensions` values put permessage-deflate in use.
pub(crate) fn negotiated<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> bool {
    values.into_iter().flat_map(elements).any(is_deflate)
}

// ---------------------------------------------------------------------------------------
// Inflating (RFC 7692 §7.2.2)
// ---------------------------------------------------------------------------------------

/// Output is produced in slices of this size, so a limit is never overshot by much.
const CHUNK: usize = 16 * 1024;

/// Inflates the compressed messages of one direction.
///
/// The window is always the largest (15 bits), which reads any sender's stream whatever
/// window and context-takeover parameters it agreed to: a sender with a smaller window or no
/// context takeover merely references less of the history kept here.
pub(crate) struct Inflater {
    z: Decompress,
    /// The sender ended its DEFLATE stream with a BFINAL block (§7.2.3.4): the next message
    /// starts a new stream, and this message's appended tail is not part of any.
    ended: bool,
    failed: bool,
}

impl Default for Inflater {
    fn default() -> Self {
        Self::new()
    }
}

impl Inflater {
    pub(crate) fn new() -> Self {
        Inflater {
            z: Decompress::new(false),
            ended: false,
            failed: false,
        }
    }

    /// Inflates one frame's payload of a compressed message; `fin` ends the message. At most
    /// `limit` bytes come out for this frame.
    ///
    /// # Errors
    /// Corrupt data, or more than `limit` bytes: the stream cannot be followed after either,
    /// and every later call fails too.
    pub(crate) fn frame(
        &mut self,
        payload: &[u8],
        fin: bool,
        limit: usize,
    ) -> Result<Vec<u8>, Error> {
        if self.failed {
            return Err(Error::Corrupt("earlier data was not inflated".into()));
        }
        let mut out = Vec::new();
        let result = self.feed(payload, &mut out, limit).and_then(|()| {
            if fin && !self.ended {
                self.feed(&TAIL, &mut out, limit)?;
            }
            if fin && self.ended {
                self.z.reset(false);
                self.ended = false;
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(out),
            Err(e) => {
                self.failed = true;
                Err(e)
            }
        }
    }

    fn feed(&mut self, mut input: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), Error> {
        let mut chunk = [0u8; CHUNK];
        loop {
            if self.ended {
                if input.is_empty() {
                    return Ok(());
                }
                // More data after a final block: a new stream with an empty history.
                self.z.reset(false);
                self.ended = false;
            }
            // One byte past the limit shows that the limit is exceeded.
            let space = (limit + 1).saturating_sub(out.len()).min(CHUNK);
            let (in0, out0) = (self.z.total_in(), self.z.total_out());
            let status = self
                .z
                .decompress(input, &mut chunk[..space], FlushDecompress::Sync)
                .map_err(|e| Error::Corrupt(e.to_string()))?;
            let used = usize::try_from(self.z.total_in() - in0).unwrap_or(input.len());
            let made = usize::try_from(self.z.total_out() - out0).unwrap_or(0);
            out.extend_from_slice(&chunk[..made]);
            if out.len() > limit {
                return Err(Error::TooLarge { limit });
            }
            input = &input[used.min(input.len())..];
            if status == Status::StreamEnd {
                self.ended = true;
                continue;
            }
            if made < space {
                if input.is_empty() {
                    // All input taken and all output drained.
                    return Ok(());
                }
                if used == 0 {
                    return Err(Error::Corrupt("the inflater took no more input".into()));
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Deflating (RFC 7692 §7.2.1)
// ---------------------------------------------------------------------------------------

/// Compresses the messages one endpoint sends, within what was agreed.
pub(crate) struct Deflater {
    z: Compress,
    no_context_takeover: bool,
    window: usize,
    /// Uncompressed bytes of the current message so far.
    message_len: usize,
    /// The current message has switched to stored blocks (see [`Deflater::frame`]).
    stored: bool,
}

impl Deflater {
    /// A compressor for a sender that agreed to `no_context_takeover` (or not) and to a
    /// window of `2^window_bits` bytes (8–15).
    pub(crate) fn new(no_context_takeover: bool, window_bits: u8) -> Self {
        let bits = window_bits.clamp(8, 15);
        Deflater {
            z: Compress::new(Compression::default(), false),
            // A window below 15 bits is only honoured without context takeover (see below);
            // `accept` never agrees to the one without the other.
            no_context_takeover: no_context_takeover || bits < 15,
            window: 1 << bits,
            message_len: 0,
            stored: false,
        }
    }

    /// Compresses one frame's payload of a message; `fin` ends the message. Every frame ends
    /// on a sync flush, so frames can be sent as they come; the last one without the flush's
    /// `00 00 ff ff` (§7.2.1).
    ///
    /// The compressor's own window is 32 KiB and cannot be narrowed, so for a smaller agreed
    /// window a message is compressed only while its bytes so far fit that window (with no
    /// context takeover a back-reference cannot reach further than the message's start);
    /// past that, the rest of the message goes in stored (uncompressed) DEFLATE blocks,
    /// which reference nothing.
    ///
    /// # Errors
    /// The compressor failed (it does not on valid input).
    pub(crate) fn frame(&mut self, payload: &[u8], fin: bool) -> Result<Vec<u8>, Error> {
        self.message_len += payload.len();
        if self.window < (1 << 15) && self.message_len > self.window {
            self.stored = true;
        }
        let mut out = if self.stored {
            stored_blocks(payload)
        } else {
            self.compress(payload)?
        };
        if fin {
            if self.stored {
                // The header byte of the empty stored block whose LEN/NLEN the receiver
                // appends.
                out.push(0x00);
            } else if out.ends_with(&TAIL) {
                out.truncate(out.len() - TAIL.len());
            } else {
                return Err(Error::Compress("sync flush did not end the output".into()));
            }
            self.message_len = 0;
            self.stored = false;
            if self.no_context_takeover {
                self.z.reset();
            }
        }
        Ok(out)
    }

    fn compress(&mut self, mut input: &[u8]) -> Result<Vec<u8>, Error> {
        let mut out = Vec::with_capacity(input.len() / 2 + 64);
        loop {
            if out.capacity() - out.len() < 64 {
                out.reserve(out.capacity().max(1024));
            }
            let in0 = self.z.total_in();
            self.z
                .compress_vec(input, &mut out, FlushCompress::Sync)
                .map_err(|e| Error::Compress(e.to_string()))?;
            let used = usize::try_from(self.z.total_in() - in0).unwrap_or(input.len());
            input = &input[used.min(input.len())..];
            // Done once the input is in and the flush left room to spare.
            if input.is_empty() && out.capacity() - out.len() >= 64 {
                return Ok(out);
            }
        }
    }
}

/// `data` as stored DEFLATE blocks (RFC 1951 §3.2.4), BFINAL clear, starting byte-aligned.
fn stored_blocks(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 5 * (data.len() / 65535 + 1));
    for block in data.chunks(65535) {
        let len = block.len() as u16;
        out.push(0x00);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(block);
    }
    out
}

#[cfg(test)]
#[path = "ws_deflate_tests.rs"]
mod tests;
