//! gRPC replay: picks the recorded call for a live one and plays the recorded answer —
//! headers, messages, trailers — with the recorded timing relative to the client's messages.
//!
//! A call is matched on its path (`/service/method`) and its first request message: a
//! recorded call with the same bytes first (in recorded order, like identical HTTP requests),
//! else the next recorded call of that method by position. Within the call, every server
//! event waits for the client event it followed in the recording (see [`super::stream`]):
//! unary and server-streaming answers follow the request, client-streaming answers follow the
//! half-close, and bidirectional answers follow the message they answered.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use http::{HeaderValue, Request, Response};
use http_body::{Body as _, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use hyper::body::Incoming;

use super::body::{empty, failing, BoxError, ChannelBody, FixedBody, ReplayBody};
use super::faults::Fault;
use super::grpc_index::Prepared;
use super::miss::{frames, MissRequest, Misses};
use super::pipeline::{Replay, RequestView};
use super::stream::{due, Progress};
use crate::decode::{grpc, grpc_message};
use crate::model::{Direction, ErrorKind, Protocol};
use crate::net::released::watched;
use crate::vocab::headers_from_map;

/// Reads the request until its first message (or its end). Returns the message and whether
/// the client already half-closed; later messages stay in `decoder`.
async fn first_message(
    body: &mut Incoming,
    decoder: &mut grpc::Decoder,
) -> (Option<grpc::Message>, bool) {
    loop {
        if let Some(m) = decoder.poll() {
            return (Some(m), body.is_end_stream());
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

/// True for a gRPC call (`content-type: application/grpc*`).
pub(crate) fn is_grpc<B>(req: &Request<B>) -> bool {
    req.headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// Answers one live gRPC call.
pub(crate) async fn answer(replay: Arc<Replay>, req: Request<Incoming>) -> Response<ReplayBody> {
    replay.received();
    let start = Instant::now();
    let (parts, mut body) = req.into_parts();
    let path = parts.uri.path();
    // Headers only matter to rules that match on them, and to spans (`traceparent`); the
    // answer is the recorded one.
    let req_headers = if replay.planner().reads_headers() || replay.traced() {
        headers_from_map(&parts.headers)
    } else {
        Vec::new()
    };
    let mut decoder = grpc::Decoder::new();
    let (first, ended) = if replay.grpc().server_speaks_first(path) {
        (None, body.is_end_stream())
    } else {
        first_message(&mut body, &mut decoder).await
    };
    let view = RequestView {
        protocol: Protocol::Grpc,
        method: "POST",
        target: path,
        authority: None,
        headers: &req_headers,
        body: &[],
        grpc_method: Some(path.trim_start_matches('/')),
        grpc_first: first.as_ref().map(|m| &m.data),
    };
    let decision = replay.decide(&view).await;
    let Some(recorded) = decision.recorded() else {
        if let Some(misses) = replay.misses() {
            replay.finish(view.path(), &decision, 200);
            let call = MissedCall {
                path,
                headers: &parts.headers,
                first,
            };
            return call.forward(misses, decoder, body).await;
        }
        // An unmatched method is the client's: counted under a bounded label.
        replay.finish_grpc(view.path(), &decision, 200, Some(12));
        return trailers_only(12, &format!("mf: no recorded call matches {path}"));
    };
    let Some(prepared) = recorded.grpc.clone() else {
        replay.finish_grpc(view.path(), &decision, 200, Some(13));
        return trailers_only(13, "mf: recorded call is not a grpc call");
    };
    let plan = &decision.plan;
    if !plan.first_byte.is_zero() {
        tokio::time::sleep(plan.first_byte).await;
    }
    match &plan.fault {
        Some(Fault::GrpcStatus { code, message }) => {
            replay.finish_grpc(view.path(), &decision, 200, Some(*code));
            return trailers_only(*code, message);
        }
        Some(Fault::Status { code, .. }) => {
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
            replay.finish_grpc(view.path(), &decision, 200, Some(grpc_code));
            return trailers_only(grpc_code, &message);
        }
        Some(Fault::Hang) => {
            replay.finish_grpc(view.path(), &decision, 0, None);
            std::future::pending::<()>().await
        }
        Some(Fault::Reset) | Some(Fault::GrpcAbort) => {
            replay.finish_grpc(view.path(), &decision, 0, None);
            // hyper turns a body error into RST_STREAM (INTERNAL_ERROR) for this stream.
            return Response::builder()
                .status(200)
                .header("content-type", "application/grpc")
                .body(failing(None))
                .unwrap_or_else(|_| trailers_only_fallback());
        }
        _ => {}
    }
    let status = prepared.head.as_ref().map_or(200, |h| h.0);
    // The recorded call's status is the one this answer ends with.
    replay.finish_recorded_grpc(view.path(), &decision, status);

    let latency = replay.config().recorded_latency;
    let mut live: Vec<Bytes> = first.into_iter().map(|m| m.data).collect();
    while let Some(m) = decoder.poll() {
        live.push(m.data);
    }
    // The common unary case: the client has sent all it will (at least as many messages as
    // the recorded client, then its half-close) and no recorded timing is wanted, so every
    // recorded server event is already due. Answer at once, without the per-call progress
    // tracker (a watch channel and a task) the general case needs: it was a tenth of the
    // cost of a replayed unary call.
    if ended && !latency && live.len() >= prepared.client_messages.len() {
        if let Some((status, headers, _)) = &prepared.head {
            if prepared.trailers_only || prepared.trailers.is_some() {
                let mut builder = Response::builder().status(*status);
                if let Some(h) = builder.headers_mut() {
                    *h = headers.clone();
                }
                let body = if prepared.trailers_only {
                    empty()
                } else {
                    let frames = prepared.server.iter().map(|(_, f)| f.clone()).collect();
                    UnsyncBoxBody::new(FixedBody::new(frames, prepared.trailers.clone()))
                };
                return builder
                    .body(body)
                    .unwrap_or_else(|_| trailers_only_fallback());
            }
        }
    }
    let progress = Progress::new(prepared.client_messages.clone(), start);
    let any = |_: &[u8], _: &[u8]| true;
    for m in &live {
        progress.client_message(m, any);
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
    let last = due(&progress, *head_step, latency, start).await;
    let mut builder = Response::builder().status(*status);
    if let Some(h) = builder.headers_mut() {
        *h = headers.clone();
    }
    // A trailers-only answer (errors usually are): grpc-status in the head, no body.
    if prepared.trailers_only {
        return builder
            .body(empty())
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
    tokio::spawn(play(prepared, progress, latency, last, tx));
    builder
        .body(UnsyncBoxBody::new(ChannelBody { rx }))
        .unwrap_or_else(|_| trailers_only_fallback())
}

/// Sends the recorded messages of a call as they fall due, then its trailers — or, when the
/// recorded stream ended without them, the error that makes hyper reset the stream.
///
/// A reset goes out only once the last message has left the stream's send queue: h2 drops
/// whatever DATA is still queued for a stream it resets (`Send::send_reset` clears the
/// queue), so an error sent right behind the last message lost that message whenever the
/// connection had not written it yet. A replayed upstream death then showed one message
/// fewer than the recording held (2 of 3, about one run in twenty on a loaded machine).
async fn play(
    prepared: Arc<Prepared>,
    progress: Progress,
    latency: bool,
    mut last: Instant,
    tx: mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
) {
    let resets = prepared.trailers.is_none();
    let mut written = None;
    for (i, (step, framed)) in prepared.server.iter().enumerate() {
        last = due(&progress, *step, latency, last).await;
        let data = if resets && i + 1 == prepared.server.len() {
            let (data, gone) = watched(framed.clone());
            written = Some(gone);
            data
        } else {
            framed.clone()
        };
        if tx.send(Ok(Frame::data(data))).await.is_err() {
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
    if let Some(gone) = written {
        // Nothing sends on it: the sender goes with the last copy of the bytes.
        let _ = gone.await;
    }
    let _ = tx.send(frame).await;
}

/// A call no recorded one matches, under record-on-miss: read to its end, answered from what
/// an earlier miss taught, or forwarded to the upstream (over HTTP/2) and kept.
struct MissedCall<'a> {
    path: &'a str,
    headers: &'a http::HeaderMap,
    first: Option<grpc::Message>,
}

impl MissedCall<'_> {
    /// Reads the rest of the client's stream (a call forwarded whole: a bidirectional call
    /// whose client waits for answers before it half-closes is not one record-on-miss can
    /// serve), then answers it.
    async fn forward(
        self,
        misses: &Misses,
        mut decoder: grpc::Decoder,
        mut body: Incoming,
    ) -> Response<ReplayBody> {
        let mut framed = BytesMut::new();
        for m in self.first.iter() {
            grpc::encode(&mut framed, m.compressed, &m.data);
        }
        loop {
            while let Some(m) = decoder.poll() {
                grpc::encode(&mut framed, m.compressed, &m.data);
            }
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(d) = frame.data_ref() {
                        if decoder.feed(d).is_err() {
                            return trailers_only(
                                13,
                                "mf: the request is not a gRPC message stream",
                            );
                        }
                    }
                }
                Some(Err(_)) => return trailers_only(1, "mf: the client cancelled the call"),
                None => break,
            }
        }
        let framed = framed.freeze();
        let incoming = crate::replay::matcher::Incoming {
            method: "POST",
            target: self.path,
            body: &framed,
        };
        if let Some(ex) = misses.find_exchange(&incoming) {
            return kept_answer(&ex);
        }
        let headers = headers_from_map(self.headers);
        let req = MissRequest {
            method: "POST",
            target: self.path,
            headers: &headers,
            body: &framed,
            grpc: true,
        };
        match misses.fetch_exchange(req).await {
            Ok(ex) => kept_answer(&ex),
            Err(response) => {
                let why = String::from_utf8_lossy(&response.body.data)
                    .trim()
                    .to_string();
                trailers_only(14, &why)
            }
        }
    }
}

/// The answer of a call kept from the upstream: its head, messages and trailers at once.
fn kept_answer(ex: &crate::model::Exchange) -> Response<ReplayBody> {
    let Some(r) = &ex.response else {
        return trailers_only(14, "mf: the upstream sent no response");
    };
    let mut builder = Response::builder().status(r.status);
    if let Some(h) = builder.headers_mut() {
        *h = crate::vocab::header_map(&r.headers, None);
    }
    let server = frames(ex, Direction::ServerToClient);
    let trailers = (!r.trailers.is_empty()).then(|| crate::vocab::header_map(&r.trailers, None));
    if server.is_empty() && trailers.is_none() {
        return builder
            .body(empty())
            .unwrap_or_else(|_| trailers_only_fallback());
    }
    builder
        .body(UnsyncBoxBody::new(FixedBody::new(
            std::iter::once(server).collect(),
            trailers,
        )))
        .unwrap_or_else(|_| trailers_only_fallback())
}

fn trailers_only_fallback() -> Response<ReplayBody> {
    trailers_only(13, "mf: recorded response headers are not valid HTTP/2")
}

/// A gRPC error answer with no messages.
fn trailers_only(code: u32, message: &str) -> Response<ReplayBody> {
    let mut r = Response::new(empty());
    let h = r.headers_mut();
    h.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert("grpc-status", HeaderValue::from(code));
    if let Ok(v) = HeaderValue::from_str(&grpc_message::encode(message)) {
        h.insert("grpc-message", v);
    }
    r
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    use super::*;
    use crate::model::ExchangeError;
    use crate::replay::stream::{Step, Trigger};

    /// A recorded upstream death after three messages, replayed to a real HTTP/2 client: all
    /// three arrive before the reset. On one thread the player queues every message and the
    /// error before the connection writes anything, which is when h2 used to drop them all.
    #[tokio::test]
    async fn a_replayed_reset_comes_after_every_recorded_message() {
        let now = Step {
            trigger: Trigger::Start,
            delay: Duration::ZERO,
        };
        let messages: Vec<Bytes> = (0..3u8)
            .map(|i| Bytes::from(vec![0, 0, 0, 0, 1, i]))
            .collect();
        let prepared = Arc::new(Prepared {
            client_messages: Arc::new(Vec::new()),
            head: None,
            server: messages.iter().map(|m| (now, m.clone())).collect(),
            trailers: None,
            end: Some(now),
            trailers_only: false,
            error: Some(ExchangeError::new(
                ErrorKind::UpstreamReset,
                "upstream stream failed",
            )),
        });

        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let service = hyper::service::service_fn(move |_req: Request<Incoming>| {
            let prepared = prepared.clone();
            async move {
                let progress = Progress::new(prepared.client_messages.clone(), Instant::now());
                let (tx, rx) = mpsc::channel(16);
                tokio::spawn(play(prepared, progress, false, Instant::now(), tx));
                let body: ReplayBody = UnsyncBoxBody::new(ChannelBody { rx });
                Ok::<_, std::convert::Infallible>(Response::new(body))
            }
        });
        tokio::spawn(
            hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(server_io), service),
        );
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(client_io))
                .await
                .unwrap();
        tokio::spawn(conn);
        let req = Request::post("http://replay.test/mftest.Routes/ListPoints")
            .body(Empty::<Bytes>::new())
            .unwrap();
        let mut body = sender.send_request(req).await.unwrap().into_body();

        let mut got = BytesMut::new();
        let ended = loop {
            match body.frame().await {
                Some(Ok(frame)) => {
                    if let Some(d) = frame.data_ref() {
                        got.extend_from_slice(d);
                    }
                }
                Some(Err(e)) => break Some(e),
                None => break None,
            }
        };
        assert_eq!(&got[..], &messages.concat()[..]);
        assert!(
            ended.is_some(),
            "the stream ends in a reset, not an end of stream"
        );
    }
}
