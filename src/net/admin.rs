//! The recording proxy's small `/metrics` server, behind the checks every admin listener
//! runs first ([`super::guard`]: Origin, Host, token, content type).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use super::metrics::Metrics;
use super::Shutdown;

/// Why a request must not reach an admin listener (the rules are [`super::guard`]'s): the
/// status and message to answer with; `None` lets it through.
pub fn refusal<B>(
    req: &Request<B>,
    port: u16,
    token: Option<&str>,
) -> Option<(StatusCode, String)> {
    let r = super::guard::refusal(
        req.method(),
        req.uri().path(),
        req.uri().query(),
        req.headers(),
        port,
        token,
    )?;
    Some((
        StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN),
        r.message,
    ))
}

/// The Prometheus text format's content type.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Serves `GET /metrics` of `metrics` on `listener` until `shutdown`, behind [`refusal`]:
/// the recording proxy's admin listener.
pub async fn serve_metrics(
    listener: tokio::net::TcpListener,
    metrics: Arc<Metrics>,
    token: Option<String>,
    shutdown: Shutdown,
) {
    let token: Arc<Option<String>> = Arc::new(token);
    let port = listener.local_addr().map_or(0, |a| a.port());
    super::accept_loop(
        listener,
        shutdown,
        Duration::from_secs(1),
        move |stream, _peer, mut shutdown| {
            let metrics = metrics.clone();
            let token = token.clone();
            async move {
                let service = hyper::service::service_fn(move |req| {
                    let answer = match refusal(&req, port, token.as_deref()) {
                        Some((status, message)) => text(status, "text/plain", message + "\n"),
                        None => match (req.method(), req.uri().path()) {
                            (&Method::GET, "/metrics") => {
                                text(StatusCode::OK, METRICS_CONTENT_TYPE, metrics.render())
                            }
                            (_, "/metrics") => text(
                                StatusCode::METHOD_NOT_ALLOWED,
                                "text/plain",
                                "method not allowed\n".into(),
                            ),
                            (_, path) => text(
                                StatusCode::NOT_FOUND,
                                "text/plain",
                                format!("no admin endpoint {path} (try /metrics)\n"),
                            ),
                        },
                    };
                    std::future::ready(Ok::<_, Infallible>(answer))
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

fn text(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    r
}
