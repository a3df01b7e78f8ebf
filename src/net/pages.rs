//! Web pages served beside a control API: the seam between a listener that knows nothing of
//! recordings (the replay's admin port) and the viewer that renders them (`ui`), which must
//! not import each other. A request comes in as plain data, a whole page goes out.
//!
//! [`serve`] is the small HTTP/1 server of `mf ui`, with the same [`super::guard`] as the
//! admin API.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use super::guard;
use super::Shutdown;

/// One page request: the method, the path and the raw query string (without `?`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PageRequest {
    pub method: String,
    pub path: String,
    pub query: String,
}

/// A whole answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PageResponse {
    pub status: u16,
    pub content_type: String,
    pub body: Vec<u8>,
}

impl PageResponse {
    /// A 200 of `content_type`.
    pub fn ok(content_type: &str, body: impl Into<Vec<u8>>) -> PageResponse {
        PageResponse {
            status: 200,
            content_type: content_type.to_string(),
            body: body.into(),
        }
    }

    /// A plain-text answer with `status`.
    pub fn text(status: u16, message: impl Into<String>) -> PageResponse {
        PageResponse {
            status,
            content_type: "text/plain; charset=utf-8".into(),
            body: message.into().into_bytes(),
        }
    }
}

/// Whatever answers page requests. Reading a recording blocks, so callers run it on a
/// blocking thread.
pub trait Pages: Send + Sync {
    /// The answer to `req`; a path the pages do not know is a 404 from here too.
    fn page(&self, req: &PageRequest) -> PageResponse;
}

/// `resp` as a hyper response, with the headers every page gets: no caching of recorded
/// data, no framing by other sites, no sniffing of types, scripts only from this origin.
pub fn to_http(resp: PageResponse) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(resp.body)));
    *r.status_mut() = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::OK);
    let h = r.headers_mut();
    let pairs = [
        ("content-type", resp.content_type.as_str()),
        ("cache-control", "no-store"),
        ("x-frame-options", "DENY"),
        ("x-content-type-options", "nosniff"),
        (
            "content-security-policy",
            "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; script-src 'self'; frame-ancestors 'none'",
        ),
    ];
    for (k, v) in pairs {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            h.insert(k, v);
        }
    }
    r
}

/// Answers `req` with `pages` on a blocking thread (the pages read SQLite).
pub async fn answer(pages: Arc<dyn Pages>, req: PageRequest) -> Response<Full<Bytes>> {
    match tokio::task::spawn_blocking(move || pages.page(&req)).await {
        Ok(resp) => to_http(resp),
        Err(e) => to_http(PageResponse::text(500, format!("the page failed: {e}"))),
    }
}

/// Serves `pages` on `listener` until `shutdown`: `mf ui`. Only `GET` is answered; the guard
/// runs first (no token: the listener is on loopback).
pub async fn serve(listener: tokio::net::TcpListener, pages: Arc<dyn Pages>, shutdown: Shutdown) {
    let port = listener.local_addr().map_or(0, |a| a.port());
    super::accept_loop(
        listener,
        shutdown,
        Duration::from_secs(1),
        move |stream, _peer, mut shutdown| {
            let pages = pages.clone();
            async move {
                let service = hyper::service::service_fn(move |req: http::Request<_>| {
                    let pages = pages.clone();
                    async move {
                        let (method, path) = (req.method().clone(), req.uri().path().to_string());
                        let query = req.uri().query().map(String::from);
                        let refused = guard::refusal(
                            &method,
                            &path,
                            query.as_deref(),
                            req.headers(),
                            port,
                            None,
                        );
                        let answer = match refused {
                            Some(r) => to_http(PageResponse::text(r.status, r.message)),
                            None if method != Method::GET && method != Method::HEAD => {
                                to_http(PageResponse::text(405, "the viewer only reads"))
                            }
                            None => {
                                let req = PageRequest {
                                    method: method.to_string(),
                                    path,
                                    query: query.unwrap_or_default(),
                                };
                                answer(pages, req).await
                            }
                        };
                        Ok::<_, Infallible>(answer)
                    }
                });
                let conn = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service);
                tokio::pin!(conn);
                tokio::select! {
                    _ = conn.as_mut() => {}
                    _ = shutdown.wait() => conn.as_mut().graceful_shutdown(),
                }
            }
        },
    )
    .await;
}
