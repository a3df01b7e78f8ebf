//! HTTP/1.x: how replay reads requests (with the same decoder the proxy uses) into a
//! [`RequestView`] and writes the pipeline's answer, faults included, on a keep-alive
//! connection.
//!
//! Recorded answers are pre-rendered (see [`super::render`]), so the common case per request
//! is: decode, match, plan (a lock-free "nothing applies" check), copy head and body into the
//! connection's reused buffer, one write, count. A CONNECT to intercept or a matched
//! WebSocket handshake ends the HTTP/1 part; the connection is handed back in an [`Exit`].

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::faults::Fault;
use super::latency::{paced_write, Pacing};
use super::pipeline::{report_text, Decision, Found, Replay, RequestView, Upgrade};
use super::render::{fault_body, reason, render_response};
use super::timed::{self, TimedBody};
use crate::decode::h1::{self, Decoder, Event, Framing, Role};
use crate::decode::h1_encode;
use crate::model::{Header, HeaderList, Protocol};
use crate::net::door::{Io, Origin};
use crate::net::reply::write_simple;
use crate::net::{ClientTimeouts, PooledBuf, Shutdown, Waiting, BIG_BUF, SMALL_BUF};

/// How an HTTP/1 connection left the HTTP/1 loop.
pub(crate) enum Exit<S> {
    /// Finished (closed, or the client left).
    Closed,
    /// `CONNECT authority` to intercept; `early` holds bytes already read after its head.
    Connect {
        stream: S,
        authority: String,
        early: Bytes,
    },
    /// A request matched a recorded WebSocket handshake: the session takes the connection.
    WebSocket(Box<Upgrade<S>>),
}

/// Serves HTTP/1 requests on `stream` until it closes or leaves HTTP/1.
pub(crate) async fn serve<S: Io>(
    replay: &Arc<Replay>,
    mut stream: S,
    origin: &Origin,
    mut shutdown: Shutdown,
) -> Exit<S> {
    let config = replay.config();
    let mut decoder = Decoder::new(Role::Request).with_max_head(config.max_head);
    // Request heads are read into a small buffer of the connection's own; a body into a
    // buffer lent for that request (an idle connection holds a few KiB, not 64).
    let mut buf = vec![0u8; SMALL_BUF];
    let mut body_buf: Option<PooledBuf> = None;
    let mut out = BytesMut::new();
    let connected = tokio::time::Instant::now();
    let mut served_one = false;
    loop {
        // Read one whole request.
        let mut head_started: Option<tokio::time::Instant> = None;
        let mut head: Option<h1::RequestHead> = None;
        let mut body = BytesMut::new();
        let mut continue_sent = false;
        let complete = loop {
            match decoder.poll() {
                Ok(Some(Event::RequestHead(h))) => head = Some(h),
                Ok(Some(Event::Data(d))) => {
                    if body.len() + d.len() > config.max_request_body {
                        replay.refused();
                        let _ =
                            write_simple(&mut stream, 413, "mf: request body too large\n").await;
                        return Exit::Closed;
                    }
                    body.extend_from_slice(&d);
                }
                Ok(Some(Event::End)) => break true,
                Ok(Some(_)) => {}
                Ok(None) => {
                    // RFC 9110 §10.1.1: a client that sent `Expect: 100-continue` waits for
                    // this before sending the body.
                    if let Some(h) = &head {
                        if !continue_sent && expects_continue(h) {
                            continue_sent = true;
                            if stream
                                .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                                .await
                                .is_err()
                            {
                                return Exit::Closed;
                            }
                        }
                    }
                    let idle = head.is_none() && decoder.is_idle();
                    let now = tokio::time::Instant::now();
                    let waiting = match (idle, &head) {
                        (true, _) if served_one => Waiting::NextRequest,
                        (true, _) => Waiting::FirstRequest,
                        (false, None) => Waiting::Head(*head_started.get_or_insert(now)),
                        (false, Some(_)) => Waiting::Body,
                    };
                    let deadline = config.timeouts.deadline(waiting, connected, now);
                    let into: &mut [u8] = if head.is_some() {
                        body_buf.get_or_insert_with(PooledBuf::take)
                    } else {
                        &mut buf
                    };
                    let n = tokio::select! {
                        r = stream.read(into) => match r { Ok(n) => n, Err(_) => return Exit::Closed },
                        _ = shutdown.wait(), if idle => return Exit::Closed,
                        _ = tokio::time::sleep_until(deadline) => {
                            if ClientTimeouts::answers(waiting) {
                                replay.refused();
                                tracing::info!(peer = %origin.peer, ?waiting, "client too slow: closing");
                                let _ = write_simple(&mut stream, 408, "mf: request not received in time\n").await;
                            }
                            return Exit::Closed;
                        }
                    };
                    if n == 0 {
                        if !idle {
                            tracing::info!(peer = %origin.peer, "client closed in the middle of a request");
                        }
                        return Exit::Closed;
                    }
                    decoder.feed(&into[..n]);
                }
                Err(e) => {
                    replay.refused();
                    tracing::warn!(peer = %origin.peer, error = %e, "bad request");
                    let _ = write_simple(&mut stream, e.status(), &format!("mf: {e}\n")).await;
                    return Exit::Closed;
                }
            }
        };
        let Some(head) = head.filter(|_| complete) else {
            return Exit::Closed;
        };
        body_buf = None;
        served_one = true;
        replay.received();
        let client_close = h1::wants_close(head.minor, &head.headers);
        if head.method.eq_ignore_ascii_case("CONNECT") && origin.can_intercept() {
            let early = decoder.take_buffered();
            return Exit::Connect {
                stream,
                authority: head.target.into(),
                early,
            };
        }
        let view = RequestView {
            protocol: if head.minor == 0 {
                Protocol::Http10
            } else {
                Protocol::Http11
            },
            method: &head.method,
            target: &head.target,
            authority: authority_of(&head, origin.tunnel.as_deref()),
            headers: &head.headers,
            body: &body,
            grpc_method: None,
            grpc_first: None,
        };
        let decision = replay.decide_or_fetch(&view).await;
        if decision.protocol == Protocol::WebSocket && decision.matched().is_some() {
            let path = view.path().to_string();
            let early = decoder.take_buffered();
            return Exit::WebSocket(Box::new(Upgrade {
                stream,
                headers: head.headers,
                early,
                path,
                decision,
            }));
        }
        out.clear();
        let close = match &decision.found {
            Found::Recorded(recorded) => {
                let r = &recorded.rendered;
                let close = client_close || r.must_close;
                out.extend_from_slice(if close { &r.head_close } else { &r.head });
                out.extend_from_slice(&r.body);
                close
            }
            Found::Sourced(response) => {
                let r = render_response(
                    &head.method,
                    response,
                    &crate::model::Timings::default(),
                    String::new(),
                );
                let close = client_close || r.must_close;
                out.extend_from_slice(if close { &r.head_close } else { &r.head });
                out.extend_from_slice(&r.body);
                close
            }
            Found::Missing(report) => {
                let text = report_text(report);
                let mut headers = vec![
                    Header::new("Content-Type", "application/json"),
                    Header::new("Content-Length", text.len().to_string()),
                    Header::new("X-Mf-Match", "none"),
                ];
                if client_close {
                    headers.push(Header::new("Connection", "close"));
                }
                h1_encode::response_head(&mut out, 404, "Not Found", &headers);
                // RFC 9110 §9.3.2: the answer to HEAD has the headers of a GET and no body;
                // sending one anyway desynchronises a keep-alive connection.
                if !head.method.eq_ignore_ascii_case("HEAD") {
                    out.extend_from_slice(text.as_bytes());
                }
                client_close
            }
        };
        let split = head_len(&out);
        let answer = Answer {
            whole: &out[..],
            head: &out[..split],
            body: &out[split..],
            close,
            timed: decision
                .recorded()
                .and_then(|r| r.rendered.timed.as_deref()),
        };
        let (status, close) = write_answer(
            &mut stream,
            origin,
            &decision,
            answer,
            &head,
            client_close,
            &mut shutdown,
        )
        .await;
        replay.finish(view.path(), &decision, status);
        if status == 0 {
            return Exit::Closed;
        }
        if close {
            let _ = stream.shutdown().await;
            return Exit::Closed;
        }
        // The answer was written as recorded, without switching protocols (an `Upgrade: h2c`
        // offer, say): the connection goes on speaking HTTP/1.
        decoder.resolve_upgrade(false);
        // A large answer grew the output buffer: give it back before going idle.
        if out.capacity() > BIG_BUF {
            out = BytesMut::new();
        }
        decoder.shrink_when_idle();
    }
}

/// The answer the pipeline chose, split for pacing.
struct Answer<'a> {
    /// Head and body together, as they sit in the output buffer.
    whole: &'a [u8],
    head: &'a [u8],
    body: &'a [u8],
    close: bool,
    /// The recorded chunk schedule of `body`, for [`Pacing::Chunks`].
    timed: Option<&'a TimedBody>,
}

/// Writes the answer as the plan says: after its delay, at its pace, or not at all.
/// Returns the status sent (0: none, the connection is gone) and whether to close.
#[allow(clippy::too_many_arguments)]
async fn write_answer<S: Io>(
    stream: &mut S,
    origin: &Origin,
    decision: &Decision,
    answer: Answer<'_>,
    head: &h1::RequestHead,
    client_close: bool,
    shutdown: &mut Shutdown,
) -> (u16, bool) {
    let plan = &decision.plan;
    if !plan.first_byte.is_zero() {
        tokio::time::sleep(plan.first_byte).await;
    }
    match &plan.fault {
        Some(Fault::Reset) => {
            // SO_LINGER 0: closing sends RST instead of FIN.
            origin.reset_on_close();
            (0, true)
        }
        Some(Fault::Hang) => {
            // Read and discard until the client gives up (or mf stops). On the heap: an
            // array here would be part of every connection's future, hanging or not.
            let mut buf = vec![0u8; 4096];
            loop {
                tokio::select! {
                    r = stream.read(&mut buf) => if !matches!(r, Ok(n) if n > 0) { break },
                    _ = shutdown.wait() => break,
                }
            }
            (0, true)
        }
        Some(Fault::CloseMidBody { after_bytes }) => {
            let n = after_bytes
                .map_or(answer.body.len() / 2, |n| n as usize)
                .min(answer.body.len().saturating_sub(1));
            let _ = stream.write_all(answer.head).await;
            let _ = paced_write(stream, &answer.body[..n], plan.pacing).await;
            let _ = stream.shutdown().await;
            (0, true)
        }
        Some(Fault::Status { code, body }) => {
            let recorded = decision.recorded().map(|r| &r.rendered);
            let (text, content_type) = fault_body(body.as_deref(), recorded);
            let mut headers = vec![
                Header::new("Content-Type", content_type),
                Header::new("Content-Length", text.len().to_string()),
                Header::new("X-Mf-Fault", "status"),
            ];
            if client_close {
                headers.push(Header::new("Connection", "close"));
            }
            let mut out = BytesMut::new();
            h1_encode::response_head(&mut out, *code, reason(*code), &headers);
            if stream.write_all(&out).await.is_err() {
                return (0, true);
            }
            // RFC 9110 §9.3.2: a response to HEAD has no body.
            let body = if head.method.eq_ignore_ascii_case("HEAD") {
                &[][..]
            } else {
                &text[..]
            };
            if paced_write(stream, body, plan.pacing).await.is_err() {
                return (0, true);
            }
            (*code, client_close)
        }
        _ => {
            // The common case, no pacing: head and body in one write (they are adjacent
            // in the connection's buffer) — two writes per answer cost a third of the
            // replay's throughput.
            let written = match (plan.pacing, answer.timed) {
                (Pacing::Burst, _) | (Pacing::Chunks(_), None) => {
                    stream.write_all(answer.whole).await.is_ok()
                }
                (Pacing::Chunks(scale), Some(timed)) => {
                    stream.write_all(answer.head).await.is_ok()
                        && timed::write(stream, answer.body, &timed.framed, scale)
                            .await
                            .is_ok()
                }
                _ => {
                    stream.write_all(answer.head).await.is_ok()
                        && paced_write(stream, answer.body, plan.pacing).await.is_ok()
                }
            };
            if !written {
                return (0, true);
            }
            (status_of(answer.head), answer.close)
        }
    }
}

/// Length of the response head at the start of `out` (through the blank line).
fn head_len(out: &[u8]) -> usize {
    out.windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(out.len(), |i| i + 4)
}

/// The status code of a rendered head (`HTTP/1.1 200 ...`).
fn status_of(head: &[u8]) -> u16 {
    head.get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// Who the request is addressed to: an absolute URL's authority, the CONNECT tunnel's, or
/// the Host header.
fn authority_of<'a>(head: &'a h1::RequestHead, tunnel: Option<&'a str>) -> Option<&'a str> {
    crate::vocab::absolute_authority(&head.target)
        .or(tunnel)
        .or_else(|| {
            head.headers
                .header("host")
                .and_then(|v| std::str::from_utf8(v).ok())
                .map(str::trim)
        })
}

fn expects_continue(h: &h1::RequestHead) -> bool {
    !matches!(h.framing, Framing::Empty)
        && h.headers
            .header("expect")
            .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"))
}
