//! HTTP/2 for the recording proxy (prior knowledge, `h2` chosen by ALPN on a TLS listener
//! or inside an intercepted CONNECT tunnel), with gRPC recorded message by message.
//!
//! Unlike HTTP/1, HTTP/2 header names are lowercase on the wire, so hyper loses nothing a
//! recording needs and both sides are served by hyper. Bodies are streamed frame by frame
//! through [`Tee`], which forwards each frame as soon as it arrives — a bidirectional gRPC
//! call stays interactive — and shows it to the stream's [`Recording`] on the way. The
//! recording keeps at most `max_body` bytes per direction; gRPC messages are split by
//! `decode::grpc`, which holds only the message being assembled.
//!
//! Files: this one serves the client connection and forwards each stream; `link` decides
//! which HTTP version the upstream gets and holds its connections; `tee` is the recording
//! of a stream in flight.

mod link;
mod tee;

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::clock::now_ns;
use super::recorder::{Limits, Recorder};
use super::setup::{Proxy, Upstream};
use crate::model::{Direction, ErrorKind, ExchangeError, HeaderList, Protocol};
use crate::net::door::Io;
use crate::net::Shutdown;
use crate::vocab::headers_from_map;
use link::{Links, Sender};
use tee::{Recording, Tee};

type ProxyBody = UnsyncBoxBody<Bytes, hyper::Error>;

/// Where an HTTP/2 client connection came from, as far as the proxy cares.
pub(crate) struct Client {
    pub peer: std::net::SocketAddr,
    /// The authority of the intercepted CONNECT tunnel it arrived through.
    pub tunnel: Option<String>,
    /// The connection's number, and the position of its first exchange (a tunnel's
    /// requests continue the numbering of the connection that sent the CONNECT).
    pub id: u64,
    pub first_seq: u32,
}

/// Serves one client connection that the front door found speaking HTTP/2.
pub(crate) async fn serve<S: Io>(
    proxy: Arc<Proxy>,
    client: S,
    from: Client,
    mut shutdown: Shutdown,
) {
    let Client {
        peer,
        tunnel,
        id,
        first_seq,
    } = from;
    // Inside an intercepted tunnel, requests go to the CONNECT's host over TLS (its
    // authority was checked before interception was asked for).
    let target = match &tunnel {
        Some(authority) => Upstream::from_connect(authority).ok(),
        None => proxy.config.upstream.clone(),
    };
    let links = Arc::new(Links::new(target));
    let seq = Arc::new(std::sync::atomic::AtomicU32::new(first_seq));
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let proxy = proxy.clone();
        let links = links.clone();
        let seq = seq.fetch_add(1, Ordering::Relaxed);
        async move { Ok::<_, std::convert::Infallible>(handle(proxy, links, req, peer, id, seq).await) }
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
    links: Arc<Links>,
    req: Request<Incoming>,
    peer: std::net::SocketAddr,
    id: u64,
    seq: u32,
) -> Response<ProxyBody> {
    let config = &proxy.config;
    let started = now_ns();
    let (parts, body) = req.into_parts();
    let method = parts.method.clone();
    let headers = headers_from_map(&parts.headers);
    let target = parts
        .uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    // Like the HTTP/1 path: a reverse proxy records the upstream it forwarded to, so that
    // replay sees one host however clients addressed the proxy; a tunnel records its host.
    let client_authority = parts
        .uri
        .authority()
        .map(|a| a.to_string())
        .or_else(|| headers.header_str("host"));
    let authority = config
        .upstream
        .as_ref()
        .or(links.target.as_ref())
        .map(|u| u.authority.clone())
        .or_else(|| client_authority.clone())
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
        ex.client_addr = Some(compact_str::format_compact!("{peer}"));
        ex.scheme = links.target.as_ref().map_or("http", |u| u.scheme()).into();
        ex.authority = authority.into();
    }
    recorder.request_head(
        method.as_str().into(),
        target.as_str().into(),
        "HTTP/2".into(),
        headers,
    );
    let rec = Arc::new(Mutex::new(Recording {
        rec: Some(recorder),
        answered: false,
        proxy: proxy.clone(),
    }));

    let sender = match links.sender(&proxy).await {
        Ok(s) => s,
        Err(e) => {
            proxy.upstream_failed();
            tracing::warn!(conn = id, error = %e.message, "upstream unavailable");
            return fail(&rec, &method, e.status, e.kind, e.message);
        }
    };
    if let Ok(mut r) = rec.lock() {
        if let Some(x) = r.rec.as_mut() {
            x.exchange_mut().server_addr = links.addr().map(Into::into);
        }
    }
    let Some(up) = links.target.as_ref() else {
        return fail(&rec, &method, 502, ErrorKind::Other, "no upstream".into());
    };
    let path = format!("{}{}", up.base_path, target);
    let mut builder = Request::builder().method(method.clone());
    let forwarded = match &sender {
        Sender::H2(_) => {
            builder = builder
                .uri(format!("{}://{}{}", up.scheme(), up.authority, path))
                .version(http::Version::HTTP_2);
            let mut h = HeaderMap::with_capacity(parts.headers.len() + 1);
            for (name, value) in parts.headers.iter() {
                if name == http::header::HOST && !config.keep_host {
                    continue;
                }
                h.append(name.clone(), value.clone());
            }
            h
        }
        Sender::H1(_) => {
            builder = builder.uri(path).version(http::Version::HTTP_11);
            // A reverse proxy names its upstream unless told to keep the client's Host; a
            // tunnel keeps what the client addressed.
            let host = match (&config.upstream, config.keep_host, &client_authority) {
                (Some(_), false, _) | (_, _, None) => up.authority.clone(),
                (_, _, Some(client)) => client.clone(),
            };
            link::h1_request_headers(&parts.headers, &host)
        }
    };
    if let Some(h) = builder.headers_mut() {
        *h = forwarded;
        if config.x_forwarded_for {
            if let Ok(v) = http::HeaderValue::from_str(&peer.ip().to_string()) {
                h.append("x-forwarded-for", v);
            }
        }
    }
    let req_tee = Tee::new(body, rec.clone(), Direction::ClientToServer);
    let up_req = match builder.body(req_tee) {
        Ok(r) => r,
        Err(e) => {
            return fail(
                &rec,
                &method,
                400,
                ErrorKind::MalformedRequest,
                format!("request cannot be forwarded: {e}"),
            )
        }
    };
    let sent = match sender {
        Sender::H2(mut s) => {
            tokio::time::timeout(config.response_timeout, s.send_request(up_req)).await
        }
        Sender::H1(mut s) => {
            let r = tokio::time::timeout(config.response_timeout, s.send_request(up_req)).await;
            links.give_back(s);
            r
        }
    };
    let resp = match sent {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            proxy.upstream_failed();
            return fail(
                &rec,
                &method,
                502,
                ErrorKind::UpstreamReset,
                format!("upstream failed the stream: {}", error_chain(&e)),
            );
        }
        Err(_) => {
            proxy.upstream_failed();
            return fail(
                &rec,
                &method,
                504,
                ErrorKind::UpstreamTimeout,
                format!(
                    "upstream sent no response within {:?}",
                    config.response_timeout
                ),
            );
        }
    };
    let (mut rparts, rbody) = resp.into_parts();
    // The recording keeps what each side spoke: the request's version is the client's,
    // the response's the upstream's (the `upstream_version` tag says so when they differ).
    let upstream_version = match rparts.version {
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    if rparts.version != http::Version::HTTP_2 {
        link::strip_connection_fields(&mut rparts.headers);
        rparts.version = http::Version::HTTP_2;
    }
    if let Ok(mut r) = rec.lock() {
        r.answered = true;
        if let Some(x) = r.rec.as_mut() {
            if upstream_version != "HTTP/2" {
                x.exchange_mut()
                    .tags
                    .insert("upstream_version".into(), upstream_version.into());
            }
            x.response_head(
                now_ns(),
                rparts.status.as_u16(),
                rparts.status.canonical_reason().unwrap_or("").into(),
                upstream_version.into(),
                headers_from_map(&rparts.headers),
            );
        }
    }
    let resp_tee = Tee::new(rbody, rec, Direction::ServerToClient);
    Response::from_parts(rparts, UnsyncBoxBody::new(resp_tee))
}

/// Records a failed exchange and answers the client with a plain-text error — without a
/// body when the request was a HEAD (RFC 9110 §9.3.2).
fn fail(
    rec: &Arc<Mutex<Recording>>,
    method: &http::Method,
    status: u16,
    kind: ErrorKind,
    message: String,
) -> Response<ProxyBody> {
    if let Ok(mut r) = rec.lock() {
        r.fail(ExchangeError::new(kind, message.clone()));
        r.finish();
    }
    let text = if method == http::Method::HEAD {
        Bytes::new()
    } else {
        Bytes::from(format!("mf: {message}\n"))
    };
    let body = Full::new(text).map_err(|never| match never {});
    let mut resp = Response::new(UnsyncBoxBody::new(body));
    *resp.status_mut() =
        http::StatusCode::from_u16(status).unwrap_or(http::StatusCode::BAD_GATEWAY);
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

pub(super) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}
