//! What every admin listener (the replay's control API, the recording proxy's `/metrics`)
//! refuses before anything else, and the proxy's small `/metrics` server.
//!
//! An admin port on loopback is still reachable from every web page the user opens: a page
//! can POST to `http://127.0.0.1:PORT` with a "simple" content type (no preflight), and DNS
//! rebinding lets a page read answers under its own host name. So: a request whose `Origin`
//! is not the admin's own is refused; without a token, the `Host` must be an IP literal or
//! `localhost` (a rebinding page's host is a DNS name); with one, every request needs
//! `Authorization: Bearer TOKEN`; and every mutation must say `Content-Type:
//! application/json` (or YAML for rules), which no page can send cross-site without a
//! preflight these servers never answer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper_util::rt::TokioIo;

use super::metrics::Metrics;
use super::Shutdown;

/// Why a request must not reach an admin listener (see the module header): the status and
/// message to answer with; `None` lets it through.
pub fn refusal<B>(
    req: &Request<B>,
    port: u16,
    token: Option<&str>,
) -> Option<(StatusCode, String)> {
    let header = |name: http::header::HeaderName| {
        req.headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
    };
    let host = header(http::header::HOST).unwrap_or_default();
    if let Some(origin) = header(http::header::ORIGIN) {
        let own = ["http://", "https://"]
            .iter()
            .any(|scheme| origin.eq_ignore_ascii_case(&format!("{scheme}{host}")));
        if !own {
            return Some((
                StatusCode::FORBIDDEN,
                format!("requests from origin {origin} are not accepted"),
            ));
        }
    }
    if let Some(token) = token {
        let given = header(http::header::AUTHORIZATION);
        let given = given
            .as_deref()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        if !given.is_some_and(|g| constant_time_eq(g.as_bytes(), token.as_bytes())) {
            return Some((
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token".into(),
            ));
        }
    } else if !host_is_local(&host, port) {
        return Some((StatusCode::FORBIDDEN, format!(
                "Host {host:?} is not this admin address (use 127.0.0.1:{port}, or set --admin-token)"
            )));
    }
    let mutation = matches!(*req.method(), Method::POST | Method::PUT | Method::DELETE);
    if mutation {
        let ct = header(http::header::CONTENT_TYPE)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let essence = ct.split(';').next().unwrap_or("").trim().to_string();
        let yaml = req.uri().path().trim_end_matches('/') == "/api/rules"
            && matches!(
                essence.as_str(),
                "application/yaml" | "application/x-yaml" | "text/yaml"
            );
        if essence != "application/json" && !yaml {
            return Some((
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "changes need Content-Type: application/json".into(),
            ));
        }
    }
    None
}

/// True when `host` (a Host header) names this machine by an IP literal or `localhost`, with
/// the admin's port (or none, which means the scheme's default and cannot be ours anyway
/// unless the admin listens there).
fn host_is_local(host: &str, port: u16) -> bool {
    let (name, given_port) = match host.rsplit_once(':') {
        Some((n, p)) if !n.ends_with(']') || host.starts_with('[') => (n, p.parse::<u16>().ok()),
        _ => (host, None),
    };
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let named_ok =
        name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok();
    named_ok && given_port.unwrap_or(80) == port
}

/// Compares two byte strings in time that depends only on their lengths, so the token cannot
/// be guessed byte by byte from response times.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
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

#[cfg(test)]
mod tests {
    use super::*;

    fn request(method: Method, path: &str, headers: &[(&str, &str)]) -> Request<()> {
        let mut b = Request::builder().method(method).uri(path);
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(()).unwrap()
    }

    #[test]
    fn cross_site_and_rebinding_requests_are_refused() {
        let status = |r: &Request<()>, token: Option<&str>| {
            refusal(r, 9901, token).map_or(200, |(s, _)| s.as_u16())
        };
        let local = [("host", "127.0.0.1:9901")];
        assert_eq!(
            status(&request(Method::GET, "/api/state", &local), None),
            200
        );
        assert_eq!(
            status(
                &request(Method::GET, "/metrics", &[("host", "localhost:9901")]),
                None
            ),
            200
        );
        assert_eq!(
            status(
                &request(Method::GET, "/metrics", &[("host", "[::1]:9901")]),
                None
            ),
            200
        );
        // DNS rebinding: the page's own name in Host.
        assert_eq!(
            status(
                &request(Method::GET, "/api/state", &[("host", "evil.example:9901")]),
                None
            ),
            403
        );
        // A cross-site page: its Origin is not ours.
        let cross = [
            ("host", "127.0.0.1:9901"),
            ("origin", "http://evil.example"),
            ("content-type", "application/json"),
        ];
        assert_eq!(
            status(&request(Method::POST, "/api/mode", &cross), None),
            403
        );
        // A simple (preflight-free) content type is no mutation.
        let plain = [("host", "127.0.0.1:9901"), ("content-type", "text/plain")];
        assert_eq!(
            status(&request(Method::POST, "/api/mode", &plain), None),
            415
        );
        assert_eq!(
            status(&request(Method::POST, "/api/reset", &local), None),
            415
        );
        let json = [
            ("host", "127.0.0.1:9901"),
            ("content-type", "application/json"),
        ];
        assert_eq!(status(&request(Method::PUT, "/api/mode", &json), None), 200);
        let yaml = [
            ("host", "127.0.0.1:9901"),
            ("content-type", "application/yaml"),
        ];
        assert_eq!(
            status(&request(Method::PUT, "/api/rules", &yaml), None),
            200
        );
        assert_eq!(status(&request(Method::PUT, "/api/mode", &yaml), None), 415);
        let same = [
            ("host", "127.0.0.1:9901"),
            ("origin", "http://127.0.0.1:9901"),
            ("content-type", "application/json"),
        ];
        assert_eq!(
            status(&request(Method::POST, "/api/mode", &same), None),
            200
        );
        // With a token, any host name may be used, but the token is checked.
        let named = [
            ("host", "mf-admin.internal:9901"),
            ("authorization", "Bearer s3cret"),
        ];
        assert_eq!(
            status(&request(Method::GET, "/api/state", &named), Some("s3cret")),
            200
        );
        let wrong = [
            ("host", "127.0.0.1:9901"),
            ("authorization", "Bearer s3cre7"),
        ];
        assert_eq!(
            status(&request(Method::GET, "/api/state", &wrong), Some("s3cret")),
            401
        );
        assert!(!constant_time_eq(b"a", b"ab"));
        assert!(constant_time_eq(b"s3cret", b"s3cret"));
    }
}
