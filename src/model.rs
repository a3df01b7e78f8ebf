//! The one domain type that flows through every stage: an [`Exchange`].
//!
//! Capture produces exchanges, the store persists them, inference reads them and replay serves
//! them. This module is pure data: it imports nothing from the rest of mf.

use std::collections::BTreeMap;
use std::fmt;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

/// One header line as it was seen on the wire: original case, raw value bytes.
///
/// Headers are kept as an ordered `Vec<Header>` rather than a map so that duplicates, their
/// relative order and the case of names survive a record/replay round trip byte for byte.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: Text,
    #[serde(with = "lossless_bytes")]
    pub value: HeaderValue,
}

/// Short text of an exchange (header names, methods, versions, addresses): stored inline up
/// to 24 bytes. Measured on the recording proxy, a `String` for each of these was most of
/// the allocations per request, each freed again on the store's writer thread.
pub type Text = compact_str::CompactString;

/// A header value's bytes, inline up to 32 (a `Date`, a `Content-Type`, a length or an ETag
/// fit; a cookie or a token spills to the heap).
pub type HeaderValue = smallvec::SmallVec<[u8; 32]>;

impl Header {
    /// A header from text; convenient for tests and generated responses.
    pub fn new(name: impl AsRef<str>, value: impl AsRef<[u8]>) -> Self {
        Header {
            name: Text::new(name),
            value: HeaderValue::from_slice(value.as_ref()),
        }
    }

    /// The value as text, replacing bytes that are not UTF-8.
    pub fn value_str(&self) -> std::borrow::Cow<'_, str> {
        String::from_utf8_lossy(&self.value)
    }
}

/// Ordered header list helpers; names compare case-insensitively as HTTP requires.
pub trait HeaderList {
    /// First value of `name`, if any.
    fn header(&self, name: &str) -> Option<&[u8]>;
    /// All values of `name`, in order.
    fn header_all<'a>(&'a self, name: &'a str) -> Box<dyn Iterator<Item = &'a [u8]> + 'a>;
    /// First value of `name` as trimmed text.
    fn header_str(&self, name: &str) -> Option<String> {
        self.header(name)
            .map(|v| String::from_utf8_lossy(v).trim().to_string())
    }
}

impl HeaderList for [Header] {
    fn header(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value.as_slice())
    }
    fn header_all<'a>(&'a self, name: &'a str) -> Box<dyn Iterator<Item = &'a [u8]> + 'a> {
        Box::new(
            self.iter()
                .filter(move |h| h.name.eq_ignore_ascii_case(name))
                .map(|h| h.value.as_slice()),
        )
    }
}

/// The application protocol of an exchange, as `mf ls --json` names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
pub enum Protocol {
    #[serde(rename = "http/1.0")]
    Http10,
    #[serde(rename = "http/1.1")]
    Http11,
    #[serde(rename = "h2")]
    H2,
    #[serde(rename = "grpc")]
    Grpc,
    #[serde(rename = "websocket")]
    WebSocket,
}

impl Protocol {
    /// The stable name used in the store and in JSON output.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http10 => "http/1.0",
            Protocol::Http11 => "http/1.1",
            Protocol::H2 => "h2",
            Protocol::Grpc => "grpc",
            Protocol::WebSocket => "websocket",
        }
    }

    /// Parses the stable name back; `None` for names this mf does not know.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "http/1.0" => Protocol::Http10,
            "http/1.1" => Protocol::Http11,
            "h2" => Protocol::H2,
            "grpc" => Protocol::Grpc,
            "websocket" => Protocol::WebSocket,
            _ => return None,
        })
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message body, possibly cut short at the recorder's `--max-body` limit.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Body {
    /// The stored bytes (all of them unless `truncated`).
    pub data: Bytes,
    /// Size of the body on the wire, which exceeds `data.len()` when truncated.
    pub size: u64,
    /// The body was larger than the recording limit and only a prefix is stored.
    pub truncated: bool,
    /// When the stored bytes arrived, piece by piece, in order: the `len`s add up to
    /// `data.len()`. Empty when the body arrived at once (one piece, right with its head),
    /// which is most bodies; a streamed body (Server-Sent Events, a slow download, a
    /// long-poll) keeps one entry per burst so that replay can send it at the same pace.
    pub chunks: Vec<BodyChunk>,
}

/// One burst of a streamed body: `len` bytes that arrived `offset_ns` after the exchange's
/// `started_at_ns` (pieces arriving within [`BodyChunk::COALESCE_NS`] of a burst's first
/// piece belong to that burst).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BodyChunk {
    pub offset_ns: u64,
    pub len: u64,
}

impl BodyChunk {
    /// Pieces closer together than this are one chunk: replay cannot usefully time writes
    /// more finely, and a fast download stays a short table.
    pub const COALESCE_NS: u64 = 1_000_000;
}

impl Body {
    /// A complete body.
    pub fn full(data: impl Into<Bytes>) -> Self {
        let data = data.into();
        Body {
            size: data.len() as u64,
            data,
            truncated: false,
            chunks: Vec::new(),
        }
    }

    /// True when nothing was sent.
    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// The stored bytes split at the recorded chunk boundaries, each with its offset; the
    /// whole body at `at_once_ns` when there is no chunk table. A table that claims more
    /// bytes than are stored (a damaged row) is cut to the stored bytes.
    pub fn timed_pieces(&self, at_once_ns: u64) -> Vec<(u64, Bytes)> {
        if self.chunks.is_empty() {
            return vec![(at_once_ns, self.data.clone())];
        }
        let mut pieces = Vec::with_capacity(self.chunks.len() + 1);
        let mut start = 0usize;
        for c in &self.chunks {
            let end = start
                .saturating_add(usize::try_from(c.len).unwrap_or(usize::MAX))
                .min(self.data.len());
            if end > start {
                pieces.push((c.offset_ns, self.data.slice(start..end)));
            }
            start = end;
        }
        if start < self.data.len() {
            let last = self.chunks.last().map_or(at_once_ns, |c| c.offset_ns);
            pieces.push((last, self.data.slice(start..)));
        }
        pieces
    }
}

/// The request half of an exchange.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Request {
    pub method: Text,
    /// The request target as sent: origin form (`/a?b=c`), absolute form, or `service/method`
    /// path for gRPC.
    pub target: Text,
    /// `HTTP/1.1`, `HTTP/1.0` or `HTTP/2`.
    pub version: Text,
    pub headers: Vec<Header>,
    pub body: Body,
    pub trailers: Vec<Header>,
}

impl Request {
    /// The path part of the target, without the query string.
    pub fn path(&self) -> &str {
        let t = self.origin_form();
        t.split_once('?').map_or(t, |(p, _)| p)
    }

    /// The query string without `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.origin_form().split_once('?').map(|(_, q)| q)
    }

    /// The target in origin form: an absolute-form target loses its scheme and authority.
    pub fn origin_form(&self) -> &str {
        origin_form(&self.target)
    }
}

/// The response half of an exchange.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    pub reason: Text,
    pub version: Text,
    pub headers: Vec<Header>,
    pub body: Body,
    pub trailers: Vec<Header>,
}

/// When things happened, in nanoseconds after the exchange's `started_at_ns`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timings {
    /// Last byte of the request seen.
    pub request_end_ns: Option<u64>,
    /// First byte of the response head seen.
    pub response_first_byte_ns: Option<u64>,
    /// Last byte of the response seen.
    pub response_end_ns: Option<u64>,
}

/// Who sent a stream message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Direction {
    #[serde(rename = "client")]
    ClientToServer,
    #[serde(rename = "server")]
    ServerToClient,
}

/// What kind of stream message this is.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum MessageKind {
    /// A gRPC length-prefixed message; `compressed` is the flag byte.
    Grpc { compressed: bool },
    /// A WebSocket frame exactly as framed by the sender (fragments are kept as fragments).
    WebSocket {
        opcode: u8,
        fin: bool,
        /// The frame began a message sent compressed with permessage-deflate (RSV1, RFC 7692
        /// §6); the payloads of the message's frames are stored inflated.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        compressed: bool,
    },
}

/// One message of a streaming exchange (gRPC message, WebSocket frame).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamMessage {
    pub direction: Direction,
    /// Nanoseconds after the exchange's start.
    pub offset_ns: u64,
    pub kind: MessageKind,
    pub data: Bytes,
}

/// One recorded request/response exchange: the unit everything in mf is about.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exchange {
    /// Row id in the store; 0 before it is stored.
    pub id: i64,
    /// Which client connection carried it (unique within a recording).
    pub connection_id: u64,
    /// Position of the exchange within its connection, from 0.
    pub seq: u32,
    pub protocol: Option<Protocol>,
    /// Wall-clock start (first request byte) in nanoseconds since the Unix epoch.
    pub started_at_ns: i64,
    pub client_addr: Option<Text>,
    pub server_addr: Option<Text>,
    /// `http` or `https`; the authority the client addressed (Host or `:authority`).
    pub scheme: Text,
    pub authority: Text,
    pub request: Request,
    /// `None` when no response arrived (see `error`).
    pub response: Option<Response>,
    pub timings: Timings,
    /// Why the exchange is incomplete: upstream refused, reset, timed out…
    pub error: Option<ExchangeError>,
    /// W3C trace id from a `traceparent` request header.
    pub trace_id: Option<String>,
    pub tags: BTreeMap<String, String>,
    /// gRPC messages and WebSocket frames, in order.
    pub messages: Vec<StreamMessage>,
}

impl Exchange {
    /// The protocol, defaulting to HTTP/1.1 for exchanges built without one.
    pub fn protocol(&self) -> Protocol {
        self.protocol.unwrap_or(Protocol::Http11)
    }

    /// Full URL as the client addressed it.
    pub fn url(&self) -> String {
        url_of(&self.scheme, &self.authority, &self.request.target)
    }

    /// Total duration from first request byte to last response byte, if the response ended.
    pub fn duration_ns(&self) -> Option<u64> {
        self.timings.response_end_ns
    }
}

/// What went wrong with an exchange, as a kind that code can branch on.
///
/// The stable names (`as_str`) are what the store keeps and `mf ls --json` prints; code that
/// needs to know *why* an exchange failed (replay choosing 504 over 502, say) matches on the
/// kind, never on the message text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The upstream could not be reached (connection refused, no route, DNS).
    UpstreamRefused,
    /// The upstream did not answer (or finish answering) in time.
    UpstreamTimeout,
    /// The upstream closed or reset the connection before the response was complete.
    UpstreamReset,
    /// TLS to the upstream failed (handshake, certificate).
    UpstreamTls,
    /// The upstream sent bytes that are not a valid response.
    MalformedResponse,
    /// The client sent bytes that are not a valid request.
    MalformedRequest,
    /// The client went away before the exchange was complete.
    ClientAborted,
    /// A stream (HTTP/2 stream, gRPC call, WebSocket session) ended abnormally: reset,
    /// closed without a close frame, ended inside a message.
    StreamError,
    /// Passive capture missed bytes of this exchange (packet loss, capture started late).
    CaptureHole,
    /// Something else; the message says what.
    Other,
}

impl ErrorKind {
    /// Every kind, for tests and documentation.
    pub const ALL: [ErrorKind; 10] = [
        ErrorKind::UpstreamRefused,
        ErrorKind::UpstreamTimeout,
        ErrorKind::UpstreamReset,
        ErrorKind::UpstreamTls,
        ErrorKind::MalformedResponse,
        ErrorKind::MalformedRequest,
        ErrorKind::ClientAborted,
        ErrorKind::StreamError,
        ErrorKind::CaptureHole,
        ErrorKind::Other,
    ];

    /// The stable name kept in the store and printed in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::UpstreamRefused => "upstream_refused",
            ErrorKind::UpstreamTimeout => "upstream_timeout",
            ErrorKind::UpstreamReset => "upstream_reset",
            ErrorKind::UpstreamTls => "upstream_tls",
            ErrorKind::MalformedResponse => "malformed_response",
            ErrorKind::MalformedRequest => "malformed_request",
            ErrorKind::ClientAborted => "client_aborted",
            ErrorKind::StreamError => "stream_error",
            ErrorKind::CaptureHole => "capture_hole",
            ErrorKind::Other => "other",
        }
    }

    /// Parses a stable name; unknown names (from a newer mf) become `Other`.
    pub fn parse(s: &str) -> ErrorKind {
        ErrorKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .unwrap_or(ErrorKind::Other)
    }

    /// The status a proxy answers a client with when the upstream failed this way: 504 for a
    /// timeout, 502 for everything else (RFC 9110 §15.6.3, §15.6.5).
    pub fn gateway_status(self) -> u16 {
        match self {
            ErrorKind::UpstreamTimeout => 504,
            _ => 502,
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an exchange is incomplete: a kind for code and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExchangeError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ExchangeError {
    /// An error of `kind` explained by `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ExchangeError {
            kind,
            message: message.into(),
        }
    }
}

impl fmt::Display for ExchangeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

/// A request target in origin form: an absolute-form target (`http://h/p?q`) loses its
/// scheme and authority (`/p?q`); other forms are returned as they are.
pub fn origin_form(target: &str) -> &str {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            return rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    target
}

/// The URL a client addressed, from the scheme, the authority and the request target.
///
/// Only an origin-form target (`/a?b`) is joined to the authority. An absolute-form target
/// is already a URL; an authority-form target (`CONNECT host:port`) or `*` (`OPTIONS *`)
/// names no path, so it is shown as sent rather than glued to the authority
/// (`http://h:1h:1` was the result before).
pub fn url_of(scheme: &str, authority: &str, target: &str) -> String {
    if authority.is_empty() || !target.starts_with('/') {
        return target.to_string();
    }
    let scheme = if scheme.is_empty() { "http" } else { scheme };
    format!("{scheme}://{authority}{target}")
}

/// Extracts the trace id from a W3C `traceparent` value (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn trace_id_from_traceparent(value: &[u8]) -> Option<String> {
    let s = std::str::from_utf8(value).ok()?.trim();
    let mut parts = s.split('-');
    let _version = parts.next()?;
    let trace = parts.next()?;
    let valid = trace.len() == 32
        && trace.bytes().all(|b| b.is_ascii_hexdigit())
        && trace.bytes().any(|b| b != b'0');
    valid.then(|| trace.to_ascii_lowercase())
}

/// Where finished exchanges go: implemented by the store's batched writer, and by test sinks.
///
/// `record` must not block on disk: the proxy calls it on its hot path. Exchanges travel
/// boxed: a recorder builds one in a box, and it reaches the writer's queue without being
/// copied again (the struct is ~0.7 KB).
pub trait ExchangeSink: Send + Sync {
    fn record(&self, exchange: Box<Exchange>);
}

/// Serialises header values as strings when they are UTF-8 (readable JSON) and as
/// `{"b64": ...}`-free byte arrays otherwise, so that no value is ever altered.
mod lossless_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    #[serde(untagged)]
    enum Repr {
        Text(String),
        Bytes(Vec<u8>),
    }

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        match std::str::from_utf8(v) {
            Ok(t) => s.serialize_str(t),
            Err(_) => Repr::Bytes(v.to_vec()).serialize(s),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<super::HeaderValue, D::Error> {
        Ok(match Repr::deserialize(d)? {
            Repr::Text(t) => t.into_bytes().into(),
            Repr::Bytes(b) => b.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timed_pieces_split_at_the_chunk_table() {
        let mut b = Body::full(&b"abcdef"[..]);
        assert_eq!(b.timed_pieces(7), vec![(7, Bytes::from_static(b"abcdef"))]);
        b.chunks = vec![
            BodyChunk {
                offset_ns: 1,
                len: 2,
            },
            BodyChunk {
                offset_ns: 5,
                len: 3,
            },
        ];
        assert_eq!(
            b.timed_pieces(0),
            vec![
                (1, Bytes::from_static(b"ab")),
                (5, Bytes::from_static(b"cde")),
                (5, Bytes::from_static(b"f")),
            ]
        );
        b.chunks[1].len = 100;
        assert_eq!(b.timed_pieces(0)[1], (5, Bytes::from_static(b"cdef")));
    }

    #[test]
    fn traceparent_gives_trace_id() {
        let v = b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        assert_eq!(
            trace_id_from_traceparent(v).as_deref(),
            Some("4bf92f3577b34da6a3ce929d0e0e4736")
        );
        assert_eq!(trace_id_from_traceparent(b"00-0000-11-01"), None);
        assert_eq!(
            trace_id_from_traceparent(b"00-00000000000000000000000000000000-00f067aa0ba902b7-01"),
            None
        );
    }

    #[test]
    fn origin_form_strips_absolute_targets() {
        let r = Request {
            target: "http://a.example:8080/x/y?z=1".into(),
            ..Default::default()
        };
        assert_eq!(r.path(), "/x/y");
        assert_eq!(r.query(), Some("z=1"));
        let r = Request {
            target: "http://a.example".into(),
            ..Default::default()
        };
        assert_eq!(r.path(), "/");
    }
}
