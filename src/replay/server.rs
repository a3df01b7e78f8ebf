//! The HTTP/1.x replay server: reads requests with the same decoder the proxy uses, asks the
//! [`Matcher`] for the recorded answer and writes it back as recorded.
//!
//! Responses are rendered once at start-up (head with its original header order and case,
//! framed body), so serving one is a lookup and a write.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::matcher::{Incoming, MatchResult, Matcher, RepeatPolicy};
use crate::decode::h1::{self, Decoder, Event, Framing, Role};
use crate::decode::h1_encode;
use crate::model::{Exchange, Header, HeaderList, Response};
use crate::net::Shutdown;

const READ_BUF: usize = 64 * 1024;

/// Replay settings, validated by the CLI.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    pub repeat: RepeatPolicy,
    pub max_head: usize,
    /// Larger request bodies are refused with 413.
    pub max_request_body: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            repeat: RepeatPolicy::Last,
            max_head: h1::DEFAULT_MAX_HEAD,
            max_request_body: 64 << 20,
        }
    }
}

/// Live counters.
#[derive(Debug, Default)]
pub struct ReplayStats {
    pub requests: AtomicU64,
    pub matched: AtomicU64,
    pub unmatched: AtomicU64,
    pub bad_requests: AtomicU64,
}

/// A recorded response ready to send.
struct Rendered {
    /// Head without `Connection: close`.
    head: Bytes,
    /// Head announcing that the connection closes after this response.
    head_close: Bytes,
    body: Bytes,
    /// The recorded framing delimits the body by closing the connection.
    must_close: bool,
}

/// A replay of one recording.
pub struct Replay {
    rendered: Vec<Rendered>,
    matcher: Matcher,
    config: ReplayConfig,
    pub stats: ReplayStats,
}

impl Replay {
    /// Prepares `exchanges` (in recorded order) for serving.
    pub fn new(exchanges: &[Exchange], config: ReplayConfig) -> Arc<Replay> {
        let rendered = exchanges.iter().map(render).collect();
        Arc::new(Replay {
            rendered,
            matcher: Matcher::new(exchanges, config.repeat),
            config,
            stats: ReplayStats::default(),
        })
    }

    /// The matcher, for control endpoints (reset counters).
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Serves one client connection.
    pub async fn handle_connection(
        self: Arc<Self>,
        mut stream: TcpStream,
        peer: SocketAddr,
        mut shutdown: Shutdown,
    ) {
        let mut decoder = Decoder::new(Role::Request).with_max_head(self.config.max_head);
        let mut buf = vec![0u8; READ_BUF];
        let mut out = BytesMut::new();
        loop {
            // Read one whole request.
            let mut head: Option<h1::RequestHead> = None;
            let mut body = BytesMut::new();
            let mut continue_sent = false;
            let complete = loop {
                match decoder.poll() {
                    Ok(Some(Event::RequestHead(h))) => head = Some(h),
                    Ok(Some(Event::Data(d))) => {
                        if body.len() + d.len() > self.config.max_request_body {
                            self.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
                            let _ = simple(
                                &mut stream,
                                413,
                                "Content Too Large",
                                "mf: request body too large\n",
                            )
                            .await;
                            return;
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
                                    return;
                                }
                            }
                        }
                        let idle = head.is_none() && decoder.is_idle();
                        let n = tokio::select! {
                            r = stream.read(&mut buf) => match r { Ok(n) => n, Err(_) => return },
                            _ = shutdown.wait(), if idle => return,
                        };
                        if n == 0 {
                            if !idle {
                                tracing::info!(peer = %peer, "client closed in the middle of a request");
                            }
                            return;
                        }
                        decoder.feed(&buf[..n]);
                    }
                    Err(e) => {
                        self.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(peer = %peer, error = %e, "bad request");
                        let status = e.status();
                        let reason = if status == 431 {
                            "Request Header Fields Too Large"
                        } else {
                            "Bad Request"
                        };
                        let _ = simple(&mut stream, status, reason, &format!("mf: {e}\n")).await;
                        return;
                    }
                }
            };
            let Some(head) = head.filter(|_| complete) else {
                return;
            };
            self.stats.requests.fetch_add(1, Ordering::Relaxed);
            let client_close = h1::wants_close(head.minor, &head.headers);
            let target = origin_form(&head.target);
            let incoming = Incoming {
                method: &head.method,
                target,
                body: &body,
            };
            out.clear();
            let close = match self.matcher.find(&incoming) {
                MatchResult::Found { index, call } => {
                    self.stats.matched.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(method = %head.method, target = %head.target, index, call, "matched");
                    let r = &self.rendered[index];
                    let close = client_close || r.must_close;
                    out.extend_from_slice(if close { &r.head_close } else { &r.head });
                    out.extend_from_slice(&r.body);
                    close
                }
                MatchResult::NotFound { near_misses } => {
                    self.stats.unmatched.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(method = %head.method, target = %head.target, "no recorded exchange matches");
                    let report = serde_json::json!({
                        "error": "no recorded exchange matches this request",
                        "request": { "method": head.method, "target": head.target },
                        "closest": near_misses,
                    });
                    let mut text = serde_json::to_string_pretty(&report).unwrap_or_default();
                    text.push('\n');
                    let mut headers = vec![
                        Header::new("Content-Type", "application/json"),
                        Header::new("Content-Length", text.len().to_string()),
                        Header::new("X-Mf-Match", "none"),
                    ];
                    if client_close {
                        headers.push(Header::new("Connection", "close"));
                    }
                    h1_encode::response_head(&mut out, 404, "Not Found", &headers);
                    out.extend_from_slice(text.as_bytes());
                    client_close
                }
            };
            if stream.write_all(&out).await.is_err() {
                return;
            }
            if close {
                let _ = stream.shutdown().await;
                return;
            }
        }
    }
}

/// Serves `replay` on `listener` until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, replay: Arc<Replay>, shutdown: Shutdown) {
    crate::net::accept_loop(
        listener,
        shutdown,
        Duration::from_secs(2),
        move |stream, peer, shutdown| replay.clone().handle_connection(stream, peer, shutdown),
    )
    .await;
}

fn expects_continue(h: &h1::RequestHead) -> bool {
    !matches!(h.framing, Framing::Empty)
        && h.headers
            .header("expect")
            .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"100-continue"))
}

fn origin_form(target: &str) -> &str {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = target.strip_prefix(scheme) {
            return rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    target
}

async fn simple(
    stream: &mut TcpStream,
    status: u16,
    reason: &str,
    body: &str,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    let headers = [
        Header::new("Content-Type", "text/plain; charset=utf-8"),
        Header::new("Content-Length", body.len().to_string()),
        Header::new("Connection", "close"),
    ];
    h1_encode::response_head(&mut out, status, reason, &headers);
    out.extend_from_slice(body.as_bytes());
    stream.write_all(&out).await?;
    stream.shutdown().await
}

/// The answer the client saw when the recorded exchange failed upstream: the proxy's 502/504.
fn failure_response(ex: &Exchange) -> Response {
    let message = ex
        .error
        .clone()
        .unwrap_or_else(|| "upstream sent no response".into());
    let status = if message.contains("within") { 504 } else { 502 };
    let body = format!("mf: {message}\n");
    Response {
        status,
        reason: if status == 504 {
            "Gateway Timeout"
        } else {
            "Bad Gateway"
        }
        .into(),
        version: "HTTP/1.1".into(),
        headers: vec![
            Header::new("Content-Type", "text/plain; charset=utf-8"),
            Header::new("Content-Length", body.len().to_string()),
        ],
        body: crate::model::Body::full(body.into_bytes()),
        trailers: vec![],
    }
}

/// Renders the recorded response exactly as the proxy sent it to the recorded client: same
/// header filtering, same framing; `Content-Length` corrected when the stored body was cut.
fn render(ex: &Exchange) -> Rendered {
    let fallback;
    let resp = match &ex.response {
        Some(r) => r,
        None => {
            fallback = failure_response(ex);
            &fallback
        }
    };
    let framing = h1::response_framing(&ex.request.method, resp.status, &resp.headers);
    let data = &resp.body.data;
    let mut headers = resp.headers.clone();
    let mut body = BytesMut::new();
    let mut must_close = false;
    match framing {
        Framing::Empty => {}
        Framing::Length(n) => {
            if n != data.len() as u64 {
                for h in headers
                    .iter_mut()
                    .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
                {
                    h.value = data.len().to_string().into_bytes();
                }
            }
            body.extend_from_slice(data);
        }
        Framing::Chunked => {
            h1_encode::chunk(&mut body, data);
            h1_encode::last_chunk(&mut body, &resp.trailers);
        }
        Framing::UntilClose => {
            must_close = true;
            body.extend_from_slice(data);
        }
    }
    let mut head = BytesMut::new();
    h1_encode::response_head(
        &mut head,
        resp.status,
        &resp.reason,
        &h1::client_response_headers(resp.status, &headers, must_close),
    );
    let mut head_close = BytesMut::new();
    h1_encode::response_head(
        &mut head_close,
        resp.status,
        &resp.reason,
        &h1::client_response_headers(resp.status, &headers, true),
    );
    Rendered {
        head: head.freeze(),
        head_close: head_close.freeze(),
        body: body.freeze(),
        must_close,
    }
}
