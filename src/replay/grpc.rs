//! gRPC replay: picks the recorded call for a live one and plays the recorded answer —
//! headers, messages, trailers — with the recorded timing relative to the client's messages.
//!
//! A call is matched on its path (`/service/method`) and its first request message: a
//! recorded call with the same bytes first (in recorded order, like identical HTTP requests),
//! else the next recorded call of that method by position. Within the call, every server
//! event waits for the client event it followed in the recording (see [`super::stream`]):
//! unary and server-streaming answers follow the request, client-streaming answers follow the
//! half-close, and bidirectional answers follow the message they answered.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response};
use http_body::{Body as _, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::h2::{header_map, BoxError, ChannelBody, FixedBody, ReplayBody};
use super::matcher::RepeatPolicy;
use super::server::Replay;
use super::stream::{due, plan, Progress, Step};
use crate::decode::grpc;
use crate::model::{
    Direction, ErrorKind, Exchange, ExchangeError, HeaderList, MessageKind, Protocol,
};

/// Recorded calls answered in turn, with how many live calls the group has had.
#[derive(Default)]
struct Group {
    members: Vec<usize>,
    calls: AtomicUsize,
}

/// The recorded calls of one `/service/method`.
#[derive(Default)]
struct Method {
    all: Group,
    /// Calls whose first request message is exactly these bytes (`None`: no message).
    by_first: HashMap<Option<Bytes>, Group>,
    /// Every recorded call has the server speak before the client.
    server_first: bool,
}

/// Recorded gRPC calls by path and by path + first request message, with call counters.
/// Lookups allocate nothing and take no lock: this is the replay's hot path.
pub struct GrpcIndex {
    methods: HashMap<String, Method>,
    repeat: RepeatPolicy,
    prepared: Vec<Option<Arc<Prepared>>>,
}

impl GrpcIndex {
    /// Indexes the gRPC exchanges of a recording.
    pub fn new(exchanges: &[Exchange], repeat: RepeatPolicy) -> GrpcIndex {
        let mut methods: HashMap<String, Method> = HashMap::new();
        for (i, ex) in exchanges.iter().enumerate() {
            if ex.protocol != Some(Protocol::Grpc) {
                continue;
            }
            let first = ex
                .messages
                .iter()
                .find(|m| m.direction == Direction::ClientToServer)
                .map(|m| m.data.clone());
            let server_first = ex
                .messages
                .first()
                .is_some_and(|m| m.direction == Direction::ServerToClient);
            let m = methods
                .entry(ex.request.path().to_string())
                .or_insert_with(|| Method {
                    server_first: true,
                    ..Method::default()
                });
            m.server_first &= server_first;
            m.all.members.push(i);
            m.by_first.entry(first).or_default().members.push(i);
        }
        let prepared = exchanges
            .iter()
            .map(|ex| (ex.protocol == Some(Protocol::Grpc)).then(|| Arc::new(Prepared::new(ex))))
            .collect();
        GrpcIndex {
            methods,
            repeat,
            prepared,
        }
    }

    /// True when every recorded call of `path` has the server speak before the client: the
    /// answer must start without waiting for a client message.
    fn server_speaks_first(&self, path: &str) -> bool {
        self.methods.get(path).is_some_and(|m| m.server_first)
    }

    /// The recorded call answering a live call of `path` whose first message is `first`.
    pub fn find(&self, path: &str, first: Option<&Bytes>) -> Option<usize> {
        let method = self.methods.get(path)?;
        let group = method.by_first.get(&first.cloned()).unwrap_or(&method.all);
        let call = group.calls.fetch_add(1, Ordering::Relaxed);
        let n = group.members.len();
        let pick = match self.repeat {
            RepeatPolicy::Last => call.min(n.saturating_sub(1)),
            RepeatPolicy::Cycle => call % n.max(1),
            RepeatPolicy::NotFound => call,
        };
        group.members.get(pick).copied()
    }
}

/// A recorded call made ready to serve once, at start-up: header maps built, messages framed,
/// every server event planned.
struct Prepared {
    client_messages: Arc<Vec<Bytes>>,
    /// `None`: no response was recorded.
    head: Option<(u16, http::HeaderMap, Step)>,
    /// Framed server messages with their plan.
    server: Vec<(Step, Bytes)>,
    trailers: Option<http::HeaderMap>,
    end: Option<Step>,
    trailers_only: bool,
    error: Option<ExchangeError>,
}

impl Prepared {
    fn new(ex: &Exchange) -> Prepared {
        let client: Vec<&crate::model::StreamMessage> = ex
            .messages
            .iter()
            .filter(|m| m.direction == Direction::ClientToServer)
            .collect();
        let offsets: Vec<u64> = client.iter().map(|m| m.offset_ns).collect();
        let half_close = ex.timings.request_end_ns;
        let server: Vec<(Step, Bytes)> = ex
            .messages
            .iter()
            .filter(|m| m.direction == Direction::ServerToClient)
            .map(|m| {
                let mut out = BytesMut::with_capacity(5 + m.data.len());
                grpc::encode(
                    &mut out,
                    matches!(m.kind, MessageKind::Grpc { compressed: true }),
                    &m.data,
                );
                (plan(&offsets, half_close, m.offset_ns), out.freeze())
            })
            .collect();
        let resp = ex.response.as_ref();
        Prepared {
            client_messages: Arc::new(client.iter().map(|m| m.data.clone()).collect()),
            head: resp.map(|r| {
                let step = plan(
                    &offsets,
                    half_close,
                    ex.timings.response_first_byte_ns.unwrap_or(0),
                );
                (r.status, header_map(&r.headers, None), step)
            }),
            trailers_only: resp.is_some_and(|r| {
                server.is_empty()
                    && r.trailers.is_empty()
                    && r.headers.header("grpc-status").is_some()
            }),
            server,
            trailers: resp
                .filter(|r| !r.trailers.is_empty())
                .map(|r| header_map(&r.trailers, None)),
            end: ex
                .timings
                .response_end_ns
                .map(|e| plan(&offsets, half_close, e)),
            error: ex.error.clone(),
        }
    }
}

/// Reads the request until its first message (or its end). Returns the message and whether
/// the client already half-closed; later messages stay in `decoder`.
async fn first_message(body: &mut Incoming, decoder: &mut grpc::Decoder) -> (Option<Bytes>, bool) {
    loop {
        if let Some(m) = decoder.poll() {
            return (Some(m.data), body.is_end_stream());
        }
        match body.frame().await {
            Some(Ok(frame)) => {
                if let Some(d) = frame.data_ref() {
                    if decoder.feed(d).is_err() {
                        return (None, true);
                    }
                }
            }
            Some(Err(_)) | None => return (None, true),
        }
    }
}

/// Answers one live gRPC call.
pub(super) async fn serve_call(
    replay: Arc<Replay>,
    req: Request<Incoming>,
) -> Response<ReplayBody> {
    let start = Instant::now();
    let path = req.uri().path().to_string();
    let req_headers = super::h2::to_model_headers(req.headers());
    let mut body = req.into_body();
    let mut decoder = grpc::Decoder::new();
    let (first, ended) = if replay.grpc.server_speaks_first(&path) {
        (None, body.is_end_stream())
    } else {
        first_message(&mut body, &mut decoder).await
    };
    let Some(index) = replay.grpc.find(&path, first.as_ref()) else {
        replay.stats.unmatched.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(path = %path, "no recorded grpc call matches");
        return trailers_only(12, &format!("mf: no recorded call matches {path}"));
    };
    replay.stats.matched.fetch_add(1, Ordering::Relaxed);
    let Some(prepared) = replay.grpc.prepared.get(index).and_then(|p| p.clone()) else {
        return trailers_only(13, "mf: recorded call is not a grpc call");
    };
    // Issue-5 realism: the same planner as HTTP decides delay and faults for the call.
    let info = super::rules::RequestInfo {
        protocol: Protocol::Grpc,
        method: "POST",
        path: &path,
        grpc_method: Some(path.trim_start_matches('/')),
        headers: &req_headers,
    };
    let plan = replay.plan_for(&info, Some(index));
    if !plan.first_byte.is_zero() {
        tokio::time::sleep(plan.first_byte).await;
    }
    match &plan.fault {
        Some(super::faults::Fault::GrpcStatus { code, message }) => {
            replay
                .metrics()
                .grpc_calls
                .with_label_values(&[&path, &code.to_string()])
                .inc();
            return trailers_only(*code, message);
        }
        Some(super::faults::Fault::Status { code, .. }) => {
            // gRPC's HTTP-to-status mapping (doc/http-grpc-status-mapping.md).
            let grpc_code = match code {
                400 => 13,
                401 => 16,
                403 => 7,
                404 => 12,
                429 | 502 | 503 | 504 => 14,
                _ => 2,
            };
            let message = format!("mf: injected fault (HTTP {code})");
            replay
                .metrics()
                .grpc_calls
                .with_label_values(&[&path, &grpc_code.to_string()])
                .inc();
            return trailers_only(grpc_code, &message);
        }
        Some(super::faults::Fault::Hang) => std::future::pending::<()>().await,
        Some(super::faults::Fault::Reset) | Some(super::faults::Fault::GrpcAbort) => {
            // hyper turns a body error into RST_STREAM (INTERNAL_ERROR) for this stream.
            let failing = http_body_util::StreamBody::new(futures_util::stream::once(async {
                Err::<Frame<Bytes>, BoxError>("mf: injected fault: stream reset".into())
            }));
            return Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(UnsyncBoxBody::new(failing))
                .unwrap_or_else(|_| trailers_only_fallback());
        }
        _ => {}
    }

    let progress = Progress::new(prepared.client_messages.clone(), start);
    let any = |_: &[u8], _: &[u8]| true;
    if let Some(m) = &first {
        progress.client_message(m, any);
    }
    while let Some(m) = decoder.poll() {
        progress.client_message(&m.data, any);
    }
    if ended {
        progress.half_close();
    } else {
        // The rest of the client's stream is read for the whole call, so its half-close is
        // seen whatever the answer is waiting for.
        let feeder = progress.clone();
        tokio::spawn(async move {
            while let Some(Ok(frame)) = body.frame().await {
                let Some(d) = frame.data_ref() else { continue };
                if decoder.feed(d).is_err() {
                    break;
                }
                while let Some(m) = decoder.poll() {
                    feeder.client_message(&m.data, any);
                }
            }
            feeder.half_close();
        });
    }

    let Some((status, headers, head_step)) = &prepared.head else {
        if prepared
            .error
            .as_ref()
            .is_some_and(|e| e.kind == ErrorKind::ClientAborted)
        {
            // The recorded client gave up before any answer (an expired deadline): so does
            // the replay, by never answering; hyper drops this future when the client resets.
            std::future::pending::<()>().await;
        }
        let message = prepared
            .error
            .as_ref()
            .map_or_else(|| "upstream sent no response".into(), |e| e.message.clone());
        return trailers_only(14, &format!("mf: recorded call failed: {message}"));
    };
    let latency = replay.config.recorded_latency;
    let mut last = due(&progress, *head_step, latency, start).await;
    let mut builder = Response::builder().status(*status);
    if let Some(h) = builder.headers_mut() {
        *h = headers.clone();
    }
    // A trailers-only answer (errors usually are): grpc-status in the head, no body.
    if prepared.trailers_only {
        let empty = http_body_util::Empty::<Bytes>::new().map_err(|never| match never {});
        return builder
            .body(UnsyncBoxBody::new(empty))
            .unwrap_or_else(|_| trailers_only_fallback());
    }
    // Everything already due (a unary call without recorded latency): answer in one go,
    // without a player task.
    let mut steps = prepared.server.iter().map(|(s, _)| *s).chain(prepared.end);
    if !latency && prepared.trailers.is_some() && steps.all(|s| progress.fired(s.trigger)) {
        let frames = prepared.server.iter().map(|(_, f)| f.clone()).collect();
        let body = FixedBody::new(frames, prepared.trailers.clone());
        return builder
            .body(UnsyncBoxBody::new(body))
            .unwrap_or_else(|_| trailers_only_fallback());
    }
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, BoxError>>(16);
    tokio::spawn(async move {
        for (step, framed) in &prepared.server {
            last = due(&progress, *step, latency, last).await;
            if tx.send(Ok(Frame::data(framed.clone()))).await.is_err() {
                return;
            }
        }
        if let Some(end) = prepared.end {
            due(&progress, end, latency, last).await;
        }
        let frame = match &prepared.trailers {
            Some(t) => Ok(Frame::trailers(t.clone())),
            // No trailers recorded: the upstream reset the stream or the client cancelled.
            None => Err(prepared
                .error
                .as_ref()
                .map_or_else(
                    || "recorded stream ended without trailers".to_string(),
                    |e| e.message.clone(),
                )
                .into()),
        };
        let _ = tx.send(frame).await;
    });
    builder
        .body(UnsyncBoxBody::new(ChannelBody { rx }))
        .unwrap_or_else(|_| trailers_only_fallback())
}

fn trailers_only_fallback() -> Response<ReplayBody> {
    trailers_only(13, "mf: recorded response headers are not valid HTTP/2")
}

/// A gRPC error answer with no messages.
fn trailers_only(code: u32, message: &str) -> Response<ReplayBody> {
    let empty = http_body_util::Empty::<Bytes>::new().map_err(|never| match never {});
    let mut r = Response::new(UnsyncBoxBody::new(empty));
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code));
    let encoded: String =
        percent_encoding::utf8_percent_encode(message, percent_encoding::NON_ALPHANUMERIC)
            .to_string();
    if let Ok(v) = HeaderValue::from_str(&encoded) {
        h.insert("grpc-message", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Request, StreamMessage};

    fn call(path: &str, first: &[u8]) -> Exchange {
        Exchange {
            protocol: Some(Protocol::Grpc),
            request: Request {
                method: "POST".into(),
                target: path.into(),
                ..Default::default()
            },
            messages: vec![StreamMessage {
                direction: Direction::ClientToServer,
                offset_ns: 0,
                kind: MessageKind::Grpc { compressed: false },
                data: Bytes::copy_from_slice(first),
            }],
            ..Default::default()
        }
    }

    #[test]
    fn exact_message_first_then_by_order() {
        let exs = [
            call("/s.S/A", b"one"),
            call("/s.S/A", b"two"),
            call("/s.S/A", b"one"),
            call("/s.S/B", b"x"),
        ];
        let idx = GrpcIndex::new(&exs, RepeatPolicy::Last);
        let b = |s: &'static [u8]| Bytes::from_static(s);
        assert_eq!(idx.find("/s.S/A", Some(&b(b"two"))), Some(1));
        assert_eq!(idx.find("/s.S/A", Some(&b(b"one"))), Some(0));
        assert_eq!(
            idx.find("/s.S/A", Some(&b(b"one"))),
            Some(2),
            "identical calls in recorded order"
        );
        assert_eq!(
            idx.find("/s.S/A", Some(&b(b"one"))),
            Some(2),
            "then the last repeats"
        );
        assert_eq!(
            idx.find("/s.S/A", Some(&b(b"new"))),
            Some(0),
            "unknown bytes: by position"
        );
        assert_eq!(idx.find("/s.S/A", Some(&b(b"new"))), Some(1));
        assert_eq!(idx.find("/s.S/C", None), None);
    }
}
