//! HTTP/1.1 to the target without a connection task: the recorded connection's own task
//! writes each request (head and body in one write) and reads the answer with the sans-IO
//! decoder the proxy uses, on a keep-alive connection opened again when the target closed it.
//!
//! Why not hyper's client connection here: it runs a task of its own beside the sender, and
//! every request crossed between the two (a channel in, a oneshot and a body channel out) —
//! with the runtime's wake-ups, ~30% of a `replay --to --speed max` profile. One request is
//! in flight per connection either way (no pipelining), as the recording had it.

use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};
use futures_util::FutureExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::wire::{self, BoxIo};
use super::TargetConfig;
use crate::decode::h1::{self, Decoder, Event, Role};
use crate::decode::h1_encode;
use crate::model::{Body, ErrorKind, Exchange, ExchangeError, Header, Response};

/// Bytes read from the target at once.
const READ_CHUNK: usize = 16 * 1024;

/// A keep-alive HTTP/1.1 connection to the target and its reusable buffers.
pub(super) struct Conn {
    io: BoxIo,
    decoder: Decoder,
    /// The request being written (head and body), kept for its capacity.
    out: BytesMut,
    /// What the last read returned, kept for its capacity.
    read: Vec<u8>,
    /// The one timer of every wait on this connection (see [`within`]).
    timer: Pin<Box<tokio::time::Sleep>>,
}

/// Runs `fut` until it is done, or `None` once `timeout` passed since the call. A timeout
/// future per read and write registered a timer and removed it again for nearly every wait
/// (~3% of a `replay --to --speed max` profile); this one timer is only set again when it
/// went off early, for a wait begun after it was set: about once per `timeout`.
async fn within<F: Future>(
    timer: &mut Pin<Box<tokio::time::Sleep>>,
    timeout: Duration,
    fut: F,
) -> Option<F::Output> {
    let due = tokio::time::Instant::now() + timeout;
    let mut fut = std::pin::pin!(fut);
    std::future::poll_fn(|cx| {
        if let Poll::Ready(out) = fut.as_mut().poll(cx) {
            return Poll::Ready(Some(out));
        }
        // Every earlier wait was due earlier, so the timer never goes off late for this one.
        while timer.as_mut().poll(cx).is_ready() {
            if tokio::time::Instant::now() >= due {
                return Poll::Ready(None);
            }
            timer.as_mut().reset(due);
        }
        Poll::Pending
    })
    .await
}

/// Sends one HTTP/1 request on `conn` (opening it, or opening it again when the target
/// closed it) and reads the whole answer; the connection is dropped after a failure or an
/// answer that closes it.
pub(super) async fn send(
    conn: &mut Option<Conn>,
    outgoing: Exchange,
    cfg: &TargetConfig,
) -> Result<Exchange, ExchangeError> {
    let began = Instant::now();
    if conn.as_mut().is_some_and(|c| !c.still_open()) {
        // Closed by the target between two requests: a keep-alive ending, not a failure.
        *conn = None;
    }
    let c = match conn {
        Some(c) => c,
        None => conn.insert(open(cfg).await?),
    };
    let result = c.exchange(outgoing, cfg, began).await;
    match result {
        Ok((observed, keep)) => {
            if !keep {
                *conn = None;
            }
            Ok(observed)
        }
        Err(e) => {
            *conn = None;
            Err(e)
        }
    }
}

async fn open(cfg: &TargetConfig) -> Result<Conn, ExchangeError> {
    let (io, _) = wire::connect(cfg, false).await?;
    Ok(Conn {
        io,
        decoder: Decoder::new(Role::Response),
        out: BytesMut::new(),
        read: vec![0; READ_CHUNK],
        timer: Box::pin(tokio::time::sleep(cfg.timeout)),
    })
}

impl Conn {
    /// False when the target closed the connection (or sent bytes nobody asked for) since
    /// the last answer: one read that must not wait.
    fn still_open(&mut self) -> bool {
        match self.io.read(&mut self.read).now_or_never() {
            None => true,
            Some(Ok(_) | Err(_)) => false,
        }
    }

    /// Writes the request, reads the answer; true with it when the connection may be used
    /// again.
    async fn exchange(
        &mut self,
        outgoing: Exchange,
        cfg: &TargetConfig,
        began: Instant,
    ) -> Result<(Exchange, bool), ExchangeError> {
        encode(&mut self.out, cfg, &outgoing)?;
        let written = within(&mut self.timer, cfg.timeout, self.io.write_all(&self.out)).await;
        self.out.clear();
        match written {
            None => return Err(wire::timed_out("room for the request", cfg.timeout)),
            Some(Err(e)) => return Err(io_failure(&e)),
            Some(Ok(())) => {}
        }
        self.decoder.push_request_method(&outgoing.request.method);
        let mut observed = wire::observed_from(outgoing, cfg);
        let mut response: Option<(Response, bool)> = None;
        let mut data = BytesMut::new();
        // An interim answer (100 Continue, 103 Early Hints) is read and set aside.
        let mut interim = false;
        loop {
            let event = match self.decoder.poll().map_err(|e| malformed(&e))? {
                Some(event) => event,
                None => {
                    let what = if response.is_some() {
                        "more of the answer"
                    } else {
                        "answer"
                    };
                    let read = within(&mut self.timer, cfg.timeout, self.io.read(&mut self.read))
                        .await
                        .ok_or_else(|| wire::timed_out(what, cfg.timeout))?
                        .map_err(|e| io_failure(&e))?;
                    if read == 0 {
                        match self.decoder.finish() {
                            Ok(Some(event)) => event,
                            Ok(None) | Err(_) => return Err(cut_short()),
                        }
                    } else {
                        self.decoder.feed(&self.read[..read]);
                        continue;
                    }
                }
            };
            match event {
                Event::ResponseHead(head)
                    if (100..200).contains(&head.status) && head.status != 101 =>
                {
                    interim = true;
                }
                Event::ResponseHead(head) => {
                    observed.timings.response_first_byte_ns = Some(wire::since(began));
                    let keep = !h1::wants_close(head.minor, &head.headers)
                        && head.framing != h1::Framing::UntilClose;
                    response = Some((answer_of(head), keep));
                }
                Event::Data(chunk) if !interim => data.extend_from_slice(&chunk),
                Event::Trailers(t) if !interim => {
                    if let Some((r, _)) = response.as_mut() {
                        r.trailers = lowercase(t);
                    }
                }
                Event::End if interim => interim = false,
                Event::End | Event::Upgraded => break,
                Event::Data(_) | Event::Trailers(_) | Event::RequestHead(_) => {}
            }
        }
        let Some((mut r, keep)) = response else {
            return Err(cut_short());
        };
        r.body = Body::full(data.freeze());
        observed.timings.response_end_ns = Some(wire::since(began));
        observed.response = Some(r);
        self.decoder.shrink_when_idle();
        Ok((observed, keep && self.decoder.is_idle()))
    }
}

/// The request as bytes: request line (the target's path prefix, then the recorded origin
/// form), Host, the recorded headers worth sending and `--set-header` ones, the framing,
/// the body.
fn encode(
    out: &mut BytesMut,
    cfg: &TargetConfig,
    outgoing: &Exchange,
) -> Result<(), ExchangeError> {
    let req = &outgoing.request;
    let origin = req.origin_form();
    let origin = if origin.starts_with('/') { origin } else { "/" };
    let headers = wire::request_headers(cfg, outgoing);
    let authority = wire::authority(cfg);
    let sendable = is_token(req.method.as_bytes())
        && origin
            .bytes()
            .chain(cfg.url.base_path.bytes())
            .all(|b| b > b' ' && b != 0x7f)
        && is_value(authority.as_bytes())
        && headers
            .iter()
            .all(|(n, v)| is_token(n.as_bytes()) && is_value(v));
    if !sendable {
        return Err(ExchangeError::new(
            ErrorKind::MalformedRequest,
            "the recorded request cannot be sent: its method, target or a header is not valid HTTP/1.1",
        ));
    }
    let body = &req.body.data;
    // As the client library did: a length for any body, and for an empty one where the
    // method usually carries one.
    let length = (!body.is_empty()
        || matches!(
            req.method.to_ascii_uppercase().as_str(),
            "POST" | "PUT" | "PATCH"
        ))
    .then(|| body.len().to_string());
    let host = [("Host", authority.as_bytes())];
    let fields = host
        .into_iter()
        .chain(headers.iter().map(|(n, v)| (n.as_str(), &v[..])))
        .chain(length.iter().map(|l| ("Content-Length", l.as_bytes())));
    h1_encode::request_head_fields(out, &req.method, &[&cfg.url.base_path, origin], fields);
    out.put_slice(body);
    Ok(())
}

/// An HTTP token (a method, a header name).
fn is_token(s: &[u8]) -> bool {
    !s.is_empty()
        && s.iter()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(b))
}

/// A header value that cannot end the line early.
fn is_value(s: &[u8]) -> bool {
    s.iter().all(|b| *b != b'\r' && *b != b'\n' && *b != 0)
}

/// The answer's head as the driver reports it: names lower-cased and the reason phrase the
/// status's own, as for answers read over HTTP/2.
fn answer_of(head: h1::ResponseHead) -> Response {
    Response {
        status: head.status,
        reason: (http::StatusCode::from_u16(head.status)
            .ok()
            .and_then(|s| s.canonical_reason())
            .unwrap_or("")
            .to_string())
        .into(),
        version: (if head.minor == 0 {
            "HTTP/1.0"
        } else {
            "HTTP/1.1"
        }
        .to_string())
        .into(),
        headers: lowercase(head.headers),
        ..Response::default()
    }
}

fn lowercase(mut headers: Vec<Header>) -> Vec<Header> {
    for h in &mut headers {
        h.name.make_ascii_lowercase();
    }
    headers
}

fn malformed(e: &h1::Error) -> ExchangeError {
    ExchangeError::new(
        ErrorKind::MalformedResponse,
        format!("the target's answer failed: {e}"),
    )
}

fn cut_short() -> ExchangeError {
    ExchangeError::new(
        ErrorKind::UpstreamReset,
        "the target's answer failed: the connection closed before the answer was complete",
    )
}

fn io_failure(e: &std::io::Error) -> ExchangeError {
    ExchangeError::new(
        ErrorKind::UpstreamReset,
        format!("the target's answer failed: {e}"),
    )
}

#[cfg(test)]
#[path = "lean_h1_tests.rs"]
mod tests;
