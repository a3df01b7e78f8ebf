//! The recording proxy for HTTP/1.x: a reverse proxy in front of one upstream, or (with no
//! upstream) a forward proxy that clients reach through `HTTP_PROXY`/`HTTPS_PROXY`, with
//! `CONNECT` tunnels intercepted by TLS certificates minted from the local mf CA.
//!
//! Why not hyper here: hyper normalises header names to lowercase and regroups duplicates in a
//! `HeaderMap`, and the only knobs that keep the original case and order are internal types a
//! program cannot read. A recorder that must store and replay headers byte-for-byte therefore
//! frames HTTP/1.1 itself, with the sans-IO decoder in `decode::h1` (head parsing is
//! httparse). The proxy streams: each read is decoded, re-encoded and written before the next
//! read, so a body of any size passes through in bounded memory, and only the first
//! `max_body` bytes of it are kept for the recording.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;
use futures_util::FutureExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::decode::h1::{self, Decoder, Event, Framing, RequestHead, Role};
use crate::decode::h1_encode;
use crate::model::{
    trace_id_from_traceparent, Body, ErrorKind, Exchange, ExchangeError, ExchangeSink, Header,
    HeaderList, Protocol, Request, Response, Timings,
};
use crate::net::Shutdown;

const READ_BUF: usize = 64 * 1024;

/// A whole connection, plain TCP or TLS, for code that needs both directions in one value.
pub(crate) trait AsyncIo: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> AsyncIo for T {}

/// Either half of a client or upstream connection, plain TCP or TLS.
type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// Where the proxy forwards to.
#[derive(Clone, Debug)]
pub struct Upstream {
    /// Speak TLS to it (`https://`).
    pub tls: bool,
    pub host: String,
    pub port: u16,
    /// `host:port` as written in the URL, used for the Host header.
    pub authority: String,
    /// Path prefix from the URL (`http://h/api` → `/api`), without a trailing slash.
    pub base_path: String,
}

impl Upstream {
    /// Parses `http[s]://host[:port][/prefix]`.
    ///
    /// # Errors
    /// Another scheme, or no host.
    pub fn parse(url: &str) -> Result<Upstream, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            Some(other) => {
                return Err(format!(
                    "{url}: unsupported scheme {other:?}; use http:// or https://"
                ))
            }
            None => {
                return Err(format!(
                    "{url:?}: the upstream needs a scheme, e.g. http://{url}"
                ))
            }
        };
        let authority = uri.authority().ok_or_else(|| format!("{url}: no host"))?;
        if authority.as_str().ends_with(':') {
            return Err(format!("{url}: empty port"));
        }
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if host.is_empty() {
            return Err(format!("{url}: no host"));
        }
        let base_path = uri.path().trim_end_matches('/').to_string();
        Ok(Upstream {
            tls,
            host,
            port: authority.port_u16().unwrap_or(if tls { 443 } else { 80 }),
            authority: authority.to_string(),
            base_path,
        })
    }

    /// The target of a `CONNECT host:port` request, spoken to over TLS after interception.
    fn from_connect(authority: &str) -> Result<Upstream, String> {
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("bad CONNECT target {authority:?}"))?;
        Ok(Upstream {
            tls: true,
            host,
            port,
            authority: authority.to_string(),
            base_path: String::new(),
        })
    }

    /// `http` or `https`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }

    fn same_origin(&self, other: &Upstream) -> bool {
        self.tls == other.tls
            && self.host.eq_ignore_ascii_case(&other.host)
            && self.port == other.port
    }
}

fn split_host_port(authority: &str) -> Option<(String, u16)> {
    let (host, port) = authority.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    (!host.is_empty()).then(|| (host.to_string(), port))
}

/// Proxy settings, validated by the CLI.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The reverse-proxy target; `None` makes mf a forward proxy.
    pub upstream: Option<Upstream>,
    /// TLS settings for `https` upstreams (ALPN http/1.1).
    pub upstream_tls: Arc<rustls::ClientConfig>,
    /// The same for HTTP/2 and gRPC upstreams (ALPN h2).
    pub upstream_tls_h2: Arc<rustls::ClientConfig>,
    /// Certificates for intercepted `CONNECT` tunnels (forward proxy).
    pub intercept_tls: Option<Arc<rustls::ServerConfig>>,
    /// Hosts whose `CONNECT` tunnels are relayed untouched (recorded as opaque tunnels).
    pub passthrough: Vec<String>,
    /// Bodies longer than this are forwarded whole but stored truncated.
    pub max_body: usize,
    pub x_forwarded_for: bool,
    /// Keep the client's Host header instead of naming the upstream.
    pub keep_host: bool,
    pub connect_timeout: Duration,
    /// How long to wait for the upstream's response head.
    pub response_timeout: Duration,
    pub max_head: usize,
}

/// Live counters, read for the summary line.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub connections: AtomicU64,
    pub exchanges: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub bad_requests: AtomicU64,
}

/// A recording proxy: configuration, where exchanges go, and counters.
pub struct Proxy {
    pub(super) config: ProxyConfig,
    pub(super) sink: Arc<dyn ExchangeSink>,
    next_connection: AtomicU64,
    pub stats: ProxyStats,
}

impl Proxy {
    /// A proxy numbering its connections from `first_connection_id`.
    pub fn new(
        config: ProxyConfig,
        sink: Arc<dyn ExchangeSink>,
        first_connection_id: u64,
    ) -> Arc<Proxy> {
        Arc::new(Proxy {
            config,
            sink,
            next_connection: AtomicU64::new(first_connection_id),
            stats: ProxyStats::default(),
        })
    }

    /// Serves one client connection until it closes or shutdown is requested between
    /// exchanges.
    pub async fn handle_connection(
        self: Arc<Self>,
        client: TcpStream,
        peer: SocketAddr,
        shutdown: Shutdown,
    ) {
        if crate::net::starts_with_h2_preface(&client).await {
            let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
            self.stats.connections.fetch_add(1, Ordering::Relaxed);
            super::h2::serve(self, client, peer, id, shutdown).await;
            return;
        }
        let (reader, writer) = client.into_split();
        self.handle_halves(Box::new(reader), Box::new(writer), peer, shutdown)
            .await;
    }

    /// Serves a client connection that arrived over TLS (`--tls` listener).
    pub async fn handle_tls_connection(
        self: Arc<Self>,
        client: TcpStream,
        peer: SocketAddr,
        shutdown: Shutdown,
        acceptor: tokio_rustls::TlsAcceptor,
    ) {
        match acceptor.accept(client).await {
            Ok(tls) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
                let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
                self.stats.connections.fetch_add(1, Ordering::Relaxed);
                super::h2::serve(self, tls, peer, id, shutdown).await;
            }
            Ok(tls) => {
                let (reader, writer) = tokio::io::split(tls);
                self.handle_halves(Box::new(reader), Box::new(writer), peer, shutdown)
                    .await;
            }
            Err(e) => {
                tracing::info!(peer = %peer, error = %e, "TLS handshake with client failed");
            }
        }
    }

    async fn handle_halves(
        self: Arc<Self>,
        reader: BoxRead,
        writer: BoxWrite,
        peer: SocketAddr,
        shutdown: Shutdown,
    ) {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        let origin = self.config.upstream.clone();
        let mut conn = ClientConn::new(self, reader, writer, peer, id, shutdown, origin);
        conn.run().await;
    }
}

/// An upstream connection, kept alive between exchanges of one client connection.
struct UpstreamConn {
    reader: BoxRead,
    writer: BoxWrite,
    /// Which origin this connection talks to.
    origin: Upstream,
    decoder: Decoder,
    addr: SocketAddr,
    /// Read buffer, kept across exchanges: allocating 64 KiB per request showed in profiles.
    buf: Vec<u8>,
}

impl UpstreamConn {
    /// False when the upstream closed the idle connection (or sent something unasked).
    fn is_reusable(&mut self) -> bool {
        // One poll with no waker: pending means the idle connection is still open. Works the
        // same for plain and TLS streams, unlike a peek on the socket.
        let mut probe = [0u8; 1];
        self.reader.read(&mut probe).now_or_never().is_none()
    }
}

/// How an exchange went wrong, for the record and the client.
#[derive(Debug)]
enum Failure {
    /// No usable response: the client gets a 502/504 if nothing was sent yet.
    Upstream {
        status: u16,
        kind: ErrorKind,
        message: String,
    },
    /// The client went away or broke the protocol.
    Client(String),
}

struct ClientConn {
    proxy: Arc<Proxy>,
    reader: BoxRead,
    writer: BoxWrite,
    decoder: Decoder,
    upstream: Option<UpstreamConn>,
    /// Where origin-form requests go: the reverse-proxy upstream, or the host of an
    /// intercepted CONNECT tunnel. `None` on a plain forward-proxy connection.
    origin: Option<Upstream>,
    peer: SocketAddr,
    id: u64,
    seq: u32,
    buf: Vec<u8>,
    shutdown: Shutdown,
}

/// What one direction's pump collected for the recording.
#[derive(Default)]
struct Collected {
    body: Vec<u8>,
    size: u64,
    truncated: bool,
    trailers: Vec<Header>,
    ended_at: Option<Instant>,
}

impl Collected {
    fn keep(&mut self, data: &[u8], max: usize) {
        self.size += data.len() as u64;
        let room = max.saturating_sub(self.body.len());
        if data.len() > room {
            self.truncated = true;
        }
        let take = data.len().min(room);
        if take > self.body.capacity() - self.body.len() {
            // Double as usual, but never past the recording limit: a plain doubling would
            // reserve 32 MiB to keep 16, which showed as the proxy's peak RSS.
            let target = (self.body.capacity() * 2)
                .max(self.body.len() + take)
                .min(max);
            self.body.reserve_exact(target - self.body.len());
        }
        self.body.extend_from_slice(&data[..take]);
    }

    fn into_body(self) -> (Body, Vec<Header>) {
        (
            Body {
                data: bytes::Bytes::from(self.body),
                size: self.size,
                truncated: self.truncated,
            },
            self.trailers,
        )
    }
}

/// The response pump's result.
#[derive(Default)]
struct ResponseOutcome {
    head: Option<h1::ResponseHead>,
    collected: Collected,
    first_byte_at: Option<Instant>,
    head_sent: bool,
    upgraded: bool,
    /// The connection to the client must close after this response.
    close_client: bool,
    upstream_reusable: bool,
}

impl ClientConn {
    fn new(
        proxy: Arc<Proxy>,
        reader: BoxRead,
        writer: BoxWrite,
        peer: SocketAddr,
        id: u64,
        shutdown: Shutdown,
        origin: Option<Upstream>,
    ) -> Self {
        let max_head = proxy.config.max_head;
        ClientConn {
            proxy,
            reader,
            writer,
            decoder: Decoder::new(Role::Request).with_max_head(max_head),
            upstream: None,
            origin,
            peer,
            id,
            seq: 0,
            buf: vec![0; READ_BUF],
            shutdown,
        }
    }

    async fn run(&mut self) {
        loop {
            let started = match self.next_request_head().await {
                Ok(Some(h)) => h,
                Ok(None) => return,
                Err(e) => {
                    self.proxy
                        .stats
                        .bad_requests
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(conn = self.id, peer = %self.peer, error = %e, "bad request from client");
                    if let ClientError::Decode(err) = &e {
                        let status = err.status();
                        let reason = if status == 431 {
                            "Request Header Fields Too Large"
                        } else {
                            "Bad Request"
                        };
                        let _ = self
                            .send_simple(status, reason, &format!("mf: {err}\n"), true)
                            .await;
                    }
                    return;
                }
            };
            let keep_going = self.exchange(started).await;
            self.seq += 1;
            if !keep_going || self.shutdown.is_triggered() {
                return;
            }
        }
    }

    /// Waits for the next request head. `Ok(None)`: the client closed between requests or
    /// shutdown was requested while idle.
    async fn next_request_head(
        &mut self,
    ) -> Result<Option<(RequestHead, Instant, i64)>, ClientError> {
        let mut started: Option<(Instant, i64)> = None;
        loop {
            match self.decoder.poll() {
                Ok(Some(Event::RequestHead(head))) => {
                    let (at, wall) = started.unwrap_or_else(now_pair);
                    return Ok(Some((head, at, wall)));
                }
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => return Err(ClientError::Decode(e)),
            }
            let mut shutdown = self.shutdown.clone();
            let n = tokio::select! {
                r = self.reader.read(&mut self.buf) => match r {
                    Ok(n) => n,
                    // TLS clients often close without close_notify; between requests that is
                    // just a close.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && self.decoder.is_idle() => 0,
                    Err(e) => return Err(ClientError::Io(e.to_string())),
                },
                _ = shutdown.wait(), if self.decoder.is_idle() => return Ok(None),
            };
            if n == 0 {
                return if self.decoder.is_idle() {
                    Ok(None)
                } else {
                    Err(ClientError::Io(
                        "client closed in the middle of a request head".into(),
                    ))
                };
            }
            if self.seq == 0 && started.is_none() && self.buf[..n].starts_with(b"PRI * HTTP/2.0") {
                return Err(ClientError::Unsupported(
                    "HTTP/2 connection preface split too slowly to be recognised",
                ));
            }
            if started.is_none() {
                started = Some(now_pair());
            }
            self.decoder.feed(&self.buf[..n]);
        }
    }

    /// Forwards one exchange and records it. Returns whether the client connection goes on.
    async fn exchange(
        &mut self,
        (head, started_at, started_wall): (RequestHead, Instant, i64),
    ) -> bool {
        let proxy = self.proxy.clone();
        let config = &proxy.config;
        if head.method.eq_ignore_ascii_case("CONNECT") {
            return self.connect(head, started_wall).await;
        }
        let (target_up, origin_target, host_override) = match self.route(&head.target) {
            Ok(route) => route,
            Err(message) => {
                self.proxy
                    .stats
                    .bad_requests
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(conn = self.id, target = %head.target, "{message}");
                let _ = self
                    .send_simple(400, "Bad Request", &format!("mf: {message}\n"), true)
                    .await;
                return false;
            }
        };
        let client_close = h1::wants_close(head.minor, &head.headers);
        let recorded_headers: Vec<Header> = head
            .headers
            .iter()
            .filter(|h| !h1::is_hop_by_hop(&h.name, &head.headers))
            .cloned()
            .collect();
        let mut ex = Exchange {
            connection_id: self.id,
            seq: self.seq,
            protocol: Some(if head.minor == 0 {
                Protocol::Http10
            } else {
                Protocol::Http11
            }),
            started_at_ns: started_wall,
            client_addr: Some(self.peer.to_string()),
            scheme: target_up.scheme().into(),
            authority: target_up.authority.clone(),
            trace_id: head
                .headers
                .header("traceparent")
                .and_then(trace_id_from_traceparent),
            request: Request {
                method: head.method.clone(),
                target: origin_target.clone(),
                version: format!("HTTP/1.{}", head.minor),
                headers: recorded_headers,
                ..Default::default()
            },
            ..Default::default()
        };
        if is_websocket_upgrade(&head.headers) {
            ex.protocol = Some(Protocol::WebSocket);
        }

        if let Err(failure) = self.ensure_upstream(&target_up).await {
            let Failure::Upstream {
                status,
                kind,
                message,
            } = failure
            else {
                return false;
            };
            self.proxy
                .stats
                .upstream_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(conn = self.id, error = %message, "upstream unavailable");
            self.fail_and_record(ex, status, ExchangeError::new(kind, message))
                .await;
            return false;
        }
        let Some(upstream) = self.upstream.as_mut() else {
            return false;
        };
        ex.server_addr = Some(upstream.addr.to_string());

        // The head as the upstream gets it: hop-by-hop fields dropped, except the upgrade
        // handshake and the body framing that we keep unchanged.
        let mut out = BytesMut::new();
        let fwd_headers = forward_request_headers(
            &head,
            config,
            self.peer,
            host_override.as_deref(),
            &target_up.authority,
        );
        let target = format!("{}{}", target_up.base_path, origin_target);
        h1_encode::request_head(&mut out, &head.method, &target, &fwd_headers);
        upstream.decoder.push_request_method(&head.method);

        let max_body = config.max_body;
        let response_timeout = config.response_timeout;
        let mut request = Collected::default();
        let mut response = ResponseOutcome::default();
        let (req_result, resp_result) = {
            let req_pump = pump_request(
                &mut self.reader,
                &mut self.decoder,
                &mut upstream.writer,
                &mut self.buf,
                out,
                head.framing,
                max_body,
                &mut request,
            );
            let resp_pump = pump_response(
                &mut upstream.reader,
                &mut upstream.decoder,
                &mut upstream.buf,
                &mut self.writer,
                &head.method,
                client_close,
                max_body,
                response_timeout,
                &mut response,
            );
            tokio::pin!(req_pump, resp_pump);
            let mut req_result: Option<Result<(), Failure>> = None;
            let mut resp_result: Option<Result<(), Failure>> = None;
            while resp_result.is_none() {
                tokio::select! {
                    r = &mut req_pump, if req_result.is_none() => {
                        // A client that vanished mid-body ends the exchange; the upstream gets nothing more.
                        let failed = r.is_err();
                        req_result = Some(r);
                        if failed { break; }
                    }
                    r = &mut resp_pump, if resp_result.is_none() => resp_result = Some(r),
                }
            }
            (req_result, resp_result)
        };
        // A response that finished before its request body did (an early 413, say) leaves
        // the client's request stream in an unknown place: close after it.
        let request_done = matches!(req_result, Some(Ok(())));

        let request_ended_at = request.ended_at;
        let (req_body, req_trailers) = std::mem::take(&mut request).into_body();
        ex.request.body = req_body;
        ex.request.trailers = req_trailers;
        let rel = |t: Option<Instant>| {
            t.map(|t| t.saturating_duration_since(started_at).as_nanos() as u64)
        };
        ex.timings = Timings {
            request_end_ns: rel(request_ended_at.or(if request_done {
                Some(Instant::now())
            } else {
                None
            })),
            response_first_byte_ns: rel(response.first_byte_at),
            response_end_ns: rel(response.collected.ended_at),
        };
        let mut keep_going = request_done && !client_close && !response.close_client;
        if let Some(h) = response.head.take() {
            let (body, trailers) = std::mem::take(&mut response.collected).into_body();
            ex.response = Some(Response {
                status: h.status,
                reason: h.reason,
                version: format!("HTTP/1.{}", h.minor),
                headers: h.headers,
                body,
                trailers,
            });
        }
        let failure = match (req_result, resp_result) {
            (Some(Err(f)), _) | (_, Some(Err(f))) => Some(f),
            _ => None,
        };
        if let Some(failure) = failure {
            keep_going = false;
            self.upstream = None;
            match failure {
                Failure::Upstream {
                    status,
                    kind,
                    message,
                } => {
                    self.proxy
                        .stats
                        .upstream_errors
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(conn = self.id, seq = self.seq, error = %message, "upstream failed");
                    if !response.head_sent {
                        let _ = self
                            .send_simple(
                                status,
                                status_reason(status),
                                &format!("mf: {message}\n"),
                                true,
                            )
                            .await;
                    }
                    ex.error = Some(ExchangeError::new(kind, message));
                }
                Failure::Client(message) => {
                    tracing::info!(conn = self.id, seq = self.seq, error = %message, "client went away");
                    ex.error = Some(ExchangeError::new(ErrorKind::ClientAborted, message));
                }
            }
        } else if !response.upstream_reusable && !response.upgraded {
            // An upgraded upstream connection is not reusable, but the tunnel needs it.
            self.upstream = None;
        }
        let upgraded = response.upgraded;
        self.decoder.resolve_upgrade(upgraded);
        if upgraded && ex.protocol == Some(Protocol::WebSocket) {
            // Recorded when the session ends, with every frame.
            self.tunnel_websocket(ex, started_at).await;
            return false;
        }
        self.proxy.sink.record(ex);
        self.proxy.stats.exchanges.fetch_add(1, Ordering::Relaxed);
        if upgraded {
            self.tunnel().await;
            return false;
        }
        keep_going
    }

    /// Where a request goes: (upstream, origin-form target, Host header to send instead of
    /// the client's).
    fn route(&self, target: &str) -> Result<(Upstream, String, Option<String>), String> {
        if target.starts_with("http://") || target.starts_with("https://") {
            // Absolute form: a forward-proxy request (RFC 9112 §3.2.2).
            let uri: http::Uri = target
                .parse()
                .map_err(|e| format!("bad request target {target:?}: {e}"))?;
            let origin = format!(
                "{}://{}",
                uri.scheme_str().unwrap_or("http"),
                uri.authority().map(|a| a.as_str()).unwrap_or("")
            );
            let up = Upstream::parse(&origin)?;
            let path = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
            return Ok((up, path, None));
        }
        match &self.origin {
            Some(up) => {
                let rewrite = self.proxy.config.upstream.is_some() && !self.proxy.config.keep_host;
                Ok((
                    up.clone(),
                    target.to_string(),
                    rewrite.then(|| up.authority.clone()),
                ))
            }
            None => Err(format!(
                "{target:?} is not an absolute URL: this mf is a forward proxy (no --upstream); \
                 point HTTP_PROXY at it, or start it with --upstream URL"
            )),
        }
    }

    async fn ensure_upstream(&mut self, up: &Upstream) -> Result<(), Failure> {
        if let Some(conn) = self.upstream.as_mut() {
            if conn.origin.same_origin(up) && conn.is_reusable() {
                return Ok(());
            }
        }
        self.upstream = None;
        let proxy = self.proxy.clone();
        let (reader, writer, addr) = connect_upstream(&proxy.config, up).await?;
        self.upstream = Some(UpstreamConn {
            reader,
            writer,
            origin: up.clone(),
            decoder: Decoder::new(Role::Response),
            addr,
            buf: vec![0; READ_BUF],
        });
        Ok(())
    }
}

/// Opens a connection (TLS for https) to `up`.
async fn connect_upstream(
    config: &ProxyConfig,
    up: &Upstream,
) -> Result<(BoxRead, BoxWrite, SocketAddr), Failure> {
    {
        let target = (up.host.as_str(), up.port);
        let connect = TcpStream::connect(target);
        let stream = match tokio::time::timeout(config.connect_timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(Failure::Upstream {
                    status: 502,
                    kind: ErrorKind::UpstreamRefused,
                    message: format!("upstream {} refused or unreachable: {e}", up.authority),
                })
            }
            Err(_) => {
                return Err(Failure::Upstream {
                    status: 504,
                    kind: ErrorKind::UpstreamTimeout,
                    message: format!(
                        "upstream {} did not accept a connection within {:?}",
                        up.authority, config.connect_timeout
                    ),
                })
            }
        };
        let _ = stream.set_nodelay(true);
        let addr = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], up.port)));
        if !up.tls {
            let (reader, writer) = stream.into_split();
            return Ok((Box::new(reader), Box::new(writer), addr));
        }
        let name = rustls::pki_types::ServerName::try_from(up.host.clone()).map_err(|e| {
            Failure::Upstream {
                status: 502,
                kind: ErrorKind::UpstreamTls,
                message: format!("upstream {}: invalid TLS server name: {e}", up.authority),
            }
        })?;
        let connector = tokio_rustls::TlsConnector::from(config.upstream_tls.clone());
        let handshake = connector.connect(name, stream);
        match tokio::time::timeout(config.connect_timeout, handshake).await {
            Ok(Ok(tls)) => {
                let (reader, writer) = tokio::io::split(tls);
                Ok((Box::new(reader), Box::new(writer), addr))
            }
            Ok(Err(e)) => Err(Failure::Upstream {
                status: 502,
                kind: ErrorKind::UpstreamTls,
                message: format!("TLS handshake with upstream {} failed: {e}", up.authority),
            }),
            Err(_) => Err(Failure::Upstream {
                status: 504,
                kind: ErrorKind::UpstreamTimeout,
                message: format!("TLS handshake with upstream {} timed out", up.authority),
            }),
        }
    }
}

impl ClientConn {
    /// `CONNECT host:port` on a forward proxy: intercept with a minted certificate, or relay
    /// untouched for `--passthrough` hosts. Returns false: the connection ends with the tunnel.
    async fn connect(&mut self, head: RequestHead, started_wall: i64) -> bool {
        let proxy = self.proxy.clone();
        let up = match Upstream::from_connect(&head.target) {
            Ok(up) => up,
            Err(message) => {
                let _ = self
                    .send_simple(400, "Bad Request", &format!("mf: {message}\n"), true)
                    .await;
                return false;
            }
        };
        let passthrough = proxy
            .config
            .passthrough
            .iter()
            .any(|h| h.eq_ignore_ascii_case(&up.host));
        let intercept = match (&proxy.config.intercept_tls, passthrough) {
            (Some(cfg), false) => Some(cfg.clone()),
            _ => None,
        };
        if let Some(tls_config) = intercept {
            if self
                .send_raw(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                .await
                .is_err()
            {
                return false;
            }
            // Bytes the client sent after the CONNECT head belong to the TLS handshake.
            let early = self.decoder.take_buffered();
            let reader = std::mem::replace(&mut self.reader, Box::new(tokio::io::empty()));
            let writer = std::mem::replace(&mut self.writer, Box::new(tokio::io::sink()));
            let stream = tokio::io::join(std::io::Cursor::new(early).chain(reader), writer);
            let tls = match tokio_rustls::TlsAcceptor::from(tls_config)
                .accept(stream)
                .await
            {
                Ok(tls) => tls,
                Err(e) => {
                    tracing::warn!(conn = self.id, host = %up.authority, error = %e,
                        "client refused the intercepted TLS handshake (does it trust the mf CA? see `mf ca path`)");
                    return false;
                }
            };
            let (reader, writer) = tokio::io::split(tls);
            let mut inner = ClientConn::new(
                proxy,
                Box::new(reader),
                Box::new(writer),
                self.peer,
                self.id,
                self.shutdown.clone(),
                Some(up),
            );
            inner.seq = self.seq;
            Box::pin(inner.run()).await;
            return false;
        }
        // Opaque tunnel: connect first so that a dead host gets a 502, not a 200.
        let mut ex = Exchange {
            connection_id: self.id,
            seq: self.seq,
            protocol: Some(Protocol::Http11),
            started_at_ns: started_wall,
            client_addr: Some(self.peer.to_string()),
            scheme: "https".into(),
            authority: up.authority.clone(),
            request: Request {
                method: head.method.clone(),
                target: head.target.clone(),
                version: format!("HTTP/1.{}", head.minor),
                headers: head.headers.clone(),
                ..Default::default()
            },
            ..Default::default()
        };
        ex.tags.insert("tunnel".into(), "opaque".into());
        let mut plain = up.clone();
        plain.tls = false;
        match connect_upstream(&proxy.config, &plain).await {
            Ok((reader, writer, addr)) => {
                ex.server_addr = Some(addr.to_string());
                ex.response = Some(Response {
                    status: 200,
                    reason: "Connection Established".into(),
                    version: "HTTP/1.1".into(),
                    ..Default::default()
                });
                if self
                    .send_raw(b"HTTP/1.1 200 Connection Established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return false;
                }
                self.proxy.sink.record(ex);
                self.proxy.stats.exchanges.fetch_add(1, Ordering::Relaxed);
                self.upstream = Some(UpstreamConn {
                    reader,
                    writer,
                    origin: plain,
                    decoder: Decoder::new(Role::Response),
                    addr,
                    buf: Vec::new(),
                });
                self.tunnel().await;
            }
            Err(failure) => {
                let (status, message) = match failure {
                    Failure::Upstream {
                        status,
                        kind,
                        message,
                    } => (status, ExchangeError::new(kind, message)),
                    Failure::Client(message) => {
                        (502, ExchangeError::new(ErrorKind::ClientAborted, message))
                    }
                };
                self.fail_and_record(ex, status, message).await;
            }
        }
        false
    }

    /// Answers the client with `status` and `message`, closes, and records `ex` with the error.
    async fn fail_and_record(&mut self, mut ex: Exchange, status: u16, error: ExchangeError) {
        let body = format!("mf: {}\n", error.message);
        ex.error = Some(error);
        let _ = self
            .send_simple(status, status_reason(status), &body, true)
            .await;
        self.proxy.sink.record(ex);
        self.proxy.stats.exchanges.fetch_add(1, Ordering::Relaxed);
    }

    async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await
    }

    async fn send_simple(
        &mut self,
        status: u16,
        reason: &str,
        body: &str,
        close: bool,
    ) -> std::io::Result<()> {
        let mut out = BytesMut::new();
        let mut headers = vec![
            Header::new("Content-Type", "text/plain; charset=utf-8"),
            Header::new("Content-Length", body.len().to_string()),
        ];
        if close {
            headers.push(Header::new("Connection", "close"));
        }
        h1_encode::response_head(&mut out, status, reason, &headers);
        out.extend_from_slice(body.as_bytes());
        write_flush(&mut self.writer, &out).await?;
        if close {
            let _ = self.writer.shutdown().await;
        }
        Ok(())
    }

    /// After a WebSocket 101: relay and decode frames both ways, then record the exchange.
    async fn tunnel_websocket(&mut self, mut ex: Exchange, started_at: Instant) {
        let Some(mut upstream) = self.upstream.take() else {
            self.proxy.sink.record(ex);
            return;
        };
        let client_early = self.decoder.take_buffered();
        let upstream_early = upstream.decoder.take_buffered();
        let relayed = super::ws::relay(
            &mut self.reader,
            &mut self.writer,
            &mut upstream.reader,
            &mut upstream.writer,
            client_early,
            upstream_early,
            started_at,
            self.proxy.config.max_body,
        )
        .await;
        ex.messages = relayed.messages;
        if relayed.dropped > 0 {
            ex.tags
                .insert("messages_dropped".into(), relayed.dropped.to_string());
        }
        if let Some(e) = relayed.error {
            tracing::info!(conn = self.id, seq = self.seq, error = %e, "websocket ended abnormally");
            ex.error = Some(ExchangeError::new(ErrorKind::StreamError, e));
        }
        ex.timings.response_end_ns = Some(started_at.elapsed().as_nanos() as u64);
        self.proxy.sink.record(ex);
        self.proxy.stats.exchanges.fetch_add(1, Ordering::Relaxed);
    }

    /// After a 101 (or a CONNECT tunnel): relay bytes both ways until either side closes.
    async fn tunnel(&mut self) {
        let Some(mut upstream) = self.upstream.take() else {
            return;
        };
        let client_early = self.decoder.take_buffered();
        let upstream_early = upstream.decoder.take_buffered();
        let to_upstream = async {
            if !client_early.is_empty() {
                upstream.writer.write_all(&client_early).await?;
            }
            tokio::io::copy(&mut self.reader, &mut upstream.writer).await?;
            upstream.writer.shutdown().await
        };
        let to_client = async {
            if !upstream_early.is_empty() {
                self.writer.write_all(&upstream_early).await?;
            }
            tokio::io::copy(&mut upstream.reader, &mut self.writer).await?;
            self.writer.shutdown().await
        };
        let _ = tokio::join!(to_upstream, to_client);
    }
}

#[derive(Debug)]
enum ClientError {
    Decode(h1::Error),
    Io(String),
    Unsupported(&'static str),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::Decode(e) => write!(f, "{e}"),
            ClientError::Io(e) => f.write_str(e),
            ClientError::Unsupported(e) => f.write_str(e),
        }
    }
}

/// Writes and flushes: TLS streams hold written bytes in their record buffer until flushed.
async fn write_flush(w: &mut BoxWrite, data: &[u8]) -> std::io::Result<()> {
    w.write_all(data).await?;
    w.flush().await
}

fn now_pair() -> (Instant, i64) {
    let wall = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as i64)
        .unwrap_or(0);
    (Instant::now(), wall)
}

fn status_reason(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        431 => "Request Header Fields Too Large",
        502 => "Bad Gateway",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

fn is_websocket_upgrade(headers: &[Header]) -> bool {
    headers
        .header("upgrade")
        .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"websocket"))
}

/// The request headers sent upstream, in the client's order and case. `host_override`
/// replaces the Host value (reverse proxy); a request without Host gets `authority`.
fn forward_request_headers(
    head: &RequestHead,
    config: &ProxyConfig,
    peer: SocketAddr,
    host_override: Option<&str>,
    authority: &str,
) -> Vec<Header> {
    // `Upgrade: h2c` is declined (the request goes on as HTTP/1.1, which RFC 9113 §3.2 allows):
    // hyper and h2 cannot adopt an upgraded request as stream 1, so the proxy could not record
    // it. Clients that want HTTP/2 from the start use prior knowledge, which is recorded.
    let upgrading = head
        .headers
        .header("upgrade")
        .is_some_and(|v| !v.trim_ascii().eq_ignore_ascii_case(b"h2c"));
    let mut out: Vec<Header> = Vec::with_capacity(head.headers.len() + 2);
    let mut saw_host = false;
    let mut saw_xff = false;
    for h in &head.headers {
        let keep_hop = h.name.eq_ignore_ascii_case("transfer-encoding")
            || (upgrading
                && (h.name.eq_ignore_ascii_case("connection")
                    || h.name.eq_ignore_ascii_case("upgrade")));
        if !keep_hop && h1::is_hop_by_hop(&h.name, &head.headers) {
            continue;
        }
        // No WebSocket extensions: a recorded frame keeps opcode and FIN but not RSV bits, so
        // permessage-deflate frames could not be replayed; uncompressed frames can.
        if h.name.eq_ignore_ascii_case("sec-websocket-extensions")
            && is_websocket_upgrade(&head.headers)
        {
            continue;
        }
        if h.name.eq_ignore_ascii_case("host") {
            saw_host = true;
            if let Some(host) = host_override {
                out.push(Header {
                    name: h.name.clone(),
                    value: host.as_bytes().to_vec(),
                });
                continue;
            }
        }
        if config.x_forwarded_for && h.name.eq_ignore_ascii_case("x-forwarded-for") && !saw_xff {
            saw_xff = true;
            let mut value = h.value.clone();
            value.extend_from_slice(format!(", {}", peer.ip()).as_bytes());
            out.push(Header {
                name: h.name.clone(),
                value,
            });
            continue;
        }
        out.push(h.clone());
    }
    if !saw_host {
        out.insert(0, Header::new("Host", host_override.unwrap_or(authority)));
    }
    if config.x_forwarded_for && !saw_xff {
        out.push(Header::new("X-Forwarded-For", peer.ip().to_string()));
    }
    out
}

/// Streams the request body from the client to the upstream (after the head in `out`).
#[allow(clippy::too_many_arguments)]
async fn pump_request(
    client: &mut BoxRead,
    decoder: &mut Decoder,
    upstream: &mut BoxWrite,
    buf: &mut [u8],
    mut out: BytesMut,
    framing: Framing,
    max_body: usize,
    collected: &mut Collected,
) -> Result<(), Failure> {
    let upstream_err = |e: std::io::Error| Failure::Upstream {
        status: 502,
        kind: ErrorKind::UpstreamReset,
        message: format!("upstream closed the connection while receiving the request: {e}"),
    };
    loop {
        loop {
            match decoder.poll() {
                Ok(Some(Event::Data(data))) => {
                    collected.keep(&data, max_body);
                    match framing {
                        Framing::Chunked => h1_encode::chunk(&mut out, &data),
                        _ => out.extend_from_slice(&data),
                    }
                }
                Ok(Some(Event::Trailers(t))) => {
                    h1_encode::last_chunk(&mut out, &t);
                    collected.trailers = t;
                }
                Ok(Some(Event::End)) => {
                    if matches!(framing, Framing::Chunked) && collected.trailers.is_empty() {
                        h1_encode::last_chunk(&mut out, &[]);
                    }
                    collected.ended_at = Some(Instant::now());
                    write_flush(upstream, &out).await.map_err(upstream_err)?;
                    return Ok(());
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(Failure::Client(format!("malformed request body: {e}"))),
            }
        }
        if !out.is_empty() {
            write_flush(upstream, &out).await.map_err(upstream_err)?;
            out.clear();
        }
        let n = client
            .read(buf)
            .await
            .map_err(|e| Failure::Client(format!("client read failed: {e}")))?;
        if n == 0 {
            return Err(Failure::Client(
                "client closed the connection in the middle of the request body".into(),
            ));
        }
        decoder.feed(&buf[..n]);
    }
}

/// Streams the upstream's response to the client.
#[allow(clippy::too_many_arguments)]
async fn pump_response(
    upstream: &mut BoxRead,
    decoder: &mut Decoder,
    buf: &mut [u8],
    client: &mut BoxWrite,
    method: &str,
    client_close: bool,
    max_body: usize,
    response_timeout: Duration,
    outcome: &mut ResponseOutcome,
) -> Result<(), Failure> {
    let mut out = BytesMut::new();
    let mut framing = Framing::Empty;
    let client_err =
        |e: std::io::Error| Failure::Client(format!("client stopped reading the response: {e}"));
    loop {
        loop {
            let event = match decoder.poll() {
                Ok(ev) => ev,
                Err(e) => {
                    return Err(Failure::Upstream {
                        status: 502,
                        kind: ErrorKind::MalformedResponse,
                        message: format!("upstream sent a malformed response: {e}"),
                    })
                }
            };
            match event {
                Some(Event::ResponseHead(head)) => {
                    let interim = (100..200).contains(&head.status) && head.status != 101;
                    if interim {
                        // 100 Continue and friends go straight to the client; the final
                        // response follows on the same request.
                        let headers =
                            h1::client_response_headers(head.status, &head.headers, false);
                        h1_encode::response_head(&mut out, head.status, &head.reason, &headers);
                        continue;
                    }
                    framing = head.framing;
                    let close = client_close
                        || matches!(framing, Framing::UntilClose)
                        || (head.minor == 0
                            && !method.eq_ignore_ascii_case("HEAD")
                            && framing == Framing::UntilClose);
                    outcome.close_client = close;
                    outcome.upstream_reusable = !h1::wants_close(head.minor, &head.headers)
                        && !matches!(framing, Framing::UntilClose);
                    let headers = h1::client_response_headers(head.status, &head.headers, close);
                    h1_encode::response_head(&mut out, head.status, &head.reason, &headers);
                    outcome.head_sent = true;
                    outcome.head = Some(head);
                }
                Some(Event::Data(data)) => {
                    outcome.collected.keep(&data, max_body);
                    match framing {
                        Framing::Chunked => h1_encode::chunk(&mut out, &data),
                        _ => out.extend_from_slice(&data),
                    }
                }
                Some(Event::Trailers(t)) => {
                    h1_encode::last_chunk(&mut out, &t);
                    outcome.collected.trailers = t;
                }
                Some(Event::End) => {
                    if outcome.head.is_none() {
                        // End of an interim response.
                        continue;
                    }
                    if matches!(framing, Framing::Chunked) && outcome.collected.trailers.is_empty()
                    {
                        h1_encode::last_chunk(&mut out, &[]);
                    }
                    outcome.collected.ended_at = Some(Instant::now());
                    write_flush(client, &out).await.map_err(client_err)?;
                    // A 101 ends its (empty) message and then reports the upgrade: without
                    // this the head would be written twice, corrupting the new protocol.
                    out.clear();
                    if outcome.close_client {
                        let _ = client.shutdown().await;
                    }
                    if !decoder.is_upgraded() {
                        return Ok(());
                    }
                }
                Some(Event::Upgraded) => {
                    outcome.upgraded = true;
                    outcome.upstream_reusable = false;
                    write_flush(client, &out).await.map_err(client_err)?;
                    return Ok(());
                }
                Some(Event::RequestHead(_)) => {}
                None => break,
            }
        }
        if !out.is_empty() {
            write_flush(client, &out).await.map_err(client_err)?;
            out.clear();
        }
        let read = upstream.read(buf);
        let n = if outcome.head.is_none() {
            match tokio::time::timeout(response_timeout, read).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(Failure::Upstream {
                        status: 504,
                        kind: ErrorKind::UpstreamTimeout,
                        message: format!("upstream sent no response within {response_timeout:?}"),
                    })
                }
            }
        } else {
            read.await
        };
        let n = n.map_err(|e| Failure::Upstream {
            status: 502,
            kind: ErrorKind::UpstreamReset,
            message: format!("upstream connection failed: {e}"),
        })?;
        if outcome.first_byte_at.is_none() && n > 0 {
            outcome.first_byte_at = Some(Instant::now());
        }
        if n == 0 {
            match decoder.finish() {
                Ok(Some(ev)) => {
                    // Close-delimited body: the close is the end. Re-run the event loop with it.
                    if let Event::Data(d) = &ev {
                        outcome.collected.keep(d, max_body);
                        write_flush(client, d).await.map_err(client_err)?;
                        continue;
                    }
                    outcome.collected.ended_at = Some(Instant::now());
                    let _ = client.shutdown().await;
                    outcome.close_client = true;
                    return Ok(());
                }
                _ => {
                    let message = if outcome.head.is_some() {
                        "upstream closed the connection in the middle of the response body"
                            .to_string()
                    } else {
                        "upstream closed the connection without answering".to_string()
                    };
                    return Err(Failure::Upstream {
                        status: 502,
                        kind: ErrorKind::UpstreamReset,
                        message,
                    });
                }
            }
        }
        decoder.feed(&buf[..n]);
    }
}

/// Runs `proxy` on `listener` until `shutdown`; with `tls`, clients connect over TLS.
pub async fn serve(
    listener: tokio::net::TcpListener,
    proxy: Arc<Proxy>,
    shutdown: Shutdown,
    tls: Option<tokio_rustls::TlsAcceptor>,
) {
    crate::net::accept_loop(
        listener,
        shutdown,
        Duration::from_secs(5),
        move |stream, peer, shutdown| {
            let proxy = proxy.clone();
            let tls = tls.clone();
            async move {
                match tls {
                    Some(acceptor) => {
                        proxy
                            .handle_tls_connection(stream, peer, shutdown, acceptor)
                            .await
                    }
                    None => proxy.handle_connection(stream, peer, shutdown).await,
                }
            }
        },
    )
    .await;
}

/// Whether `up` speaks HTTP/2: ALPN for https upstreams, a prior-knowledge preface answered
/// with a SETTINGS frame for http ones. A TLS listener offers clients `h2` only when the
/// upstream can take it, so that the protocol a client picks can be forwarded as it is.
pub async fn upstream_speaks_h2(config: &ProxyConfig, up: &Upstream) -> bool {
    let attempt = async {
        let stream = TcpStream::connect((up.host.as_str(), up.port)).await.ok()?;
        if up.tls {
            let name = rustls::pki_types::ServerName::try_from(up.host.clone()).ok()?;
            let mut alpn = (*config.upstream_tls_h2).clone();
            alpn.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let tls = tokio_rustls::TlsConnector::from(Arc::new(alpn))
                .connect(name, stream)
                .await
                .ok()?;
            return Some(tls.get_ref().1.alpn_protocol() == Some(b"h2"));
        }
        let mut stream = stream;
        // Client preface (RFC 9113 §3.4) and an empty SETTINGS frame.
        stream
            .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
            .await
            .ok()?;
        let mut head = [0u8; 9];
        stream.read_exact(&mut head).await.ok()?;
        Some(head[3] == 0x04)
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(3), attempt).await,
        Ok(Some(true))
    )
}
