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

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::model::Header;

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

/// A parsed request line and headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    pub method: String,
    pub target: String,
    /// Minor version: 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor: u8,
    pub headers: Vec<Header>,
    pub framing: Framing,
}

/// A parsed status line and headers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResponseHead {
    pub status: u16,
    pub reason: String,
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

/// Decodes one direction of an HTTP/1.x connection. See the module docs.
#[derive(Debug)]
pub struct Decoder {
    role: Role,
    state: State,
    buf: BytesMut,
    max_head: usize,
    /// Request methods whose responses are still to come; decides HEAD/CONNECT framing.
    pending_methods: VecDeque<String>,
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
        self.pending_methods.push_back(method.to_string());
    }

    /// Appends bytes read from the wire.
    pub fn feed(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// True when no message is partly decoded and no bytes wait.
    pub fn is_idle(&self) -> bool {
        matches!(self.state, State::Head) && self.buf.is_empty() && self.events.is_empty()
    }

    /// True once the connection left HTTP/1 (after [`Event::Upgraded`]).
    pub fn is_upgraded(&self) -> bool {
        matches!(self.state, State::Upgraded)
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
                let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut req = httparse::Request::new(&mut storage);
                match req.parse(&self.buf) {
                    Ok(httparse::Status::Complete(len)) => {
                        let method = req.method.unwrap_or_default().to_string();
                        let target = req.path.unwrap_or_default().to_string();
                        let (minor, headers) = (req.version.unwrap_or(1), to_headers(req.headers));
                        let head = self.request_head(method, target, minor, headers)?;
                        (Event::RequestHead(head), len)
                    }
                    Ok(httparse::Status::Partial) => return self.partial(),
                    Err(e) => return Err(head_error(e)),
                }
            }
            Role::Response => {
                let mut storage = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut storage);
                let parsed = httparse::ParserConfig::default()
                    .allow_obsolete_multiline_headers_in_responses(true)
                    .allow_spaces_after_header_name_in_responses(true)
                    .parse_response(&mut resp, &self.buf);
                match parsed {
                    Ok(httparse::Status::Complete(len)) => {
                        let status = resp.code.unwrap_or(0);
                        let reason = resp.reason.unwrap_or_default().to_string();
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
        method: String,
        target: String,
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
        reason: String,
        minor: u8,
        headers: Vec<Header>,
    ) -> Result<ResponseHead, Error> {
        let interim = (100..200).contains(&status) && status != 101;
        let method = if interim {
            self.pending_methods.front().cloned()
        } else {
            self.pending_methods.pop_front()
        };
        let method = method.unwrap_or_default();
        let is_head = method.eq_ignore_ascii_case("HEAD");
        let is_connect = method.eq_ignore_ascii_case("CONNECT");
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

fn head_error(e: httparse::Error) -> Error {
    match e {
        httparse::Error::TooManyHeaders => Error::TooManyHeaders,
        other => Error::BadHead(other.to_string()),
    }
}

fn to_headers(fields: &[httparse::Header]) -> Vec<Header> {
    fields
        .iter()
        .filter(|h| !h.name.is_empty())
        .map(|h| Header {
            name: h.name.to_string(),
            value: h.value.to_vec(),
        })
        .collect()
}

fn has_upgrade(headers: &[Header]) -> bool {
    headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("upgrade"))
        && headers.iter().any(|h| {
            h.name.eq_ignore_ascii_case("connection")
                && h.value
                    .split(|b| *b == b',')
                    .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
        })
}

/// RFC 9112 §6.3 rules 3-6 shared by requests and responses. `None`: no framing header.
fn body_framing(headers: &[Header]) -> Result<Option<Framing>, Error> {
    let mut te_seen = false;
    let mut chunked_last = false;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("transfer-encoding"))
    {
        te_seen = true;
        for coding in h.value.split(|b| *b == b',') {
            let coding = coding.trim_ascii();
            if !coding.is_empty() {
                chunked_last = coding.eq_ignore_ascii_case(b"chunked");
            }
        }
    }
    if te_seen {
        // Transfer-Encoding overrides Content-Length; a final coding other than chunked means
        // the body runs to the end of the connection.
        return Ok(Some(if chunked_last {
            Framing::Chunked
        } else {
            Framing::UntilClose
        }));
    }
    let mut length: Option<u64> = None;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        // Several identical values (or a comma list of them) are allowed; differing ones are not.
        for part in h.value.split(|b| *b == b',') {
            let part = part.trim_ascii();
            if part.is_empty() || !part.iter().all(u8::is_ascii_digit) || part.len() > 19 {
                return Err(Error::BadContentLength);
            }
            let n: u64 = std::str::from_utf8(part)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or(Error::BadContentLength)?;
            if length.is_some_and(|l| l != n) {
                return Err(Error::BadContentLength);
            }
            length = Some(n);
        }
    }
    Ok(length.map(|n| {
        if n == 0 {
            Framing::Empty
        } else {
            Framing::Length(n)
        }
    }))
}

fn find_lf(buf: &[u8]) -> Option<usize> {
    buf.iter().position(|b| *b == b'\n')
}

fn parse_chunk_size(line: &[u8]) -> Result<u64, Error> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    // Chunk extensions (`;name=value`) are legal and ignored.
    let hex = line
        .split(|b| *b == b';')
        .next()
        .unwrap_or_default()
        .trim_ascii();
    if hex.is_empty() || hex.len() > 15 || !hex.iter().all(u8::is_ascii_hexdigit) {
        return Err(Error::BadChunk);
    }
    let s = std::str::from_utf8(hex).map_err(|_| Error::BadChunk)?;
    u64::from_str_radix(s, 16).map_err(|_| Error::BadChunk)
}

/// Headers that describe one connection rather than the message (RFC 9110 §7.6.1), plus any
/// field the `Connection` header names. A proxy must not forward them.
pub fn is_hop_by_hop(name: &str, headers: &[Header]) -> bool {
    const FIXED: [&str; 8] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "transfer-encoding",
        "upgrade",
    ];
    if FIXED.iter().any(|f| name.eq_ignore_ascii_case(f)) {
        return true;
    }
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| {
            h.value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
        })
}

/// True when the peer asked to close the connection after this message, or its version
/// does not keep connections alive by default.
pub fn wants_close(minor: u8, headers: &[Header]) -> bool {
    let mut close = minor == 0;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
    {
        for t in h.value.split(|b| *b == b',') {
            let t = t.trim_ascii();
            if t.eq_ignore_ascii_case(b"close") {
                return true;
            }
            if t.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        }
    }
    close
}

/// How a response to `method` with `status` and `headers` is framed (RFC 9112 §6.3); used by
/// the replay server to send a recorded response exactly as the decoder would have read it.
pub fn response_framing(method: &str, status: u16, headers: &[Header]) -> Framing {
    let bodiless = method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&status)
        || status == 204
        || status == 304;
    let tunnel = method.eq_ignore_ascii_case("CONNECT") && (200..300).contains(&status);
    if bodiless || tunnel {
        return Framing::Empty;
    }
    match body_framing(headers) {
        Ok(Some(f)) => f,
        Ok(None) => Framing::UntilClose,
        // A recorded Content-Length that does not parse cannot be trusted: delimit by close.
        Err(_) => Framing::UntilClose,
    }
}

/// The response headers a proxy or replay server sends to its client: hop-by-hop fields
/// dropped (RFC 9110 §7.6.1) except those that keep their meaning end to end here —
/// `Transfer-Encoding` (mf re-chunks the same body) and, on a 101, `Connection`/`Upgrade` —
/// and `Connection: close` appended when this connection ends after the response.
pub fn client_response_headers(status: u16, headers: &[Header], close: bool) -> Vec<Header> {
    let mut out: Vec<Header> = headers
        .iter()
        .filter(|h| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                || (status == 101
                    && (h.name.eq_ignore_ascii_case("connection")
                        || h.name.eq_ignore_ascii_case("upgrade")))
                || !is_hop_by_hop(&h.name, headers)
        })
        .cloned()
        .collect();
    if close && status != 101 {
        out.push(Header::new("Connection", "close"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn drain(d: &mut Decoder) -> Result<Vec<Event>, Error> {
        let mut out = Vec::new();
        while let Some(ev) = d.poll()? {
            out.push(ev);
        }
        Ok(out)
    }

    /// Merges adjacent Data events so that differently split inputs compare equal.
    fn normalise(events: Vec<Event>) -> Vec<Event> {
        let mut out: Vec<Event> = Vec::new();
        for ev in events {
            if let (Some(Event::Data(prev)), Event::Data(d)) = (out.last_mut(), &ev) {
                let mut joined = prev.to_vec();
                joined.extend_from_slice(d);
                *prev = Bytes::from(joined);
                continue;
            }
            if matches!(&ev, Event::Data(d) if d.is_empty()) {
                continue;
            }
            out.push(ev);
        }
        out
    }

    #[test]
    fn head_incomplete_gives_no_event_then_request() {
        let mut d = Decoder::new(Role::Request);
        d.feed(b"GET /users/7 HTTP/1.1\r\nHost: a\r\n");
        assert_eq!(d.poll(), Ok(None));
        d.feed(b"\r\n");
        let Some(Event::RequestHead(h)) = d.poll().unwrap() else {
            panic!("no head")
        };
        assert_eq!(h.method, "GET");
        assert_eq!(h.target, "/users/7");
        assert_eq!(h.headers, vec![Header::new("Host", "a")]);
        assert_eq!(d.poll(), Ok(Some(Event::End)));
        assert!(d.is_idle());
    }

    #[test]
    fn keeps_header_case_order_and_duplicates() {
        let mut d = Decoder::new(Role::Response);
        d.push_request_method("GET");
        d.feed(b"HTTP/1.1 200 OK\r\nX-B: 1\r\nset-cookie: a\r\nX-A: 2\r\nSet-Cookie: b\r\nContent-Length: 0\r\n\r\n");
        let Some(Event::ResponseHead(h)) = d.poll().unwrap() else {
            panic!()
        };
        let names: Vec<_> = h.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["X-B", "set-cookie", "X-A", "Set-Cookie", "Content-Length"]
        );
    }

    #[test]
    fn chunked_with_trailers() {
        let mut d = Decoder::new(Role::Request);
        d.feed(b"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 9\r\n\r\n");
        let ev = normalise(drain(&mut d).unwrap());
        assert!(matches!(&ev[0], Event::RequestHead(h) if h.framing == Framing::Chunked));
        assert_eq!(ev[1], Event::Data(Bytes::from_static(b"hello world")));
        assert_eq!(ev[2], Event::Trailers(vec![Header::new("X-Sum", "9")]));
        assert_eq!(ev[3], Event::End);
    }

    #[test]
    fn head_and_304_responses_have_no_body() {
        let mut d = Decoder::new(Role::Response);
        d.push_request_method("HEAD");
        d.push_request_method("GET");
        d.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");
        let ev = drain(&mut d).unwrap();
        assert_eq!(ev.len(), 4, "{ev:?}");
        assert!(d.is_idle());
    }

    #[test]
    fn interim_100_does_not_consume_the_request() {
        let mut d = Decoder::new(Role::Response);
        d.push_request_method("HEAD");
        d.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
        let ev = drain(&mut d).unwrap();
        // 100 head, end, 200 head (HEAD: no body), end.
        assert_eq!(ev.len(), 4, "{ev:?}");
    }

    #[test]
    fn close_delimited_response_ends_at_finish() {
        let mut d = Decoder::new(Role::Response);
        d.push_request_method("GET");
        d.feed(b"HTTP/1.0 200 OK\r\n\r\nabc");
        let ev = drain(&mut d).unwrap();
        assert_eq!(ev.len(), 2);
        assert_eq!(d.finish(), Ok(Some(Event::End)));
    }

    #[test]
    fn truncated_body_is_incomplete() {
        let mut d = Decoder::new(Role::Request);
        d.feed(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
        drain(&mut d).unwrap();
        assert_eq!(d.finish(), Err(Error::Incomplete));
    }

    #[test]
    fn upgrade_waits_for_verdict() {
        let mut d = Decoder::new(Role::Request);
        d.feed(b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00");
        let ev = drain(&mut d).unwrap();
        assert_eq!(ev.len(), 2);
        d.resolve_upgrade(true);
        assert_eq!(d.poll(), Ok(Some(Event::Upgraded)));
        assert_eq!(&d.take_buffered()[..], b"\x81\x00");
    }

    #[test]
    fn garbage_and_oversized_heads_are_errors() {
        let mut d = Decoder::new(Role::Request);
        d.feed(b"\x16\x03\x01\x02\x00garbage\r\n\r\n");
        assert!(d.poll().is_err());
        let mut d = Decoder::new(Role::Request).with_max_head(1024);
        d.feed(b"GET / HTTP/1.1\r\n");
        d.feed(&vec![b'a'; 2000]);
        assert_eq!(d.poll().map_err(|e| e.status()), Err(431));
    }

    #[test]
    fn conflicting_content_length_is_rejected() {
        let mut d = Decoder::new(Role::Request);
        d.feed(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n");
        assert_eq!(d.poll(), Err(Error::BadContentLength));
    }

    #[test]
    fn bare_lf_pipelined_requests() {
        let mut d = Decoder::new(Role::Request);
        d.feed(b"GET /bar/ HTTP/1.1\nHost: x\n\nGET /foo/ HTTP/1.1\nHost: x\n\n");
        let heads = drain(&mut d)
            .unwrap()
            .into_iter()
            .filter(|e| matches!(e, Event::RequestHead(_)))
            .count();
        assert_eq!(heads, 2);
    }

    const STREAM: &[u8] = b"POST /a?x=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\nPUT /c HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";

    proptest! {
        #[test]
        fn any_split_gives_the_same_events(cuts in proptest::collection::vec(0usize..STREAM.len(), 0..8)) {
            let mut whole = Decoder::new(Role::Request);
            whole.feed(STREAM);
            let expected = normalise(drain(&mut whole).unwrap());

            let mut cuts = cuts;
            cuts.sort_unstable();
            let mut d = Decoder::new(Role::Request);
            let mut got = Vec::new();
            let mut start = 0;
            for cut in cuts.into_iter().chain([STREAM.len()]) {
                d.feed(&STREAM[start..cut.max(start)]);
                start = cut.max(start);
                got.extend(drain(&mut d).unwrap());
            }
            prop_assert_eq!(normalise(got), expected);
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            for role in [Role::Request, Role::Response] {
                let mut d = Decoder::new(role);
                d.feed(&data);
                while let Ok(Some(_)) = d.poll() {}
                let _ = d.finish();
            }
        }
    }
}
