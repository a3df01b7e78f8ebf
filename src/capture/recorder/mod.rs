//! The recording layer: decoder events plus timestamps become one [`Exchange`].
//!
//! Every way mf records — the HTTP/1 proxy, the HTTP/2 and gRPC proxy, the WebSocket relay
//! and passive capture (pcap import, live sniffing) — feeds a [`Recorder`], so that one
//! header policy, one body and message budget, one truncation flag and one error type apply
//! to all of them. It is sans-IO: every event carries its time (`at`, nanoseconds on the
//! wall clock the exchange's `started_at_ns` uses) and nothing here reads a clock, so the
//! same sequence of events always yields the same exchange (see the tests).
//!
//! Imports: `model`, `decode` (the gRPC message splitter). Nothing from the drivers.

mod half;
#[cfg(test)]
mod tests;

use crate::model::{
    trace_id_from_traceparent, Direction, Exchange, ExchangeError, Header, HeaderList, Protocol,
    Request, Response, Text,
};

pub(crate) use half::Half;

/// Limits of one recording.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    /// Bytes kept per direction: of the body, or of the payloads of stream messages
    /// (gRPC messages, WebSocket frames). Beyond it a body is flagged truncated with its full
    /// size kept, and further messages are counted in the `messages_dropped` tag.
    pub max_body: usize,
}

/// The header policy of every recording: headers are stored exactly as they were on the
/// wire, hop-by-hop fields (`Connection`, `Keep-Alive`, `Transfer-Encoding`, `Upgrade`…)
/// included, in their order and case.
///
/// Why keep them: a recording is the evidence of what a client and a server said to each
/// other, and passive capture can only ever see the wire. Dropping hop-by-hop fields is a
/// concern of whoever speaks to a peer — the proxy when it forwards, replay when it renders
/// (`decode::h1::client_response_headers` for HTTP/1, `vocab::header_map` for HTTP/2) — not
/// of the record; infer already ignores connection-specific fields.
fn recorded_headers(headers: Vec<Header>) -> Vec<Header> {
    headers
}

/// Whether a content type is gRPC's (`application/grpc`, `application/grpc+proto`…).
fn is_grpc(headers: &[Header]) -> bool {
    headers
        .header("content-type")
        .is_some_and(|c| c.starts_with(b"application/grpc"))
}

/// One exchange being recorded.
///
/// Boxed, with the exchange in a box of its own: a recorder is moved several times on its
/// way (into a flow's queue of requests, out to be answered, into `finish`), and the exchange
/// again through the sinks to the writer's channel. Moved inline, those were ~30 copies of
/// 0.7-1.3 KB per exchange, 14% of the instructions of an import's parsing thread
/// (callgrind); two allocations cost a fraction of that.
pub(crate) struct Recorder {
    p: Box<State>,
}

struct State {
    ex: Box<Exchange>,
    request: Half,
    response: Half,
    error: Option<ExchangeError>,
}

impl Recorder {
    /// An exchange whose first byte was seen at `at`.
    pub(crate) fn new(at: i64, limits: Limits) -> Self {
        Recorder {
            p: Box::new(State {
                ex: Box::new(Exchange {
                    started_at_ns: at,
                    ..Exchange::default()
                }),
                request: Half::new(Direction::ClientToServer, at, limits.max_body),
                response: Half::new(Direction::ServerToClient, at, limits.max_body),
                error: None,
            }),
        }
    }

    /// The exchange so far, for the fields a driver knows and the recorder does not
    /// (connection id, sequence, addresses, scheme, authority, protocol, tags). Bodies,
    /// messages and timings are filled in by [`Recorder::finish`].
    pub(crate) fn exchange(&self) -> &Exchange {
        &self.p.ex
    }

    /// See [`Recorder::exchange`].
    pub(crate) fn exchange_mut(&mut self) -> &mut Exchange {
        &mut self.p.ex
    }

    /// The request head. An HTTP/2 request with a gRPC content type makes the exchange gRPC:
    /// its DATA is recorded as messages.
    pub(crate) fn request_head(
        &mut self,
        method: Text,
        target: Text,
        version: Text,
        headers: Vec<Header>,
    ) {
        if version == "HTTP/2" && is_grpc(&headers) {
            self.set_grpc();
        }
        if self.p.ex.trace_id.is_none() {
            self.p.ex.trace_id = headers
                .header("traceparent")
                .and_then(trace_id_from_traceparent);
        }
        self.p.ex.request = Request {
            method,
            target,
            version,
            headers: recorded_headers(headers),
            ..Request::default()
        };
    }

    /// The final response head (interim 1xx heads are not recorded), first seen at `at`.
    pub(crate) fn response_head(
        &mut self,
        at: i64,
        status: u16,
        reason: Text,
        version: Text,
        headers: Vec<Header>,
    ) {
        if version == "HTTP/2" && is_grpc(&headers) {
            self.set_grpc();
        }
        self.p.ex.timings.response_first_byte_ns = Some(half::offset(self.p.ex.started_at_ns, at));
        self.p.response.head_at(at);
        self.p.ex.response = Some(Response {
            status,
            reason,
            version,
            headers: recorded_headers(headers),
            ..Response::default()
        });
    }

    /// Forgets the response head: an `Upgrade: h2c` request is answered again on stream 1.
    pub(crate) fn clear_response(&mut self) {
        self.p.ex.response = None;
        self.p.ex.timings.response_first_byte_ns = None;
        self.p.ex.timings.response_end_ns = None;
        self.p.response = Half::new(
            Direction::ServerToClient,
            self.p.ex.started_at_ns,
            self.response_budget(),
        );
    }

    fn response_budget(&self) -> usize {
        self.p.request.max_body()
    }

    fn set_grpc(&mut self) {
        self.p.ex.protocol = Some(Protocol::Grpc);
        self.p.request.set_grpc();
        self.p.response.set_grpc();
    }

    /// The largest WebSocket frame a decoder feeding this recorder should assemble: enough
    /// for any frame the budget could keep.
    pub(crate) fn ws_max_frame(&self) -> usize {
        self.p
            .request
            .max_body()
            .max(crate::decode::ws::DEFAULT_MAX_FRAME)
    }

    /// The half of `direction`.
    pub(crate) fn half(&mut self, direction: Direction) -> &mut Half {
        match direction {
            Direction::ClientToServer => &mut self.p.request,
            Direction::ServerToClient => &mut self.p.response,
        }
    }

    /// Both halves at once, for drivers that pump the two directions concurrently.
    pub(crate) fn halves(&mut self) -> (&mut Half, &mut Half) {
        let p = &mut *self.p;
        (&mut p.request, &mut p.response)
    }

    /// Request body bytes seen at `at`.
    pub(crate) fn request_data(&mut self, at: i64, data: &[u8]) {
        self.p.request.data(at, data);
    }

    /// Response body bytes seen at `at`.
    pub(crate) fn response_data(&mut self, at: i64, data: &[u8]) {
        self.p.response.data(at, data);
    }

    /// A stream message of `direction` seen at `at`.
    pub(crate) fn message(
        &mut self,
        at: i64,
        direction: Direction,
        kind: crate::model::MessageKind,
        data: bytes::Bytes,
    ) {
        self.half(direction).message(at, kind, data);
    }

    /// Trailers of `direction`.
    pub(crate) fn trailers(&mut self, direction: Direction, trailers: Vec<Header>) {
        self.half(direction).trailers(recorded_headers(trailers));
    }

    /// The last byte of `direction` was seen at `at`.
    pub(crate) fn end(&mut self, at: i64, direction: Direction) {
        self.half(direction).end(at);
    }

    /// Whether the response has ended.
    pub(crate) fn response_ended(&self) -> bool {
        self.p.response.is_ended()
    }

    /// Why the exchange is incomplete; the first reason given is kept.
    pub(crate) fn fail(&mut self, error: ExchangeError) {
        self.p.error.get_or_insert(error);
    }

    /// The recorded exchange: bodies, trailers, messages (in time order), timings, the
    /// `messages_dropped` tag and the error. A direction's own failure (broken gRPC framing,
    /// say) is reported before a failure of the exchange as a whole, the request's first.
    pub(crate) fn finish(self) -> Box<Exchange> {
        let State {
            mut ex,
            request,
            response,
            error,
        } = *self.p;
        ex.timings.request_end_ns = request.ended_ns();
        ex.timings.response_end_ns = response.ended_ns();
        let req = request.into_parts("request");
        let resp = response.into_parts("response");
        ex.request.body = req.body;
        ex.request.trailers = req.trailers;
        if let Some(r) = ex.response.as_mut() {
            r.body = resp.body;
            r.trailers = resp.trailers;
        }
        let dropped = req.dropped + resp.dropped;
        if dropped > 0 {
            ex.tags
                .insert("messages_dropped".into(), dropped.to_string());
        }
        let mut messages = req.messages;
        messages.extend(resp.messages);
        // Stable: each direction's messages keep their order when offsets tie.
        messages.sort_by_key(|m| m.offset_ns);
        ex.messages = messages;
        ex.error = req.error.or(resp.error).or(error);
        ex
    }
}
