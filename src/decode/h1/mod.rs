//! A sans-IO HTTP/1.x message decoder: bytes in, [`Event`]s out.
//!
//! One [`Decoder`] reads one direction of one connection. It owns message framing (RFC 9112
//! §6: Content-Length, chunked with trailers, close-delimited bodies, bodiless responses to
//! HEAD, 1xx, 204 and 304) and protocol switches (101, CONNECT). Heads are parsed by
//! `httparse`; framing is ours because httparse deliberately stops at the head.
//!
//! The same decoder drives the recording proxy, the replay server and the pcap importer, so
//! it must never panic on hostile bytes and must produce the same events however the input is
//! split (there is a property test for that).

//!
//! Files: this one holds the decoder's state machine; `framing` parses heads' fields into
//! body framing and chunk sizes; `headers` holds the connection-level header rules a proxy
//! or replay server applies when it speaks to a peer (hop-by-hop fields, keep-alive).
//!
//! Imports: `model` only.

mod framing;
mod headers;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::mem::MaybeUninit;

use bytes::{Buf, Bytes, BytesMut};

use crate::model::{Header, Text};

use framing::{body_framing, find_lf, has_upgrade, head_error, parse_chunk_size, to_headers};
pub use headers::{
    client_response_fields, client_response_headers, is_hop_by_hop, response_framing, wants_close,
};

/// Largest request or response head accepted (request line + headers).
pub const DEFAULT_MAX_HEAD: usize = 64 * 1024;
const MAX_HEADERS: usize = 256;
const MAX_CHUNK_LINE: usize = 4096;

/// Which kind of message this direction carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Client to server: requests.
    Request,
    /// Server to client: responses.
    Response,
}

/// The protocol version of an HTTP/1.`minor` message as recorded, without an allocation for
/// the two versions there are.
pub fn version_text(minor: u8) -> Text {
    match minor {
        1 => Text::const_new("HTTP/1.1"),
        0 => Text::const_new("HTTP/1.0"),
        m => compact_str::format_compact!("HTTP/1.{m}"),
    }
}

/// A parsed request line and headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: Text,
    pub target: Text,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<Header>,
    pub framing: Framing,
}

/// A parsed status line and headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: Text,
    pub minor: u8,
    pub headers: Vec<Header>,
    pub framing: Framing,
}

/// How the body of a message is delimited on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    /// No body at all.
    Empty,
    /// `Content-Length: n`.
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// The body runs until the connection closes (responses only).
    UntilClose,
}

/// What the decoder found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    RequestHead(RequestHead),
    ResponseHead(ResponseHead),
    /// A piece of body, with chunked framing removed.
    Data(Bytes),
    /// Trailer fields after a chunked body.
    Trailers(Vec<Header>),
    /// The message is complete.
    End,
    /// The connection switched protocols (101 or a CONNECT tunnel). Later bytes are not HTTP/1:
    /// take them with [`Decoder::take_buffered`].
    Upgraded,
}

/// Why the bytes are not HTTP/1.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    #[error("message head larger than {0} bytes")]
    HeadTooLarge(usize),
    #[error("too many header fields (more than {MAX_HEADERS})")]
    TooManyHeaders,
    #[error("malformed message head: {0}")]
    BadHead(String),
    #[error("invalid Content-Length")]
    BadContentLength,
    #[error("malformed chunked body")]
    BadChunk,
    #[error("connection closed in the middle of a message")]
    Incomplete,
}

impl Error {
    /// The status a server should answer with, when it can answer at all.
    pub fn status(&self) -> u16 {
        match self {
            Error::HeadTooLarge(_) | Error::TooManyHeaders => 431,
            _ => 400,
        }
    }
}

#[derive(Debug)]
enum State {
    Head,
    /// Bytes of a fixed-length body still to come.
    Body(u64),
    ChunkSize,
    ChunkData(u64),
    ChunkDataEnd,
    Trailers,
    UntilClose,
    /// A request that asked to switch protocols; waits for the response's verdict.
    AwaitingUpgrade,
    Upgraded,
    Failed,
}

/// What a response's framing needs to know of the request it answers: only `HEAD` and
/// `CONNECT` change it. Kept instead of the method's text, which cost an allocation per
/// request in an import's profile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AskedWith {
    Head,
    Connect,
    Other,
}

impl AskedWith {
    fn of(method: &str) -> AskedWith {
        if method.eq_ignore_ascii_case("HEAD") {
            AskedWith::Head
        } else if method.eq_ignore_ascii_case("CONNECT") {
            AskedWith::Connect
        } else {
            AskedWith::Other
        }
    }
}

/// Decodes one direction of an HTTP/1.x connection. See the module docs.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    state: State,
    buf: BytesMut,
    max_head: usize,
    /// Request methods whose responses are still to come; decides HEAD/CONNECT framing.
    pending_methods: VecDeque<AskedWith>,
    events: VecDeque<Event>,
}

impl Decoder {
    /// A decoder for messages of `role`.
    pub fn new(role: Role) -> Self {
        Decoder {
            role,
            state: State::Head,
            buf: BytesMut::new(),
            max_head: DEFAULT_MAX_HEAD,
            pending_methods: VecDeque::new(),
            events: VecDeque::new(),
        }
    }

    /// Overrides the head size limit.
    pub fn with_max_head(mut self, max_head: usize) -> Self {
        self.max_head = max_head;
        self
    }

    /// Tells a response decoder the method of a request sent on the connection, in order.
    pub fn push_request_method(&mut self, method: &str) {
        self.pending_methods.push_back(AskedWith::of(method));
    }

    /// Appends bytes read from the wire.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// True when no message is partly decoded and no bytes wait.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head) && self.buf.is_empty() && self.events.is_empty()
    }

    /// Frees the buffer a large message grew, once nothing is buffered, so that an idle
    /// keep-alive connection holds no more than a few KiB.
    pub fn shrink_when_idle(&mut self) {
        const KEEP: usize = 8 * 1024;
        if self.buf.is_empty() && self.buf.capacity() > KEEP {
            self.buf = BytesMut::new();
        }
    }

    /// True once the connection left HTTP/1 (after [`Event::Upgraded`]).
    pub fn is_upgraded(&self) -> bool {
        matches!(self.state, State::Upgraded)
    }

    /// Forgets the request methods told so far (see [`Decoder::push_request_method`]): after
    /// a capture hole the requests still waiting are known again only by who pairs them.
    pub fn clear_request_methods(&mut self) {
        self.pending_methods.clear();
    }

    /// Body bytes the message being decoded still expects when the decoder is inside a body
    /// (a fixed-length body, a chunk's data, or a body running until close: `u64::MAX`) with
    /// nothing buffered; `None` anywhere else (a head, a chunk-size line, trailers).
    ///
    /// Passive capture asks this when bytes are missing: a hole that fits here can be
    /// accounted for with [`Decoder::skip_body`] without losing the message framing.
    pub fn body_left(&self) -> Option<u64> {
        if !self.buf.is_empty() || !self.events.is_empty() {
            return None;
        }
        match self.state {
            State::Body(left) | State::ChunkData(left) => Some(left),
            State::UntilClose => Some(u64::MAX),
            _ => None,
        }
    }

    /// Accounts for `n` body bytes that were never seen, as if they had been decoded (no
    /// [`Event::Data`] is produced for them). Returns false, changing nothing, unless
    /// `n` is at most [`Decoder::body_left`].
    pub fn skip_body(&mut self, n: u64) -> bool {
        if self.body_left().is_none_or(|left| n > left) {
            return false;
        }
        self.state = match self.state {
            State::Body(left) if left == n => {
                self.events.push_back(Event::End);
                State::Head
            }
            State::Body(left) => State::Body(left - n),
            State::ChunkData(left) if left == n => State::ChunkDataEnd,
            State::ChunkData(left) => State::ChunkData(left - n),
            State::UntilClose => State::UntilClose,
            // body_left() returned Some: one of the states above.
            _ => return false,
        };
        true
    }

    /// Bytes buffered but not consumed: after an upgrade they belong to the new protocol.
    pub fn take_buffered(&mut self) -> Bytes {
        self.buf.split().freeze()
    }

    /// For a request decoder waiting after an `Upgrade` or `CONNECT` request: the server
    /// accepted (`true`, the connection is now a tunnel) or refused (`false`, HTTP goes on).
    pub fn resolve_upgrade(&mut self, accepted: bool) {
        if matches!(self.state, State::AwaitingUpgrade) {
            if accepted {
                self.state = State::Upgraded;
                self.events.push_back(Event::Upgraded);
            } else {
                self.state = State::Head;
            }
        }
    }

    /// The next event, `Ok(None)` when more bytes are needed.
    ///
    /// # Errors
    /// Malformed input; the decoder stays failed afterwards.
    pub fn poll(&mut self) -> Result<Option<Event>, Error> {
        if let Some(ev) = self.events.pop_front() {
            return Ok(Some(ev));
        }
        let result = self.step();
        if result.is_err() {
            self.state = State::Failed;
        }
        result
    }

    /// The connection was closed by the sender: ends a close-delimited body.
    ///
    /// # Errors
    /// [`Error::Incomplete`] if a message was cut short.
    pub fn finish(&mut self) -> Result<Option<Event>, Error> {
        if let Some(ev) = self.events.pop_front() {
            return Ok(Some(ev));
        }
        match self.state {
            State::UntilClose => {
                if !self.buf.is_empty() {
                    let data = self.buf.split().freeze();
                    return Ok(Some(Event::Data(data)));
                }
                self.state = State::Head;
                Ok(Some(Event::End))
            }
            State::Head if self.buf.iter().all(|b| b.is_ascii_whitespace()) => {
                self.buf.clear();
                Ok(None)
            }
            State::Upgraded | State::AwaitingUpgrade | State::Failed => Ok(None),
            _ => Err(Error::Incomplete),
        }
    }

    fn step(&mut self) -> Result<Option<Event>, Error> {
        match self.state {
            State::Head => self.parse_head(),
            State::Body(left) => {
                if left == 0 {
                    self.state = State::Head;
                    return Ok(Some(Event::End));
                }
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let n = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                let data = self.buf.split_to(n).freeze();
                let left = left - n as u64;
                self.state = State::Body(left);
                if left == 0 {
                    self.state = State::Head;
                    self.events.push_back(Event::End);
                }
                Ok(Some(Event::Data(data)))
            }
            State::ChunkSize => {
                let Some(line_end) = find_lf(&self.buf) else {
                    if self.buf.len() > MAX_CHUNK_LINE {
                        return Err(Error::BadChunk);
                    }
                    return Ok(None);
                };
                let line = &self.buf[..line_end];
                let size = parse_chunk_size(line)?;
                self.buf.advance(line_end + 1);
                self.state = if size == 0 {
                    State::Trailers
                } else {
                    State::ChunkData(size)
                };
                self.step()
            }
            State::ChunkData(left) => {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                let n = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(self.buf.len());
                let data = self.buf.split_to(n).freeze();
                let left = left - n as u64;
                self.state = if left == 0 {
                    State::ChunkDataEnd
                } else {
                    State::ChunkData(left)
                };
                Ok(Some(Event::Data(data)))
            }
            State::ChunkDataEnd => {
                // RFC 9112 §7.1: CRLF after chunk data; a bare LF is tolerated like elsewhere.
                match self.buf.first() {
                    None => Ok(None),
                    Some(b'\n') => {
                        self.buf.advance(1);
                        self.state = State::ChunkSize;
                        self.step()
                    }
                    Some(b'\r') => match self.buf.get(1) {
                        None => Ok(None),
                        Some(b'\n') => {
                            self.buf.advance(2);
                            self.state = State::ChunkSize;
                            self.step()
                        }
                        Some(_) => Err(Error::BadChunk),
                    },
                    Some(_) => Err(Error::BadChunk),
                }
            }
            State::Trailers => {
                // The trailer section ends with an empty line; httparse parses the fields.
                if self.buf.starts_with(b"\r\n") || self.buf.starts_with(b"\n") {
                    let n = if self.buf[0] == b'\r' { 2 } else { 1 };
                    self.buf.advance(n);
                    self.state = State::Head;
                    self.events.push_back(Event::End);
                    return Ok(self.events.pop_front());
                }
                let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
                match httparse::parse_headers(&self.buf, &mut storage) {
                    Ok(httparse::Status::Complete((len, fields))) => {
                        let trailers = to_headers(fields);
                        self.buf.advance(len);
                        self.state = State::Head;
                        self.events.push_back(Event::End);
                        Ok(Some(Event::Trailers(trailers)))
                    }
                    Ok(httparse::Status::Partial) => {
                        if self.buf.len() > self.max_head {
                            return Err(Error::HeadTooLarge(self.max_head));
                        }
                        Ok(None)
                    }
                    Err(_) => Err(Error::BadChunk),
                }
            }
            State::UntilClose => {
                if self.buf.is_empty() {
                    return Ok(None);
                }
                Ok(Some(Event::Data(self.buf.split().freeze())))
            }
            State::AwaitingUpgrade | State::Upgraded | State::Failed => Ok(None),
        }
    }

    fn parse_head(&mut self) -> Result<Option<Event>, Error> {
        // RFC 9112 §2.2: ignore empty lines before a request line (left over from a
        // previous message's body framing mistakes by some clients).
        while self.buf.first().is_some_and(|b| *b == b'\r' || *b == b'\n') {
            self.buf.advance(1);
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let (event, len) = match self.role {
            Role::Request => {
                // Uninitialised slots: filling 256 empty headers (8 KiB) before every parse
                // attempt was most of the head parser's own time in an import.
                let mut storage = [const { MaybeUninit::uninit() }; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut []);
                match req.parse_with_uninit_headers(&self.buf, &mut storage) {
                    Ok(httparse::Status::Complete(len)) => {
                        let method = Text::from(req.method.unwrap_or_default());
                        let target = Text::from(req.path.unwrap_or_default());
                        let (minor, headers) = (req.version.unwrap_or(1), to_headers(req.headers));
                        let head = self.request_head(method, target, minor, headers)?;
                        (Event::RequestHead(head), len)
                    }
                    Ok(httparse::Status::Partial) => return self.partial(),
                    Err(e) => return Err(head_error(e)),
                }
            }
            Role::Response => {
                let mut storage = [const { MaybeUninit::uninit() }; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut []);
                let parsed = httparse::ParserConfig::default()
                    .allow_obsolete_multiline_headers_in_responses(true)
                    .allow_spaces_after_header_name_in_responses(true)
                    .parse_response_with_uninit_headers(&mut resp, &self.buf, &mut storage);
                match parsed {
                    Ok(httparse::Status::Complete(len)) => {
                        let status = resp.code.unwrap_or(0);
                        let reason = Text::from(resp.reason.unwrap_or_default());
                        let (minor, headers) =
                            (resp.version.unwrap_or(1), to_headers(resp.headers));
                        let head = self.response_head(status, reason, minor, headers)?;
                        (Event::ResponseHead(head), len)
                    }
                    Ok(httparse::Status::Partial) => return self.partial(),
                    Err(e) => return Err(head_error(e)),
                }
            }
        };
        if len > self.max_head {
            return Err(Error::HeadTooLarge(self.max_head));
        }
        self.buf.advance(len);
        Ok(Some(event))
    }

    fn partial(&self) -> Result<Option<Event>, Error> {
        if self.buf.len() > self.max_head {
            return Err(Error::HeadTooLarge(self.max_head));
        }
        Ok(None)
    }

    fn request_head(
        &mut self,
        method: Text,
        target: Text,
        minor: u8,
        headers: Vec<Header>,
    ) -> Result<RequestHead, Error> {
        // RFC 9112 §6.3: requests without Transfer-Encoding or Content-Length have no body.
        let framing = body_framing(&headers)?.unwrap_or(Framing::Empty);
        let switching = method.eq_ignore_ascii_case("CONNECT") || has_upgrade(&headers);
        self.state = match framing {
            Framing::Empty if switching => State::AwaitingUpgrade,
            Framing::Empty => State::Head,
            Framing::Length(n) => State::Body(n),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        if matches!(framing, Framing::Empty) {
            self.events.push_back(Event::End);
        }
        Ok(RequestHead {
            method,
            target,
            minor,
            headers,
            framing,
        })
    }

    fn response_head(
        &mut self,
        status: u16,
        reason: Text,
        minor: u8,
        headers: Vec<Header>,
    ) -> Result<ResponseHead, Error> {
        let interim = (100..200).contains(&status) && status != 101;
        let method = if interim {
            self.pending_methods.front().copied()
        } else {
            self.pending_methods.pop_front()
        };
        let method = method.unwrap_or(AskedWith::Other);
        let is_head = method == AskedWith::Head;
        let is_connect = method == AskedWith::Connect;
        let switched = status == 101 || (is_connect && (200..300).contains(&status));
        // RFC 9112 §6.3 rules 1-2: these responses never carry content, whatever the headers say.
        let bodiless = is_head || (100..200).contains(&status) || status == 204 || status == 304;
        let framing = if bodiless || switched {
            Framing::Empty
        } else {
            body_framing(&headers)?.unwrap_or(Framing::UntilClose)
        };
        self.state = match framing {
            Framing::Empty => State::Head,
            Framing::Length(n) => State::Body(n),
            Framing::Chunked => State::ChunkSize,
            Framing::UntilClose => State::UntilClose,
        };
        if matches!(framing, Framing::Empty) {
            self.events.push_back(Event::End);
        }
        if switched {
            self.state = State::Upgraded;
            self.events.push_back(Event::Upgraded);
        }
        Ok(ResponseHead {
            status,
            reason,
            minor,
            headers,
            framing,
        })
    }
}
