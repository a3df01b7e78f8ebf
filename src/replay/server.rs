//! The HTTP/1.x replay server: reads requests with the same decoder the proxy uses, asks the
//! [`Matcher`] for the recorded answer and writes it back as recorded.
//!
//! Responses are rendered once at start-up (head with its original header order and case,
//! framed body), so serving one is a lookup and a write.

use std::net::SocketAddr;
#[cfg(unix)]
use std::os::fd::RawFd;
#[cfg(not(unix))]
type RawFd = i32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use super::faults::{reason_phrase, Fault};
use super::latency::paced_write;
use super::matcher::{Incoming, MatchResult, Matcher, RepeatPolicy};
use super::metrics::Metrics;
use super::plan::{Plan, Planner, Settings};
use super::rules::{route_template, RequestInfo};
use super::source::{Answer as SourceAnswer, AnswerSource};
use crate::decode::h1::{self, Decoder, Event, Framing, Role};
use crate::decode::h1_encode;
use crate::model::{Exchange, Header, HeaderList, Protocol, Response};
use crate::net::Shutdown;

const READ_BUF: usize = 64 * 1024;

/// Where a connection came from: the CONNECT authority it tunnels to, and the TCP socket
/// underneath (for faults that act on TCP itself, like a reset).
struct Tunnel {
    authority: Option<String>,
    fd: Option<RawFd>,
}

fn raw_fd(stream: &TcpStream) -> Option<RawFd> {
    #[cfg(unix)]
    {
        use std::os::fd::AsRawFd;
        Some(stream.as_raw_fd())
    }
    #[cfg(not(unix))]
    {
        let _ = stream;
        None
    }
}

/// Sets SO_LINGER to zero so that closing the socket sends RST instead of FIN. The socket
/// stays owned by its stream: this only changes an option while the stream is alive.
fn zero_linger(fd: RawFd) {
    #[cfg(unix)]
    {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: `fd` is the descriptor of a TcpStream the caller still owns and holds open;
        // setsockopt reads `linger` and does not retain the pointer.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_LINGER,
                (&linger as *const libc::linger).cast(),
                std::mem::size_of::<libc::linger>() as libc::socklen_t,
            );
        }
    }
}

/// A client stream of any kind (TCP, TLS, TLS inside a CONNECT tunnel), type-erased so that
/// a tunnel can recurse into the same connection handler.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

/// Replay settings, validated by the CLI.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    pub repeat: RepeatPolicy,
    pub max_head: usize,
    /// Larger request bodies are refused with 413.
    pub max_request_body: usize,
    /// Certificates for intercepting `CONNECT` (minted from the mf CA); `None` refuses CONNECT.
    pub intercept_tls: Option<Arc<rustls::ServerConfig>>,
    /// Replay stream messages (gRPC, WebSocket) with their recorded relative timing.
    pub recorded_latency: bool,
    /// Latency, scenario and rules at start (changed live through the admin API).
    pub realism: Settings,
    /// Seeds every random choice of the planner.
    pub seed: u64,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            repeat: RepeatPolicy::Last,
            max_head: h1::DEFAULT_MAX_HEAD,
            max_request_body: 64 << 20,
            intercept_tls: None,
            recorded_latency: true,
            realism: Settings::default(),
            seed: 0,
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
    /// The body as recorded, unframed, and its content type: what a `status` fault sends.
    raw_body: Bytes,
    content_type: Option<Vec<u8>>,
    /// The recorded framing delimits the body by closing the connection.
    must_close: bool,
    /// Route template of the recorded request, for metrics (computed once, not per request).
    route: String,
}

/// A replay of one recording.
pub struct Replay {
    /// Answers `CONNECT` by intercepting TLS with certificates from the mf CA, so apps
    /// pointed at the replay with `HTTPS_PROXY` run offline.
    intercept: Option<tokio_rustls::TlsAcceptor>,
    rendered: Vec<Rendered>,
    pub(super) matcher: Matcher,
    /// When set, answers come from here instead of `matcher` (a fixtures folder).
    source: Option<Arc<dyn AnswerSource>>,
    planner: Planner,
    metrics: Metrics,
    pub(super) config: ReplayConfig,
    pub stats: ReplayStats,
    /// The recording itself, for the streaming paths (HTTP/2, gRPC, WebSocket).
    pub(super) exchanges: Vec<Exchange>,
    pub(super) grpc: super::grpc::GrpcIndex,
}

impl Replay {
    /// Prepares `exchanges` (in recorded order) for serving.
    ///
    /// # Errors
    /// The metrics registry refused a metric (a bug in mf's metric definitions).
    pub fn new(
        exchanges: &[Exchange],
        config: ReplayConfig,
    ) -> Result<Arc<Replay>, prometheus::Error> {
        let rendered = exchanges.iter().map(render).collect();
        Ok(Arc::new(Replay {
            intercept: config
                .intercept_tls
                .clone()
                .map(tokio_rustls::TlsAcceptor::from),
            rendered,
            matcher: Matcher::new(exchanges, config.repeat),
            grpc: super::grpc::GrpcIndex::new(exchanges, config.repeat),
            exchanges: exchanges.to_vec(),
            planner: Planner::new(exchanges, config.realism.clone(), config.seed),
            metrics: Metrics::new()?,
            source: None,
            config,
            stats: ReplayStats::default(),
        }))
    }

    /// A replay whose answers come from `source` (a fixtures folder) rather than a recording.
    ///
    /// # Errors
    /// The metrics registry refused a metric (a bug in mf's metric definitions).
    pub fn from_source(
        source: Arc<dyn AnswerSource>,
        config: ReplayConfig,
    ) -> Result<Arc<Replay>, prometheus::Error> {
        Ok(Arc::new(Replay {
            intercept: config
                .intercept_tls
                .clone()
                .map(tokio_rustls::TlsAcceptor::from),
            rendered: Vec::new(),
            matcher: Matcher::new(&[], config.repeat),
            grpc: super::grpc::GrpcIndex::new(&[], config.repeat),
            exchanges: Vec::new(),
            planner: Planner::new(&[], config.realism.clone(), config.seed),
            metrics: Metrics::new()?,
            source: Some(source),
            config,
            stats: ReplayStats::default(),
        }))
    }

    /// Asks the answer source; writes the response into `out`. Returns whether to close.
    fn answer_from_source(
        &self,
        source: &dyn AnswerSource,
        req: &Incoming<'_>,
        client_close: bool,
        out: &mut BytesMut,
    ) -> bool {
        match source.answer(req) {
            SourceAnswer::Response { response, label } => {
                self.stats.matched.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(method = %req.method, target = %req.target, %label, "matched");
                let ex = Exchange {
                    request: crate::model::Request {
                        method: req.method.to_string(),
                        ..Default::default()
                    },
                    response: Some(response),
                    ..Default::default()
                };
                let r = render(&ex);
                let close = client_close || r.must_close;
                out.extend_from_slice(if close { &r.head_close } else { &r.head });
                out.extend_from_slice(&r.body);
                close
            }
            SourceAnswer::NotFound(report) => {
                self.stats.unmatched.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(method = %req.method, target = %req.target, "no fixture matches");
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
                h1_encode::response_head(out, 404, "Not Found", &headers);
                out.extend_from_slice(text.as_bytes());
                client_close
            }
        }
    }

    /// The latency and fault planner, shared by every protocol's server and the admin API.
    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// The Prometheus metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// What to do with the answer to `info` (exchange `matched`): the entry point for every
    /// protocol's replay path. Counts the injected fault in the metrics and logs it.
    pub fn plan_for(&self, info: &RequestInfo<'_>, matched: Option<usize>) -> Plan {
        let plan = self.planner.plan(info, matched);
        if let Some(f) = &plan.fault {
            self.metrics.fault(f.kind());
            tracing::info!(
                fault = f.kind(),
                rule = plan.rule.as_deref().unwrap_or("-"),
                path = info.path,
                "injecting fault"
            );
        }
        plan
    }

    /// The matcher, for control endpoints (reset counters).
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// Serves one client connection.
    pub async fn handle_connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: Shutdown,
    ) {
        if crate::net::starts_with_h2_preface(&stream).await {
            super::h2::serve(self, stream, peer, shutdown).await;
            return;
        }
        let fd = raw_fd(&stream);
        self.handle_stream(
            stream,
            peer,
            shutdown,
            Tunnel {
                authority: None,
                fd,
            },
        )
        .await;
    }

    /// Serves a connection that arrived over TLS (`--tls` listener).
    pub async fn handle_tls_connection(
        self: Arc<Self>,
        stream: TcpStream,
        peer: SocketAddr,
        shutdown: Shutdown,
        acceptor: tokio_rustls::TlsAcceptor,
    ) {
        let fd = raw_fd(&stream);
        match acceptor.accept(stream).await {
            Ok(tls) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
                super::h2::serve(self, tls, peer, shutdown).await
            }
            Ok(tls) => {
                self.handle_stream(
                    tls,
                    peer,
                    shutdown,
                    Tunnel {
                        authority: None,
                        fd,
                    },
                )
                .await
            }
            Err(e) => tracing::info!(peer = %peer, error = %e, "TLS handshake with client failed"),
        }
    }

    /// Type- and future-erased entry for connections inside a CONNECT tunnel: the explicit
    /// `Send` future breaks the recursion the compiler would otherwise have to unroll.
    fn handle_boxed(
        self: Arc<Self>,
        stream: Box<dyn Io>,
        peer: SocketAddr,
        shutdown: Shutdown,
        tunnel: Tunnel,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> {
        Box::pin(self.handle_stream(stream, peer, shutdown, tunnel))
    }

    /// `tunnel`: the authority of the CONNECT this connection arrived through.
    async fn handle_stream<S>(
        self: Arc<Self>,
        mut stream: S,
        peer: SocketAddr,
        mut shutdown: Shutdown,
        tunnel: Tunnel,
    ) where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
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
            if head.method.eq_ignore_ascii_case("CONNECT") {
                if let Some(acceptor) = self.intercept.clone() {
                    if stream
                        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                        .await
                        .is_err()
                    {
                        return;
                    }
                    // Bytes sent right after the CONNECT head are the start of the TLS handshake.
                    let early = decoder.take_buffered();
                    let (read, write) = tokio::io::split(stream);
                    let joined = tokio::io::join(std::io::Cursor::new(early).chain(read), write);
                    match acceptor.accept(joined).await {
                        Ok(tls) => {
                            let tls: Box<dyn Io> = Box::new(tls);
                            self.handle_boxed(
                                tls,
                                peer,
                                shutdown,
                                Tunnel {
                                    authority: Some(head.target.clone()),
                                    fd: tunnel.fd,
                                },
                            )
                            .await;
                        }
                        Err(e) => tracing::warn!(peer = %peer, host = %head.target, error = %e,
                            "client refused the intercepted TLS handshake (does it trust the mf CA? see `mf ca path`)"),
                    }
                    return;
                }
            }
            let target = origin_form(&head.target);
            let authority = authority_of(&head, tunnel.authority.as_deref());
            let incoming = Incoming {
                method: &head.method,
                target,
                body: &body,
            };
            let started = tokio::time::Instant::now();
            out.clear();
            let mut matched = None;
            let from_source = self
                .source
                .as_ref()
                .map(|s| self.answer_from_source(s.as_ref(), &incoming, client_close, &mut out));
            let close = if let Some(close) = from_source {
                close
            } else {
                match self.matcher.find_at(authority.as_deref(), &incoming) {
                    MatchResult::Found { index, call } => {
                        self.stats.matched.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(method = %head.method, target = %head.target, index, call, "matched");
                        if super::ws::is_websocket_answer(&self.exchanges[index]) {
                            let early = decoder.take_buffered();
                            super::ws::serve(&self, stream, &head.headers, early, index).await;
                            return;
                        }
                        matched = Some(index);
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
                }
            };
            // The realism hook: the planner decides delay, pacing and fault; `answer` applies them.
            let path = target.split('?').next().unwrap_or(target);
            let protocol = if head.minor == 0 {
                Protocol::Http10
            } else {
                Protocol::Http11
            };
            let info = RequestInfo {
                protocol,
                method: &head.method,
                path,
                grpc_method: None,
                headers: &head.headers,
            };
            let plan = self.plan_for(&info, matched);
            let split = head_len(&out);
            let answer = Answer {
                whole: &out[..],
                head: &out[..split],
                body: &out[split..],
                close,
            };
            let (status, close) = self
                .answer(
                    &mut stream,
                    tunnel.fd,
                    &plan,
                    answer,
                    matched,
                    &head,
                    client_close,
                    &mut shutdown,
                )
                .await;
            let unmatched_route;
            let route: &str = match matched {
                Some(i) => &self.rendered[i].route,
                None => {
                    unmatched_route = route_template(path);
                    &unmatched_route
                }
            };
            self.metrics.request(
                protocol.as_str(),
                route,
                status,
                matched.is_some(),
                started.elapsed(),
            );
            if status == 0 {
                return;
            }
            if close {
                let _ = stream.shutdown().await;
                return;
            }
        }
    }
}

/// The answer the matcher chose, split for pacing.
struct Answer<'a> {
    /// Head and body together, as they sit in the output buffer.
    whole: &'a [u8],
    head: &'a [u8],
    body: &'a [u8],
    close: bool,
}

impl Replay {
    /// Writes the answer as the plan says: after its delay, at its pace, or not at all.
    /// Returns the status sent (0: none, the connection is gone) and whether to close.
    #[allow(clippy::too_many_arguments)]
    async fn answer<S: AsyncRead + AsyncWrite + Unpin>(
        &self,
        stream: &mut S,
        fd: Option<RawFd>,
        plan: &Plan,
        answer: Answer<'_>,
        matched: Option<usize>,
        head: &h1::RequestHead,
        client_close: bool,
        shutdown: &mut Shutdown,
    ) -> (u16, bool) {
        if !plan.first_byte.is_zero() {
            tokio::time::sleep(plan.first_byte).await;
        }
        match &plan.fault {
            Some(Fault::Reset) => {
                // SO_LINGER 0: close() sends RST instead of FIN.
                if let Some(fd) = fd {
                    zero_linger(fd);
                }
                (0, true)
            }
            Some(Fault::Hang) => {
                // Read and discard until the client gives up (or mf stops).
                let mut buf = [0u8; 4096];
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
                let (text, content_type): (Bytes, Vec<u8>) =
                    match (body, matched.map(|i| &self.rendered[i])) {
                        (Some(b), _) => (
                            Bytes::from(b.clone().into_bytes()),
                            b"text/plain; charset=utf-8".to_vec(),
                        ),
                        (None, Some(r)) => (
                            r.raw_body.clone(),
                            r.content_type
                                .clone()
                                .unwrap_or_else(|| b"application/octet-stream".to_vec()),
                        ),
                        (None, None) => (
                            Bytes::from_static(b"{\"error\":\"mf: injected fault\"}\n"),
                            b"application/json".to_vec(),
                        ),
                    };
                let mut headers = vec![
                    Header::new("Content-Type", content_type),
                    Header::new("Content-Length", text.len().to_string()),
                    Header::new("X-Mf-Fault", "status"),
                ];
                if client_close {
                    headers.push(Header::new("Connection", "close"));
                }
                let mut out = BytesMut::new();
                h1_encode::response_head(&mut out, *code, reason_phrase(*code), &headers);
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
                // in the caller's buffer), as before realism existed — two writes per answer
                // cost a third of the replay's throughput.
                let written = if matches!(plan.pacing, super::latency::Pacing::Burst) {
                    stream.write_all(answer.whole).await.is_ok()
                } else {
                    stream.write_all(answer.head).await.is_ok()
                        && paced_write(stream, answer.body, plan.pacing).await.is_ok()
                };
                if !written {
                    return (0, true);
                }
                (status_of(answer.head), answer.close)
            }
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

/// Serves `replay` on `listener` until `shutdown`; with `tls`, clients connect over TLS.
pub async fn serve(
    listener: tokio::net::TcpListener,
    replay: Arc<Replay>,
    shutdown: Shutdown,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    crate::net::accept_loop(
        listener,
        shutdown,
        Duration::from_secs(2),
        move |stream, peer, shutdown| {
            let replay = replay.clone();
            let tls = tls.clone();
            async move {
                match tls {
                    Some(acceptor) => {
                        replay
                            .handle_tls_connection(stream, peer, shutdown, acceptor)
                            .await
                    }
                    None => replay.handle_connection(stream, peer, shutdown).await,
                }
            }
        },
    )
    .await;
}

/// Who the request is addressed to: an absolute URL's authority, the CONNECT tunnel's, or
/// the Host header.
fn authority_of(head: &h1::RequestHead, tunnel: Option<&str>) -> Option<String> {
    for scheme in ["http://", "https://"] {
        if let Some(rest) = head.target.strip_prefix(scheme) {
            return Some(rest.split('/').next().unwrap_or(rest).to_string());
        }
    }
    tunnel
        .map(str::to_string)
        .or_else(|| head.headers.header_str("host"))
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

async fn simple<S: AsyncWrite + Unpin>(
    stream: &mut S,
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

/// The answer the client saw when the recorded exchange failed upstream: the proxy's 502/504,
/// chosen by the error's kind.
fn failure_response(ex: &Exchange) -> Response {
    let (status, message) = match &ex.error {
        Some(e) => (e.kind.gateway_status(), e.message.as_str()),
        None => (502, "upstream sent no response"),
    };
    let body = format!("mf: {message}\n");
    Response {
        status,
        reason: reason_phrase(status).into(),
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
    let content_type = resp
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map(|h| h.value.clone());
    Rendered {
        head: head.freeze(),
        head_close: head_close.freeze(),
        body: body.freeze(),
        raw_body: data.clone(),
        content_type,
        must_close,
        route: route_template(ex.request.path()),
    }
}
