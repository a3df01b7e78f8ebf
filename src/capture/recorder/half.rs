//! One direction of an exchange while it is recorded: the body kept within the budget, the
//! stream messages kept within the same budget, trailers, and when the direction ended.
//!
//! A half is separate from the rest of the exchange so that a driver pumping both directions
//! at once (the HTTP/1 proxy, the WebSocket relay) can hand each pump its own half without a
//! lock; the [`super::Recorder`] puts the halves back together.

use bytes::Bytes;

use crate::decode::grpc;
use crate::model::{
    Body, BodyChunk, Direction, ErrorKind, ExchangeError, Header, MessageKind, StreamMessage,
};

/// The recorder-side state of one direction.
pub(crate) struct Half {
    direction: Direction,
    started_at_ns: i64,
    max_body: usize,
    body: Vec<u8>,
    size: u64,
    truncated: bool,
    /// When the kept body bytes arrived, coalesced (see [`BodyChunk::COALESCE_NS`]): the
    /// only chunk so far in `first`, all of them in `chunks` once there are two. Most bodies
    /// arrive in one burst and end up with no table at all, so the first chunk is kept
    /// without allocating a table (one allocation per body, freed unused, showed in an
    /// import's profile).
    first: Option<BodyChunk>,
    chunks: Vec<BodyChunk>,
    /// Offset of this direction's head: a body that arrived in one piece right with it
    /// needs no chunk table. The request's head starts the exchange.
    head_ns: u64,
    trailers: Vec<Header>,
    /// Set when the direction carries gRPC: DATA is split into messages instead of a body.
    grpc: Option<grpc::Decoder>,
    messages: Vec<StreamMessage>,
    /// Payload bytes of the messages kept, counted against `max_body`.
    kept: usize,
    dropped: u64,
    ended_at: Option<i64>,
    error: Option<ExchangeError>,
}

impl Half {
    pub(super) fn new(direction: Direction, started_at_ns: i64, max_body: usize) -> Self {
        Half {
            direction,
            started_at_ns,
            max_body,
            body: Vec::new(),
            size: 0,
            truncated: false,
            first: None,
            chunks: Vec::new(),
            head_ns: 0,
            trailers: Vec::new(),
            grpc: None,
            messages: Vec::new(),
            kept: 0,
            dropped: 0,
            ended_at: None,
            error: None,
        }
    }

    /// The direction's head was seen at `at` (the response head: the request's is the start).
    pub(super) fn head_at(&mut self, at: i64) {
        self.head_ns = offset(self.started_at_ns, at);
    }

    pub(super) fn set_grpc(&mut self) {
        if self.grpc.is_none() {
            self.grpc = Some(grpc::Decoder::new());
        }
    }

    /// The body is announced as `len` bytes long (`Content-Length`): room for what the budget
    /// keeps of it is taken at once. Growing by doubling instead left every smaller buffer
    /// freed but still resident behind the allocator's purge delay: streaming 1 GiB with the
    /// 16 MiB budget raised the proxy's peak RSS by 53 MiB, 28 MiB of it that chain.
    pub(crate) fn expect(&mut self, len: u64) {
        if self.grpc.is_some() || !self.body.is_empty() {
            return;
        }
        let keep = usize::try_from(len)
            .unwrap_or(usize::MAX)
            .min(self.max_body);
        self.body.reserve_exact(keep);
    }

    /// Body bytes (or, for gRPC, DATA frame bytes) as they passed. Only what fits the budget
    /// is copied; the size of everything is counted.
    pub(crate) fn data(&mut self, at: i64, data: &[u8]) {
        if self.grpc.is_some() {
            self.grpc_data(at, data);
            return;
        }
        self.size += data.len() as u64;
        let room = self.max_body.saturating_sub(self.body.len());
        if data.len() > room {
            self.truncated = true;
        }
        let take = data.len().min(room);
        if take == 0 {
            return;
        }
        if take > self.body.capacity() - self.body.len() {
            // Double as usual, but never past the budget: a plain doubling would reserve
            // 32 MiB to keep 16, which showed as the proxy's peak RSS.
            let target = (self.body.capacity() * 2)
                .max(self.body.len() + take)
                .min(self.max_body);
            self.body.reserve_exact(target - self.body.len());
        }
        self.body.extend_from_slice(&data[..take]);
        self.note_chunk(at, take as u64);
    }

    /// Adds `len` kept bytes that arrived at `at` to the chunk table: to the last chunk when
    /// they came within [`BodyChunk::COALESCE_NS`] of its start (or before it: a clock stepped
    /// back), else as a new chunk; so offsets never decrease.
    fn note_chunk(&mut self, at: i64, len: u64) {
        let at_ns = offset(self.started_at_ns, at);
        let last = match self.chunks.last_mut() {
            Some(last) => Some(last),
            None => self.first.as_mut(),
        };
        match last {
            Some(last) if at_ns.saturating_sub(last.offset_ns) < BodyChunk::COALESCE_NS => {
                last.len += len;
            }
            _ => {
                let chunk = BodyChunk {
                    offset_ns: at_ns,
                    len,
                };
                match self.first.take() {
                    None if self.chunks.is_empty() => self.first = Some(chunk),
                    None => self.chunks.push(chunk),
                    Some(first) => self.chunks.extend([first, chunk]),
                }
            }
        }
    }

    fn grpc_data(&mut self, at: i64, data: &[u8]) {
        let Some(decoder) = self.grpc.as_mut() else {
            return;
        };
        if self.error.is_some() {
            return;
        }
        if let Err(e) = decoder.feed(data) {
            self.error = Some(ExchangeError::new(
                ErrorKind::StreamError,
                format!("grpc framing broken, messages no longer recorded: {e}"),
            ));
            return;
        }
        while let Some(m) = self.grpc.as_mut().and_then(grpc::Decoder::poll) {
            self.message(
                at,
                MessageKind::Grpc {
                    compressed: m.compressed,
                },
                m.data,
            );
        }
    }

    /// One stream message (a gRPC message, a WebSocket frame). Messages are kept while their
    /// payloads fit the budget; later ones are counted as dropped. WebSocket control frames
    /// are tiny and carry the close code, so they are always kept.
    pub(crate) fn message(&mut self, at: i64, kind: MessageKind, data: Bytes) {
        let control = matches!(kind, MessageKind::WebSocket { opcode, .. } if opcode >= 0x8);
        if !control && self.kept + data.len() > self.max_body {
            self.dropped += 1;
            return;
        }
        self.kept += data.len();
        self.messages.push(StreamMessage {
            direction: self.direction,
            offset_ns: offset(self.started_at_ns, at),
            kind,
            data,
        });
    }

    /// Payload bytes the message budget still has room for: a driver that has to work to
    /// produce a payload (inflating WebSocket frames) stops there.
    pub(crate) fn room(&self) -> usize {
        self.max_body.saturating_sub(self.kept)
    }

    /// Counts a message that was not kept because its payload was not produced.
    pub(crate) fn drop_message(&mut self) {
        self.dropped += 1;
    }

    pub(crate) fn trailers(&mut self, trailers: Vec<Header>) {
        self.trailers = trailers;
    }

    /// The direction's last byte was seen at `at` (a later call moves it).
    pub(crate) fn end(&mut self, at: i64) {
        self.ended_at = Some(at);
    }

    /// Something went wrong in this direction only; the first reason is kept.
    pub(crate) fn fail(&mut self, error: ExchangeError) {
        self.error.get_or_insert(error);
    }

    pub(super) fn max_body(&self) -> usize {
        self.max_body
    }

    pub(crate) fn is_ended(&self) -> bool {
        self.ended_at.is_some()
    }

    /// Whether a WebSocket close frame went this way.
    pub(crate) fn saw_ws_close(&self) -> bool {
        self.messages.iter().any(|m| {
            matches!(
                m.kind,
                MessageKind::WebSocket {
                    opcode: crate::decode::ws::opcode::CLOSE,
                    ..
                }
            )
        })
    }

    pub(super) fn ended_ns(&self) -> Option<u64> {
        self.ended_at.map(|at| offset(self.started_at_ns, at))
    }

    /// The kept body (a gRPC body is recorded as messages: its size is 0), trailers, messages,
    /// dropped count and error.
    pub(super) fn into_parts(mut self, who: &str) -> Parts {
        if let Some(g) = &self.grpc {
            if self.ended_at.is_some() && g.finish().is_err() {
                self.error.get_or_insert_with(|| {
                    ExchangeError::new(
                        ErrorKind::StreamError,
                        format!("grpc {who} ended inside a message"),
                    )
                });
            }
        }
        // A body that came in one burst right behind its head arrived "at once": no table,
        // so replay's fast path and the store see it as before.
        let at_once = match (self.first, self.chunks.as_slice()) {
            (None, []) => true,
            (Some(only), []) => {
                only.offset_ns.saturating_sub(self.head_ns) < BodyChunk::COALESCE_NS
            }
            _ => false,
        };
        if at_once {
            self.chunks = Vec::new();
        } else if let Some(only) = self.first {
            self.chunks = vec![only];
        }
        Parts {
            body: Body {
                data: Bytes::from(self.body),
                size: self.size,
                truncated: self.truncated,
                chunks: self.chunks,
            },
            trailers: self.trailers,
            messages: self.messages,
            dropped: self.dropped,
            error: self.error,
        }
    }
}

pub(super) struct Parts {
    pub body: Body,
    pub trailers: Vec<Header>,
    pub messages: Vec<StreamMessage>,
    pub dropped: u64,
    pub error: Option<ExchangeError>,
}

/// Nanoseconds from `start` to `at`; 0 for an `at` before the start.
pub(super) fn offset(start: i64, at: i64) -> u64 {
    u64::try_from(at.saturating_sub(start)).unwrap_or(0)
}
