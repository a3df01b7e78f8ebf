//! HTTP/2 cleartext (prior knowledge) for the recording proxy, with gRPC recorded message by
//! message.
//!
//! Unlike HTTP/1, HTTP/2 header names are lowercase on the wire, so hyper loses nothing a
//! recording needs and both sides are served by hyper's http2 support. Bodies are streamed
//! frame by frame through [`Tee`], which forwards each frame as soon as it arrives — a
//! bidirectional gRPC call stays interactive — and shows it to the stream's [`Recording`]
//! on the way. The recording keeps at most `max_body` bytes per direction; gRPC messages are
//! split by `decode::grpc`, which holds only the message being assembled.

use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body::{Body as HttpBody, Frame, SizeHint};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

use super::clock::now_ns;
use super::io::AsyncIo;
use super::recorder::{Limits, Recorder};
use super::setup::Proxy;
use crate::model::{Direction, ErrorKind, ExchangeError, HeaderList, Protocol};
use crate::net::door::Io;
use crate::net::Shutdown;
use crate::vocab::headers_from_map;

type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// The shared upstream HTTP/2 connection of one client connection, opened on first use.
struct UpstreamH2 {
    sender: tokio::sync::Mutex<Option<hyper::client::conn::http2::SendRequest<Tee>>>,
    addr: Mutex<Option<String>>,
}

/// Serves one client connection that the front door found speaking HTTP/2.
pub(crate) async fn serve<S: Io>(
    proxy: Arc<Proxy>,
    client: S,
    peer: std::net::SocketAddr,
    id: u64,
    mut shutdown: Shutdown,
) {
    let upstream = Arc::new(UpstreamH2 {
        sender: tokio::sync::Mutex::new(None),
        addr: Mutex::new(None),
    });
    let seq = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let proxy = proxy.clone();
        let upstream = upstream.clone();
        let seq = seq.fetch_add(1, Ordering::Relaxed);
        async move {
            Ok::<_, std::convert::Infallible>(handle(proxy, upstream, req, peer, id, seq).await)
        }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(client), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::info!(conn = id, peer = %peer, error = %e, "http/2 client connection ended with an error");
            }
        }
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn handle(
    proxy: Arc<Proxy>,
    upstream: Arc<UpstreamH2>,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
    id: u64,
    seq: u32,
) -> Response<ProxyBody> {
    let config = &proxy.config;
    let started = now_ns();
    let (parts, body) = req.into_parts();
    let headers = headers_from_map(&parts.headers);
    let target = parts
        .uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    // Like the HTTP/1 path: a reverse proxy records the upstream it forwarded to, so that
    // replay sees one host however clients addressed the proxy.
    let authority = config
        .upstream
        .as_ref()
        .map(|u| u.authority.clone())
        .or_else(|| parts.uri.authority().map(|a| a.to_string()))
        .or_else(|| headers.header_str("host"))
        .unwrap_or_default();
    let mut recorder = Recorder::new(
        started,
        Limits {
            max_body: config.max_body,
        },
    );
    {
        let ex = recorder.exchange_mut();
        ex.connection_id = id;
        ex.seq = seq;
        ex.protocol = Some(Protocol::H2);
        ex.client_addr = Some(peer.to_string());
        ex.scheme = config
            .upstream
            .as_ref()
            .map_or("http", |u| u.scheme())
            .into();
        ex.authority = authority;
    }
    recorder.request_head(
        parts.method.to_string(),
        target.clone(),
        "HTTP/2".into(),
        headers,
    );
    let rec = Arc::new(Mutex::new(Recording {
        rec: Some(recorder),
        answered: false,
        proxy: proxy.clone(),
    }));

    let sender = match upstream_sender(&proxy, &upstream).await {
        Ok(s) => s,
        Err(message) => {
            proxy.upstream_failed();
            tracing::warn!(conn = id, error = %message, "upstream unavailable");
            return fail(&rec, 502, ErrorKind::UpstreamRefused, message);
        }
    };
    if let Ok(mut r) = rec.lock() {
        if let Some(x) = r.rec.as_mut() {
            x.exchange_mut().server_addr = upstream.addr.lock().ok().and_then(|a| a.clone());
        }
    }

    let Some(up) = config.upstream.as_ref() else {
        return fail(
            &rec,
            502,
            ErrorKind::Other,
            "HTTP/2 with prior knowledge is proxied only in reverse-proxy mode (--upstream)"
                .to_string(),
        );
    };
    let uri = format!(
        "{}://{}{}{}",
        up.scheme(),
        up.authority,
        up.base_path,
        target
    );
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(uri)
        .version(http::Version::HTTP_2);
    if let Some(h) = builder.headers_mut() {
        for (name, value) in parts.headers.iter() {
            if name == http::header::HOST && !config.keep_host {
                continue;
            }
            h.append(name.clone(), value.clone());
        }
        if config.x_forwarded_for {
            if let Ok(v) = http::HeaderValue::from_str(&peer.ip().to_string()) {
                h.append("x-forwarded-for", v);
            }
        }
    }
    let req_tee = Tee {
        inner: Some(body),
        rec: rec.clone(),
        direction: Direction::ClientToServer,
        done: false,
    };
    let up_req = match builder.body(req_tee) {
        Ok(r) => r,
        Err(e) => {
            return fail(
                &rec,
                400,
                ErrorKind::MalformedRequest,
                format!("request cannot be forwarded: {e}"),
            )
        }
    };
    let mut sender = sender;
    let sent = tokio::time::timeout(config.response_timeout, sender.send_request(up_req)).await;
    let resp = match sent {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            proxy.upstream_failed();
            return fail(
                &rec,
                502,
                ErrorKind::UpstreamReset,
                format!("upstream failed the stream: {}", error_chain(&e)),
            );
        }
        Err(_) => {
            proxy.upstream_failed();
            return fail(
                &rec,
                504,
                ErrorKind::UpstreamTimeout,
                format!(
                    "upstream sent no response within {:?}",
                    config.response_timeout
                ),
            );
        }
    };
    let (rparts, rbody) = resp.into_parts();
    if let Ok(mut r) = rec.lock() {
        r.answered = true;
        if let Some(x) = r.rec.as_mut() {
            x.response_head(
                now_ns(),
                rparts.status.as_u16(),
                rparts.status.canonical_reason().unwrap_or("").to_string(),
                "HTTP/2".into(),
                headers_from_map(&rparts.headers),
            );
        }
    }
    let resp_tee = Tee {
        inner: Some(rbody),
        rec,
        direction: Direction::ServerToClient,
        done: false,
    };
    Response::from_parts(rparts, UnsyncBoxBody::new(resp_tee))
}

/// Records a failed exchange and answers the client with a plain-text error.
fn fail(
    rec: &Arc<Mutex<Recording>>,
    status: u16,
    kind: ErrorKind,
    message: String,
) -> Response<ProxyBody> {
    if let Ok(mut r) = rec.lock() {
        r.fail(ExchangeError::new(kind, message.clone()));
        r.finish();
    }
    let body = Full::new(Bytes::from(format!("mf: {message}\n"))).map_err(|never| match never {});
    let mut resp = Response::new(UnsyncBoxBody::new(body));
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

async fn upstream_sender(
    proxy: &Proxy,
    upstream: &UpstreamH2,
) -> Result<hyper::client::conn::http2::SendRequest<Tee>, String> {
    let mut guard = upstream.sender.lock().await;
    if let Some(s) = guard.as_ref() {
        if !s.is_closed() {
            return Ok(s.clone());
        }
    }
    let Some(up) = proxy.config.upstream.as_ref() else {
        return Err(
            "HTTP/2 with prior knowledge is proxied only in reverse-proxy mode (--upstream)".into(),
        );
    };
    let connect = TcpStream::connect((up.host.as_str(), up.port));
    let stream = match tokio::time::timeout(proxy.config.connect_timeout, connect).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Err(format!(
                "upstream {} refused or unreachable: {e}",
                up.authority
            ))
        }
        Err(_) => {
            return Err(format!(
                "upstream {} did not accept a connection within {:?}",
                up.authority, proxy.config.connect_timeout
            ))
        }
    };
    let _ = stream.set_nodelay(true);
    if let (Ok(a), Ok(mut slot)) = (stream.peer_addr(), upstream.addr.lock()) {
        *slot = Some(a.to_string());
    }
    // An https upstream gets TLS with ALPN h2 (gRPC over TLS); plain h2c otherwise.
    let io: Box<dyn AsyncIo> = if up.tls {
        let name = rustls::pki_types::ServerName::try_from(up.host.clone())
            .map_err(|e| format!("upstream {}: invalid TLS server name: {e}", up.authority))?;
        let connector = tokio_rustls::TlsConnector::from(proxy.config.upstream_tls_h2.clone());
        let tls = connector
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS handshake with upstream {} failed: {e}", up.authority))?;
        Box::new(tls)
    } else {
        Box::new(stream)
    };
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| {
            format!(
                "upstream {} refused the HTTP/2 handshake: {}",
                up.authority,
                error_chain(&e)
            )
        })?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::info!(error = %e, "upstream http/2 connection ended with an error");
        }
    });
    *guard = Some(sender.clone());
    Ok(sender)
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// The exchange of one HTTP/2 stream while it is in flight, shared by the two [`Tee`]s of
/// the stream; recorded once, by [`Recording::finish`].
struct Recording {
    rec: Option<Recorder>,
    /// The upstream's response head arrived.
    answered: bool,
    proxy: Arc<Proxy>,
}

impl Recording {
    fn data(&mut self, direction: Direction, data: &Bytes) {
        if let Some(r) = self.rec.as_mut() {
            r.half(direction).data(now_ns(), data);
        }
    }

    fn trailers(&mut self, direction: Direction, trailers: &HeaderMap) {
        if let Some(r) = self.rec.as_mut() {
            r.trailers(direction, headers_from_map(trailers));
        }
    }

    fn end(&mut self, direction: Direction) {
        if let Some(r) = self.rec.as_mut() {
            r.end(now_ns(), direction);
        }
    }

    fn fail(&mut self, error: ExchangeError) {
        if let Some(r) = self.rec.as_mut() {
            r.fail(error);
        }
    }

    /// Hands the exchange to the sink; later calls do nothing.
    fn finish(&mut self) {
        if let Some(r) = self.rec.take() {
            self.proxy.record(r.finish());
        }
    }
}

impl Drop for Recording {
    /// The last holder let go without the exchange being finished: the client reset the
    /// stream before the upstream answered (an expired deadline, a cancelled call).
    fn drop(&mut self) {
        if self.rec.is_some() {
            let message = if !self.answered {
                "client cancelled the stream before the upstream answered"
            } else {
                "client cancelled the stream before the response ended"
            };
            self.fail(ExchangeError::new(ErrorKind::ClientAborted, message));
            self.finish();
        }
    }
}

/// A body passed through frame by frame while its recording watches.
pub(crate) struct Tee {
    inner: Option<Incoming>,
    rec: Arc<Mutex<Recording>>,
    direction: Direction,
    done: bool,
}

impl Tee {
    fn with_rec(&self, f: impl FnOnce(&mut Recording)) {
        if let Ok(mut r) = self.rec.lock() {
            f(&mut r);
        }
    }
}

impl HttpBody for Tee {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(inner).poll_frame(cx);
        let direction = this.direction;
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(d) = frame.data_ref() {
                    this.with_rec(|r| r.data(direction, d));
                } else if let Some(t) = frame.trailers_ref() {
                    this.with_rec(|r| r.trailers(direction, t));
                }
            }
            Poll::Ready(Some(Err(e))) => {
                this.done = true;
                let message = match direction {
                    Direction::ClientToServer => ExchangeError::new(
                        ErrorKind::ClientAborted,
                        format!("client stream failed: {}", error_chain(e)),
                    ),
                    Direction::ServerToClient => ExchangeError::new(
                        ErrorKind::UpstreamReset,
                        format!("upstream stream failed: {}", error_chain(e)),
                    ),
                };
                this.with_rec(|r| {
                    r.fail(message);
                    if direction == Direction::ServerToClient {
                        r.end(direction);
                        r.finish();
                    }
                });
            }
            Poll::Ready(None) => {
                this.done = true;
                this.with_rec(|r| {
                    r.end(direction);
                    if direction == Direction::ServerToClient {
                        r.finish();
                    }
                });
            }
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.as_ref().is_none_or(|b| b.is_end_stream())
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), |b| b.size_hint())
    }
}

impl Drop for Tee {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let ended = self.inner.as_ref().is_none_or(|b| b.is_end_stream());
        let direction = self.direction;
        self.with_rec(|r| {
            if ended {
                r.end(direction);
            } else if direction == Direction::ServerToClient {
                r.fail(ExchangeError::new(
                    ErrorKind::ClientAborted,
                    "client cancelled the stream before the response ended",
                ));
            }
            if direction == Direction::ServerToClient {
                r.finish();
            }
        });
    }
}
