//! Forwarding one request that mf already holds (record-on-miss: a request the replay could
//! not answer) to the upstream, through the recording proxy itself.
//!
//! The request is written, as HTTP/1.1, into an in-memory connection served by the HTTP/1
//! proxy driver: routing, header rewriting, upstream dialing and TLS, timeouts, the error
//! answers and the recorder are the proxy's own, so there is no second HTTP client to keep in
//! step with it. The exchange the proxy records comes back here (by its connection id)
//! instead of going straight to the recording: only a complete answer is kept, so an upstream
//! that is down leaves nothing behind.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;

use super::setup::{Proxy, ProxyConfig};
use crate::decode::h1_encode;
use crate::model::{Exchange, ExchangeSink, Header, Response};
use crate::net::{Shutdown, ShutdownTrigger};

/// Request headers not passed on: the forwarded request is framed afresh (one body with a
/// length) on a connection of its own that closes after it.
const REFRAMED: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "expect",
    "upgrade",
    "te",
    "proxy-connection",
];

/// A request to forward.
#[derive(Clone, Copy, Debug)]
pub struct ForwardRequest<'a> {
    pub method: &'a str,
    /// Origin form (path and query).
    pub target: &'a str,
    pub headers: &'a [Header],
    /// The whole body; for a gRPC call, its length-prefixed messages as they came.
    pub body: &'a [u8],
    /// Send it over HTTP/2 (a gRPC call, which needs HTTP/2 and trailers end to end).
    pub http2: bool,
}

/// What became of a forwarded request.
#[derive(Debug)]
pub enum Forwarded {
    /// Answered by the upstream, and handed to the recording.
    Stored(Box<Exchange>),
    /// Not answered (upstream refused, timed out, broke off): the error answer the proxy
    /// gave, which nobody stores.
    Failed(Box<Response>),
}

/// Exchanges recorded by the in-memory connections, routed back to the caller waiting for
/// each connection.
#[derive(Default)]
struct Waiting(Mutex<HashMap<u64, oneshot::Sender<Box<Exchange>>>>);

impl ExchangeSink for Waiting {
    fn record(&self, exchange: Box<Exchange>) {
        let waiter = self
            .0
            .lock()
            .ok()
            .and_then(|mut w| w.remove(&exchange.connection_id));
        if let Some(tx) = waiter {
            let _ = tx.send(exchange);
        }
    }
}

/// Forwards requests to the proxy's upstream, recording complete exchanges into `store`.
pub struct Forwarder {
    proxy: Arc<Proxy>,
    waiting: Arc<Waiting>,
    store: Arc<dyn ExchangeSink>,
    shutdown: Shutdown,
    /// Held so that `shutdown` never fires: each in-memory connection ends by itself.
    _trigger: ShutdownTrigger,
    peer: SocketAddr,
}

impl Forwarder {
    /// A forwarder to `config.upstream` (which must be set), storing into `store` and
    /// numbering its connections from `first_connection_id`.
    pub fn new(
        config: ProxyConfig,
        store: Arc<dyn ExchangeSink>,
        first_connection_id: u64,
    ) -> Forwarder {
        let waiting = Arc::new(Waiting::default());
        let proxy = Proxy::new(config, waiting.clone(), first_connection_id);
        let (trigger, shutdown) = crate::net::shutdown_pair();
        Forwarder {
            proxy,
            waiting,
            store,
            shutdown,
            _trigger: trigger,
            peer: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }

    /// Forwards `req` and waits for the whole answer.
    pub async fn forward(&self, req: ForwardRequest<'_>) -> Forwarded {
        let id = self.proxy.open_connection();
        let (tx, rx) = oneshot::channel();
        if let Ok(mut w) = self.waiting.0.lock() {
            w.insert(id, tx);
        }
        let answer = if req.http2 {
            self.talk_h2(id, &req).await
        } else {
            self.talk_h1(id, &req).await
        };
        let recorded = rx.await.ok();
        if let Ok(mut w) = self.waiting.0.lock() {
            w.remove(&id);
        }
        match recorded {
            Some(ex) if ex.error.is_none() && ex.response.is_some() => {
                self.store.record(ex.clone());
                Forwarded::Stored(ex)
            }
            Some(ex) => Forwarded::Failed(Box::new(failure(&answer, ex.error.map(|e| e.message)))),
            None => Forwarded::Failed(Box::new(failure(&answer, None))),
        }
    }

    /// Sends `req` as HTTP/1.1 on in-memory connection `id`; the raw answer (for its status
    /// when nothing was recorded).
    async fn talk_h1(&self, id: u64, req: &ForwardRequest<'_>) -> Vec<u8> {
        let (mut client, server) = tokio::io::duplex(64 * 1024);
        let serve = super::proxy::serve_internal(
            self.proxy.clone(),
            server,
            self.peer,
            id,
            self.shutdown.clone(),
        );
        let head = encode(req);
        let talk = async {
            // The proxy reads the request while it answers; a write error means it already
            // gave up on the request and said why in its answer.
            let _ = client.write_all(&head).await;
            let _ = client.write_all(req.body).await;
            let mut answer = Vec::new();
            let _ = client.read_to_end(&mut answer).await;
            answer
        };
        let ((), answer) = tokio::join!(serve, talk);
        answer
    }

    /// Sends `req` as HTTP/2 on in-memory connection `id`, served by the proxy's HTTP/2
    /// driver (which speaks HTTP/2 to the upstream, as gRPC needs), and reads the whole
    /// answer, trailers included. Only a status line's worth of the answer is returned: what
    /// is kept is what the proxy recorded.
    async fn talk_h2(&self, id: u64, req: &ForwardRequest<'_>) -> Vec<u8> {
        let (client, server) = tokio::io::duplex(64 * 1024);
        let from = super::h2::Client {
            peer: self.peer,
            tunnel: None,
            id,
            first_seq: 0,
        };
        let serve = super::h2::serve(self.proxy.clone(), server, from, self.shutdown.clone());
        let talk = async move {
            let handshake = hyper::client::conn::http2::Builder::new(
                hyper_util::rt::TokioExecutor::new(),
            )
            .handshake::<_, http_body_util::Full<bytes::Bytes>>(
                hyper_util::rt::TokioIo::new(client),
            );
            let Ok((mut sender, connection)) = handshake.await else {
                return Vec::new();
            };
            let driver = tokio::spawn(async move {
                let _ = connection.await;
            });
            let status = match h2_request(req) {
                Some(request) => match sender.send_request(request).await {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        // The whole body and trailers, so that the recording is complete.
                        let _ = http_body_util::BodyExt::collect(response.into_body()).await;
                        Some(status)
                    }
                    Err(_) => None,
                },
                None => None,
            };
            drop(sender);
            let _ = driver.await;
            status.map_or_else(Vec::new, |s| format!("HTTP/1.1 {s} \r\n").into_bytes())
        };
        let ((), answer) = tokio::join!(serve, talk);
        answer
    }
}

/// `req` as an HTTP/2 request for the proxy's HTTP/2 driver (absolute URI; the proxy names
/// the upstream itself).
fn h2_request(
    req: &ForwardRequest<'_>,
) -> Option<http::Request<http_body_util::Full<bytes::Bytes>>> {
    let authority = req
        .headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case(":authority") || h.name.eq_ignore_ascii_case("host"))
        .map_or_else(|| "localhost".to_string(), |h| h.value_str().into_owned());
    let mut builder = http::Request::builder()
        .method(req.method)
        .version(http::Version::HTTP_2)
        .uri(format!("http://{authority}{}", req.target));
    for h in req.headers {
        if h.name.starts_with(':')
            || REFRAMED.iter().any(|n| h.name.eq_ignore_ascii_case(n))
            || h.name.eq_ignore_ascii_case("host")
        {
            continue;
        }
        builder = builder.header(h.name.as_str(), h.value.as_slice());
    }
    if req
        .headers
        .iter()
        .any(|h| h.name.eq_ignore_ascii_case("te"))
    {
        // gRPC servers require `te: trailers` (the one `te` HTTP/2 allows).
        builder = builder.header(http::header::TE, "trailers");
    }
    builder
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(
            req.body,
        )))
        .ok()
}

/// The request head as the proxy is to read it: the client's headers, reframed.
fn encode(req: &ForwardRequest<'_>) -> BytesMut {
    let mut headers: Vec<Header> = req
        .headers
        .iter()
        .filter(|h| {
            !REFRAMED.iter().any(|n| h.name.eq_ignore_ascii_case(n)) && !h.name.starts_with(':')
        })
        .cloned()
        .collect();
    if !req.body.is_empty() || !matches!(req.method, "GET" | "HEAD" | "DELETE" | "OPTIONS") {
        headers.push(Header::new("Content-Length", req.body.len().to_string()));
    }
    // The proxy names the upstream in Host; an HTTP/2 request may not have had one.
    if !headers.iter().any(|h| h.name.eq_ignore_ascii_case("host")) {
        headers.push(Header::new("Host", "localhost"));
    }
    headers.push(Header::new("Connection", "close"));
    let mut out = BytesMut::new();
    h1_encode::request_head(&mut out, req.method, req.target, &headers);
    out
}

/// A 502 (or the proxy's own error status) whose body says why nothing was kept.
fn failure(answer: &[u8], message: Option<String>) -> Response {
    let status = answer
        .get(9..12)
        .and_then(|s| std::str::from_utf8(s).ok())
        .and_then(|s| s.parse::<u16>().ok())
        .filter(|s| *s >= 400)
        .unwrap_or(502);
    let why = message.unwrap_or_else(|| "the upstream gave no complete answer".into());
    let body = format!("mf: no recorded answer, and the upstream did not give one: {why}\n");
    Response {
        status,
        reason: crate::vocab::reason_phrase(status).into(),
        version: "HTTP/1.1".into(),
        headers: vec![
            Header::new("Content-Type", "text/plain; charset=utf-8"),
            Header::new("Content-Length", body.len().to_string()),
            Header::new("X-Mf-Match", "none"),
        ],
        body: crate::model::Body::full(body.into_bytes()),
        trailers: vec![],
    }
}
