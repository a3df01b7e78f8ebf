//! The recording reverse proxy for HTTP/1.x.
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
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::decode::h1::{self, Decoder, Event, Framing, RequestHead, Role};
use crate::decode::h1_encode;
use crate::model::{
    trace_id_from_traceparent, Body, Exchange, ExchangeSink, Header, HeaderList, Protocol, Request,
    Response, Timings,
};
use crate::net::Shutdown;

const READ_BUF: usize = 64 * 1024;

/// Where the proxy forwards to.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    /// `host:port` as written in the URL, used for the Host header.
    pub authority: String,
    /// Path prefix from the URL (`http://h/api` → `/api`), without a trailing slash.
    pub base_path: String,
}

impl Upstream {
    /// Parses `http://host[:port][/prefix]`.
    ///
    /// # Errors
    /// Another scheme, or no host.
    pub fn parse(url: &str) -> Result<Upstream, String> {
        let uri: http::Uri = url
            .parse()
            .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some("https") => {
                return Err(format!(
                    "{url}: https upstreams are not supported yet; use http://"
                ))
            }
            Some(other) => return Err(format!("{url}: unsupported scheme {other:?}; use http://")),
            None => {
                return Err(format!(
                    "{url:?}: the upstream needs a scheme, e.g. http://{url}"
                ))
            }
        }
        let authority = uri.authority().ok_or_else(|| format!("{url}: no host"))?;
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
            host,
            port: authority.port_u16().unwrap_or(80),
            authority: authority.to_string(),
            base_path,
        })
    }
}

/// Proxy settings, validated by the CLI.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    pub upstream: Upstream,
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
    config: ProxyConfig,
    sink: Arc<dyn ExchangeSink>,
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
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        let mut conn = ClientConn::new(self, client, peer, id, shutdown);
        conn.run().await;
    }
}

/// An upstream connection, kept alive between exchanges of one client connection.
struct UpstreamConn {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    decoder: Decoder,
    addr: SocketAddr,
}

impl UpstreamConn {
    /// False when the upstream closed the idle connection (or sent something unasked).
    fn is_reusable(&self) -> bool {
        let mut probe = [0u8; 1];
        matches!(self.reader.try_read(&mut probe), Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// How an exchange went wrong, for the record and the client.
#[derive(Debug)]
enum Failure {
    /// No usable response: the client gets a 502/504 if nothing was sent yet.
    Upstream { status: u16, message: String },
    /// The client went away or broke the protocol.
    Client(String),
}

struct ClientConn {
    proxy: Arc<Proxy>,
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    decoder: Decoder,
    upstream: Option<UpstreamConn>,
    peer: SocketAddr,
    id: u64,
    seq: u32,
    buf: Vec<u8>,
    shutdown: Shutdown,
}

/// What one direction's pump collected for the recording.
#[derive(Default)]
struct Collected {
    body: BytesMut,
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
        self.body.extend_from_slice(&data[..data.len().min(room)]);
    }

    fn into_body(self) -> (Body, Vec<Header>) {
        (
            Body {
                data: self.body.freeze(),
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
        client: TcpStream,
        peer: SocketAddr,
        id: u64,
        shutdown: Shutdown,
    ) -> Self {
        let (reader, writer) = client.into_split();
        let max_head = proxy.config.max_head;
        ClientConn {
            proxy,
            reader,
            writer,
            decoder: Decoder::new(Role::Request).with_max_head(max_head),
            upstream: None,
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
                r = self.reader.read(&mut self.buf) => r.map_err(|e| ClientError::Io(e.to_string()))?,
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
                    "HTTP/2 with prior knowledge is not handled by this build",
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
            scheme: "http".into(),
            authority: config.upstream.authority.clone(),
            trace_id: head
                .headers
                .header("traceparent")
                .and_then(trace_id_from_traceparent),
            request: Request {
                method: head.method.clone(),
                target: head.target.clone(),
                version: format!("HTTP/1.{}", head.minor),
                headers: recorded_headers,
                ..Default::default()
            },
            ..Default::default()
        };
        if is_websocket_upgrade(&head.headers) {
            ex.protocol = Some(Protocol::WebSocket);
        }

        if let Err(failure) = self.ensure_upstream().await {
            let Failure::Upstream { status, message } = failure else {
                return false;
            };
            self.proxy
                .stats
                .upstream_errors
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(conn = self.id, error = %message, "upstream unavailable");
            ex.error = Some(message.clone());
            let _ = self
                .send_simple(
                    status,
                    status_reason(status),
                    &format!("mf: {message}\n"),
                    true,
                )
                .await;
            self.proxy.sink.record(ex);
            self.proxy.stats.exchanges.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let Some(upstream) = self.upstream.as_mut() else {
            return false;
        };
        ex.server_addr = Some(upstream.addr.to_string());

        // The head as the upstream gets it: hop-by-hop fields dropped, except the upgrade
        // handshake and the body framing that we keep unchanged.
        let mut out = BytesMut::new();
        let fwd_headers = forward_request_headers(&head, config, self.peer);
        let target = format!("{}{}", config.upstream.base_path, head.target);
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
            while resp_result.is_none()
                || (req_result.is_none() && !resp_result.as_ref().is_some_and(|r| r.is_ok()))
            {
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

        let (req_body, req_trailers) = std::mem::take(&mut request).into_body();
        ex.request.body = req_body;
        ex.request.trailers = req_trailers;
        let rel = |t: Option<Instant>| {
            t.map(|t| t.saturating_duration_since(started_at).as_nanos() as u64)
        };
        ex.timings = Timings {
            request_end_ns: rel(request.ended_at.or(if request_done {
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
                Failure::Upstream { status, message } => {
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
                    ex.error = Some(message);
                }
                Failure::Client(message) => {
                    tracing::info!(conn = self.id, seq = self.seq, error = %message, "client went away");
                    ex.error = Some(message);
                }
            }
        } else if !response.upstream_reusable {
            self.upstream = None;
        }
        let upgraded = response.upgraded;
        self.decoder.resolve_upgrade(upgraded);
        self.proxy.sink.record(ex);
        self.proxy.stats.exchanges.fetch_add(1, Ordering::Relaxed);
        if upgraded {
            self.tunnel().await;
            return false;
        }
        keep_going
    }

    async fn ensure_upstream(&mut self) -> Result<(), Failure> {
        if self
            .upstream
            .as_ref()
            .is_some_and(UpstreamConn::is_reusable)
        {
            return Ok(());
        }
        self.upstream = None;
        let up = &self.proxy.config.upstream;
        let target = (up.host.as_str(), up.port);
        let connect = TcpStream::connect(target);
        let stream = match tokio::time::timeout(self.proxy.config.connect_timeout, connect).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                return Err(Failure::Upstream {
                    status: 502,
                    message: format!("upstream {} refused or unreachable: {e}", up.authority),
                })
            }
            Err(_) => {
                return Err(Failure::Upstream {
                    status: 504,
                    message: format!(
                        "upstream {} did not accept a connection within {:?}",
                        up.authority, self.proxy.config.connect_timeout
                    ),
                })
            }
        };
        let _ = stream.set_nodelay(true);
        let addr = stream
            .peer_addr()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], up.port)));
        let (reader, writer) = stream.into_split();
        self.upstream = Some(UpstreamConn {
            reader,
            writer,
            decoder: Decoder::new(Role::Response),
            addr,
        });
        Ok(())
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
        self.writer.write_all(&out).await?;
        if close {
            let _ = self.writer.shutdown().await;
        }
        Ok(())
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

/// The request headers sent upstream, in the client's order and case.
fn forward_request_headers(
    head: &RequestHead,
    config: &ProxyConfig,
    peer: SocketAddr,
) -> Vec<Header> {
    let upgrading = is_websocket_upgrade(&head.headers) || head.headers.header("upgrade").is_some();
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
        if h.name.eq_ignore_ascii_case("host") {
            saw_host = true;
            if !config.keep_host {
                out.push(Header {
                    name: h.name.clone(),
                    value: config.upstream.authority.clone().into_bytes(),
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
        out.insert(0, Header::new("Host", &config.upstream.authority));
    }
    if config.x_forwarded_for && !saw_xff {
        out.push(Header::new("X-Forwarded-For", peer.ip().to_string()));
    }
    out
}

/// Streams the request body from the client to the upstream (after the head in `out`).
#[allow(clippy::too_many_arguments)]
async fn pump_request(
    client: &mut OwnedReadHalf,
    decoder: &mut Decoder,
    upstream: &mut OwnedWriteHalf,
    buf: &mut [u8],
    mut out: BytesMut,
    framing: Framing,
    max_body: usize,
    collected: &mut Collected,
) -> Result<(), Failure> {
    let upstream_err = |e: std::io::Error| Failure::Upstream {
        status: 502,
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
                    upstream.write_all(&out).await.map_err(upstream_err)?;
                    return Ok(());
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(Failure::Client(format!("malformed request body: {e}"))),
            }
        }
        if !out.is_empty() {
            upstream.write_all(&out).await.map_err(upstream_err)?;
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
    upstream: &mut OwnedReadHalf,
    decoder: &mut Decoder,
    client: &mut OwnedWriteHalf,
    method: &str,
    client_close: bool,
    max_body: usize,
    response_timeout: Duration,
    outcome: &mut ResponseOutcome,
) -> Result<(), Failure> {
    let mut buf = vec![0u8; READ_BUF];
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
                    client.write_all(&out).await.map_err(client_err)?;
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
                    client.write_all(&out).await.map_err(client_err)?;
                    return Ok(());
                }
                Some(Event::RequestHead(_)) => {}
                None => break,
            }
        }
        if !out.is_empty() {
            client.write_all(&out).await.map_err(client_err)?;
            out.clear();
        }
        let read = upstream.read(&mut buf);
        let n = if outcome.head.is_none() {
            match tokio::time::timeout(response_timeout, read).await {
                Ok(r) => r,
                Err(_) => {
                    return Err(Failure::Upstream {
                        status: 504,
                        message: format!("upstream sent no response within {response_timeout:?}"),
                    })
                }
            }
        } else {
            read.await
        };
        let n = n.map_err(|e| Failure::Upstream {
            status: 502,
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
                        client.write_all(d).await.map_err(client_err)?;
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
                        message,
                    });
                }
            }
        }
        decoder.feed(&buf[..n]);
    }
}

/// Shortcut for tests and tools: a proxy bound to `listener` until `shutdown`.
pub async fn serve(listener: tokio::net::TcpListener, proxy: Arc<Proxy>, shutdown: Shutdown) {
    crate::net::accept_loop(
        listener,
        shutdown,
        Duration::from_secs(5),
        move |stream, peer, shutdown| proxy.clone().handle_connection(stream, peer, shutdown),
    )
    .await;
}
