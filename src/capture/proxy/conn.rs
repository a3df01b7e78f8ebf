//! One HTTP/1 client connection of the proxy: read a request head, route it, forward the
//! exchange through the pumps while its recorder watches, record it, repeat — until the
//! client leaves or sends a CONNECT that the front door is to intercept.
//!
//! What follows a 101 or a CONNECT (relaying both ways) is in `tunnel`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, ReadHalf, WriteHalf};
use tokio::time::Sleep;

use super::failure::{ClientError, Failure};
use super::headers::{forward_request_headers, is_websocket_upgrade};
use super::pump::{
    pump_request, pump_response, RequestSettings, ResponseOutcome, ResponseSettings,
};
use super::upstream::{connect_upstream, UpstreamConn};
use super::SHUTDOWN_FINISH;
use crate::capture::clock::now_ns;
use crate::capture::io::write_flush;
use crate::capture::recorder::{Limits, Recorder};
use crate::capture::setup::{Proxy, Upstream};
use crate::decode::h1::{self, Decoder, Event, Framing, RequestHead, Role};
use crate::decode::h1_encode;
use crate::model::{Direction, ErrorKind, ExchangeError, Protocol, Text};
use crate::net::door::{H1Exit, Io, Origin};
use crate::net::reply::{write_simple, write_simple_to};
use crate::net::{ClientTimeouts, PooledBuf, Shutdown, StopSignal, Waiting, SMALL_BUF};

/// Where a client connection's exchanges are numbered from: handed through an intercepted
/// tunnel, so that the requests inside it keep their connection's id and order.
pub struct Numbering {
    pub(super) id: u64,
    pub(super) seq: u32,
}

/// What comes after an exchange.
pub(super) enum Step {
    /// The connection stays open for the next request.
    Next,
    /// The connection is finished.
    Close,
    /// The client sent `CONNECT authority` to be intercepted by the front door.
    Intercept(String),
}

/// One HTTP/1 client connection. The client stream keeps its concrete type (plain TCP is
/// not type-erased); only upstream connections are boxed.
pub(super) struct ClientConn<S> {
    pub(super) proxy: Arc<Proxy>,
    pub(super) reader: ReadHalf<S>,
    pub(super) writer: WriteHalf<S>,
    pub(super) decoder: Decoder,
    pub(super) upstream: Option<UpstreamConn>,
    /// Where origin-form requests go: the reverse-proxy upstream, or the host of an
    /// intercepted CONNECT tunnel. `None` on a plain forward-proxy connection. Shared, so
    /// that routing a request does not copy its strings.
    origin: Option<Arc<Upstream>>,
    pub(super) peer: SocketAddr,
    /// `peer` as recorded, formatted once per connection rather than once per exchange.
    peer_text: Text,
    /// The front door can intercept a CONNECT (the proxy has a certificate authority).
    pub(super) can_intercept: bool,
    pub(super) id: u64,
    pub(super) seq: u32,
    buf: Vec<u8>,
    /// Shutdown, watched once for the connection's life.
    stop: StopSignal,
    /// When the connection began (the first request's header deadline counts from here).
    connected: tokio::time::Instant,
    /// The deadline of whatever the connection waits for: the next request head, or the
    /// upstream's next bytes. One timer moved along instead of one per wait: a later deadline
    /// is set without touching the timer wheel, where a new timer is registered and removed.
    pub(super) timer: Pin<Box<Sleep>>,
}

impl<S: Io> ClientConn<S> {
    /// A connection that came through the door from `from`.
    pub(super) fn new(
        proxy: Arc<Proxy>,
        client: S,
        from: &Origin,
        numbering: Numbering,
        shutdown: Shutdown,
    ) -> Self {
        let max_head = proxy.config.max_head;
        // Inside an intercepted tunnel, origin-form requests go to the CONNECT's host over
        // TLS (its authority was checked before interception was asked for).
        let origin = match &from.tunnel {
            Some(authority) => Upstream::from_connect(authority).ok(),
            None => proxy.config.upstream.clone(),
        }
        .map(Arc::new);
        let (reader, writer) = tokio::io::split(client);
        let connected = tokio::time::Instant::now();
        ClientConn {
            proxy,
            reader,
            writer,
            decoder: Decoder::new(Role::Request).with_max_head(max_head),
            upstream: None,
            origin,
            peer: from.peer,
            peer_text: compact_str::format_compact!("{}", from.peer),
            can_intercept: from.can_intercept(),
            id: numbering.id,
            seq: numbering.seq,
            buf: vec![0; SMALL_BUF],
            stop: StopSignal::new(shutdown),
            connected,
            timer: Box::pin(tokio::time::sleep_until(connected)),
        }
    }

    /// Serves exchanges until the connection ends, or hands it back for interception.
    pub(super) async fn serve(mut self) -> H1Exit<S, Numbering> {
        match self.run().await {
            Some(authority) => {
                // Bytes the client sent after the CONNECT head belong to the TLS handshake.
                let early = self.decoder.take_buffered();
                H1Exit::Intercept {
                    stream: self.reader.unsplit(self.writer),
                    authority,
                    early,
                    carry: Numbering {
                        id: self.id,
                        seq: self.seq,
                    },
                }
            }
            None => H1Exit::Closed,
        }
    }

    /// Runs exchanges; `Some(authority)` when a CONNECT is to be intercepted.
    async fn run(&mut self) -> Option<String> {
        loop {
            let started = match self.next_request_head().await {
                Ok(Some(h)) => h,
                Ok(None) => return None,
                Err(e) => {
                    self.proxy
                        .stats
                        .bad_requests
                        .fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(conn = self.id, peer = %self.peer, error = %e, "bad request from client");
                    match &e {
                        ClientError::Decode(err) => {
                            self.send_simple(err.status(), &format!("mf: {err}\n"))
                                .await;
                        }
                        ClientError::TimedOut { answer: true } => {
                            self.send_simple(408, "mf: request not received in time\n")
                                .await;
                        }
                        _ => {}
                    }
                    return None;
                }
            };
            // Boxed: the exchange's state (both pumps, the recorder) is most of this
            // connection's future, and an idle keep-alive connection would hold it, touched
            // by its last exchange, for as long as it stays open.
            match Box::pin(self.exchange(started)).await {
                // The tunnel's first request takes the CONNECT's place in the numbering: an
                // intercepted CONNECT is not an exchange of its own.
                Step::Intercept(authority) => return Some(authority),
                Step::Close => return None,
                Step::Next => {}
            }
            self.decoder.shrink_when_idle();
            if let Some(up) = self.upstream.as_mut() {
                up.decoder.shrink_when_idle();
            }
            self.seq += 1;
            if self.stop.is_triggered() {
                return None;
            }
        }
    }

    /// Waits for the next request head and says when its first byte came. `Ok(None)`: the
    /// client closed between requests or shutdown was requested while idle.
    async fn next_request_head(&mut self) -> Result<Option<(RequestHead, i64)>, ClientError> {
        let mut started: Option<i64> = None;
        let mut head_started: Option<tokio::time::Instant> = None;
        loop {
            match self.decoder.poll() {
                Ok(Some(Event::RequestHead(head))) => {
                    let at = started.unwrap_or_else(now_ns);
                    return Ok(Some((head, at)));
                }
                Ok(Some(_)) => continue,
                Ok(None) => {}
                Err(e) => return Err(ClientError::Decode(e)),
            }
            let now = tokio::time::Instant::now();
            let waiting = match (started.is_some() || !self.decoder.is_idle(), self.seq) {
                (true, _) => Waiting::Head(*head_started.get_or_insert(now)),
                (false, 0) => Waiting::FirstRequest,
                (false, _) => Waiting::NextRequest,
            };
            let deadline = self
                .proxy
                .config
                .client_timeouts
                .deadline(waiting, self.connected, now);
            self.timer.as_mut().reset(deadline);
            let n = tokio::select! {
                biased;
                r = self.reader.read(&mut self.buf) => match r {
                    Ok(n) => n,
                    // TLS clients often close without close_notify; between requests that is
                    // just a close.
                    Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof && self.decoder.is_idle() => 0,
                    Err(e) => return Err(ClientError::Io(e.to_string())),
                },
                () = &mut self.timer => {
                    return if ClientTimeouts::answers(waiting) {
                        Err(ClientError::TimedOut { answer: true })
                    } else {
                        Ok(None)
                    };
                }
                () = self.stop.wait(), if self.decoder.is_idle() => return Ok(None),
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
                started = Some(now_ns());
            }
            self.decoder.feed(&self.buf[..n]);
        }
    }

    /// A recorder for an exchange of this connection that started at `at`.
    pub(super) fn recorder(&self, at: i64, protocol: Protocol, authority: &str) -> Recorder {
        let mut rec = Recorder::new(
            at,
            Limits {
                max_body: self.proxy.config.max_body,
            },
        );
        let ex = rec.exchange_mut();
        ex.connection_id = self.id;
        ex.seq = self.seq;
        ex.protocol = Some(protocol);
        ex.client_addr = Some(self.peer_text.clone());
        ex.authority = authority.into();
        rec
    }

    /// Forwards one exchange and records it.
    async fn exchange(&mut self, (mut head, started_at): (RequestHead, i64)) -> Step {
        let proxy = self.proxy.clone();
        let config = &proxy.config;
        if head.method.eq_ignore_ascii_case("CONNECT") {
            return self.connect(head, started_at).await;
        }
        let (target_up, origin_target, rewrite_host) = match self.route(&head.target) {
            Ok(route) => route,
            Err(message) => {
                self.proxy
                    .stats
                    .bad_requests
                    .fetch_add(1, Ordering::Relaxed);
                tracing::warn!(conn = self.id, target = %crate::vocab::secrets::log_target(&head.target), "{message}");
                self.send_simple(400, &format!("mf: {message}\n")).await;
                return Step::Close;
            }
        };
        let client_close = h1::wants_close(head.minor, &head.headers);
        let protocol = if is_websocket_upgrade(&head.headers) {
            Protocol::WebSocket
        } else if head.minor == 0 {
            Protocol::Http10
        } else {
            Protocol::Http11
        };
        let mut rec = self.recorder(started_at, protocol, &target_up.authority);
        rec.exchange_mut().scheme = target_up.scheme().into();

        // The head as the upstream gets it: hop-by-hop fields dropped, except the upgrade
        // handshake and the body framing that we keep unchanged. Encoded before the
        // recorder takes the client's headers, so that they are moved there, not copied.
        let mut out = BytesMut::new();
        {
            let fwd = forward_request_headers(
                &head,
                config,
                self.peer,
                rewrite_host.then_some(target_up.authority.as_str()),
                &target_up.authority,
            );
            h1_encode::request_head_fields(
                &mut out,
                &head.method,
                &[&target_up.base_path, &origin_target],
                fwd.iter().map(|(n, v)| (*n, &v[..])),
            );
        }
        rec.request_head(
            head.method.clone(),
            origin_target,
            h1::version_text(head.minor),
            std::mem::take(&mut head.headers),
        );

        if let Err(failure) = self.ensure_upstream(&target_up).await {
            let Failure::Upstream { .. } = failure else {
                return Step::Close;
            };
            let (status, error) = failure.into_parts();
            self.proxy.upstream_failed();
            tracing::warn!(conn = self.id, error = %error.message, "upstream unavailable");
            self.fail_and_record(&head.method, rec, status, error).await;
            return Step::Close;
        }
        let Some(upstream) = self.upstream.as_mut() else {
            return Step::Close;
        };
        rec.exchange_mut().server_addr = Some(upstream.addr_text.clone());
        upstream.decoder.push_request_method(&head.method);

        let mut response = ResponseOutcome::default();
        // Bodies move through buffers lent for this exchange (see `net::PooledBuf`); the
        // connection keeps only its small head buffer while idle.
        let mut body_buf = (head.framing != Framing::Empty).then(PooledBuf::take);
        let mut response_buf = PooledBuf::take();
        let (req_result, resp_result) = {
            let (req_half, resp_half) = rec.halves();
            let req_pump = pump_request(
                &mut self.reader,
                &mut self.decoder,
                &mut upstream.writer,
                body_buf.as_deref_mut().unwrap_or(&mut self.buf),
                out,
                RequestSettings {
                    framing: head.framing,
                    stall: config.client_timeouts.idle,
                },
                req_half,
            );
            let resp_pump = pump_response(
                &mut upstream.reader,
                &mut upstream.decoder,
                &mut response_buf,
                &mut self.writer,
                ResponseSettings {
                    method: &head.method,
                    client_close,
                    response_timeout: config.response_timeout,
                },
                resp_half,
                &mut response,
                self.timer.as_mut(),
            );
            // At shutdown an exchange still in flight gets a little less than the accept
            // loop's grace to finish, then is recorded with what arrived: a stalled
            // upstream once made a recording end with `recorded 0 exchanges`.
            let stop = &mut self.stop;
            let stopping = async move {
                stop.wait().await;
                tokio::time::sleep(SHUTDOWN_FINISH).await;
            };
            tokio::pin!(req_pump, resp_pump, stopping);
            let mut req_result: Option<Result<(), Failure>> = None;
            let mut resp_result: Option<Result<(), Failure>> = None;
            while resp_result.is_none() {
                tokio::select! {
                    // In order: a random start costs a random number per wake-up, and each
                    // branch completes once.
                    biased;
                    r = &mut req_pump, if req_result.is_none() => {
                        // A client that vanished mid-body ends the exchange; the upstream gets nothing more.
                        let failed = r.is_err();
                        req_result = Some(r);
                        if failed { break; }
                    }
                    r = &mut resp_pump, if resp_result.is_none() => resp_result = Some(r),
                    () = &mut stopping => {
                        resp_result = Some(Err(Failure::upstream(
                            502,
                            ErrorKind::UpstreamTimeout,
                            "recording stopped while the exchange was still in flight",
                        )));
                    }
                }
            }
            (req_result, resp_result)
        };
        // A response that finished before its request body did (an early 413, say) leaves
        // the client's request stream in an unknown place: close after it.
        let request_done = matches!(req_result, Some(Ok(())));
        if request_done && !rec.half(Direction::ClientToServer).is_ended() {
            rec.end(now_ns(), Direction::ClientToServer);
        }
        let mut keep_going = request_done && !client_close && !response.close_client;
        if let Some(h) = response.head.take() {
            rec.response_head(
                response.first_byte_at.unwrap_or(started_at),
                h.status,
                h.reason,
                h1::version_text(h.minor),
                h.headers,
            );
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
                    self.proxy.upstream_failed();
                    tracing::warn!(conn = self.id, seq = self.seq, error = %message, "upstream failed");
                    if !response.head_sent {
                        self.send_error(&head.method, status, &format!("mf: {message}\n"))
                            .await;
                    }
                    rec.fail(ExchangeError::new(kind, message));
                }
                Failure::Client(message) => {
                    tracing::info!(conn = self.id, seq = self.seq, error = %message, "client went away");
                    rec.fail(ExchangeError::new(ErrorKind::ClientAborted, message));
                }
                Failure::ClientStalled(message) => {
                    tracing::info!(conn = self.id, seq = self.seq, error = %message, "client stalled");
                    if !response.head_sent {
                        self.send_error(&head.method, 408, &format!("mf: {message}\n"))
                            .await;
                    }
                    rec.fail(ExchangeError::new(ErrorKind::ClientAborted, message));
                }
            }
        } else if !response.upstream_reusable && !response.upgraded {
            // An upgraded upstream connection is not reusable, but the tunnel needs it.
            self.upstream = None;
        }
        let upgraded = response.upgraded;
        self.decoder.resolve_upgrade(upgraded);
        if upgraded && protocol == Protocol::WebSocket {
            // Recorded when the session ends, with every frame.
            self.tunnel_websocket(rec).await;
            return Step::Close;
        }
        self.proxy.record(rec.finish());
        if upgraded {
            self.tunnel().await;
            return Step::Close;
        }
        if keep_going {
            Step::Next
        } else {
            Step::Close
        }
    }

    /// Where a request goes: (upstream, origin-form target, whether the upstream's authority
    /// is sent as the Host header instead of the client's).
    fn route(&self, target: &str) -> Result<(Arc<Upstream>, Text, bool), String> {
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
            let path = Text::from(uri.path_and_query().map_or("/", |p| p.as_str()));
            return Ok((Arc::new(up), path, false));
        }
        match &self.origin {
            Some(up) => {
                let rewrite = self.proxy.config.upstream.is_some() && !self.proxy.config.keep_host;
                Ok((up.clone(), target.into(), rewrite))
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
            addr_text: compact_str::format_compact!("{addr}"),
        });
        Ok(())
    }

    /// Answers the client's `method` request with `status` and the error, closes, and
    /// records the exchange with the error.
    pub(super) async fn fail_and_record(
        &mut self,
        method: &str,
        mut rec: Recorder,
        status: u16,
        error: ExchangeError,
    ) {
        let body = format!("mf: {}\n", error.message);
        rec.fail(error);
        self.send_error(method, status, &body).await;
        self.proxy.record(rec.finish());
    }

    /// The plain-text error answer to a `method` request (no body for HEAD) and a close.
    pub(super) async fn send_error(&mut self, method: &str, status: u16, body: &str) {
        let _ = write_simple_to(&mut self.writer, method, status, body).await;
    }

    pub(super) async fn send_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        write_flush(&mut self.writer, bytes).await
    }

    /// Answers with the shared plain-text error and closes; a client already gone is fine.
    pub(super) async fn send_simple(&mut self, status: u16, body: &str) {
        let _ = write_simple(&mut self.writer, status, body).await;
    }
}
