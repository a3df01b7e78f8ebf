//! The admin listener: a small JSON control API and `GET /metrics`, on its own port.
//!
//! | method | path           | body / answer                                              |
//! |--------|----------------|------------------------------------------------------------|
//! | GET    | `/metrics`     | Prometheus text format                                     |
//! | GET    | `/api/state`   | seed and every live setting                                |
//! | GET/PUT| `/api/mode`    | scenario: `{"mode":"error","error_rate":0.3,...}`          |
//! | GET/PUT| `/api/latency` | `{"mode":"fixed:50ms","jitter":"5ms","bandwidth":1000}`    |
//! | GET/PUT| `/api/rules`   | list of rules (JSON, or YAML as in the config file)        |
//! | POST   | `/api/preset`  | `{"name":"network-issues"}`                                |
//! | POST   | `/api/reset`   | sequence counters and rule counters start over             |
//! | GET    | `/api/stats`   | request, fault and rule counts                             |
//!
//! hyper is fine here (unlike the replay port) because nobody cares about header case on a
//! control API. With a token set, every request needs `Authorization: Bearer TOKEN`.
//!
//! What is refused before anything else is decided in `net::admin` (shared with the recording
//! proxy's `/metrics`), for these reasons.
//!
//! A control API on loopback is still reachable from every web page the user opens: a page
//! can POST to `http://127.0.0.1:PORT` with a "simple" content type (no preflight), and DNS
//! rebinding lets a page read answers under its own host name. So, before anything else:
//! a request whose `Origin` is not the admin's own is refused; without a token, the `Host`
//! must be an IP literal or `localhost` (a rebinding page's host is a DNS name); and every
//! mutation must say `Content-Type: application/json` (or YAML for rules), which no page can
//! send cross-site without a preflight this server never answers.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::latency::LatencySpec;
use super::pipeline::Replay;
use super::rules::Rule;
use super::scenario::{self, Mode, Scenario};
use crate::net::Shutdown;

/// Control requests are small; anything larger is a mistake.
const MAX_BODY: usize = 1 << 20;

/// Serves the admin API for `replay` on `listener` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    replay: Arc<Replay>,
    token: Option<String>,
    shutdown: Shutdown,
) {
    let token: Arc<Option<String>> = Arc::new(token);
    let port = listener.local_addr().map_or(0, |a| a.port());
    crate::net::accept_loop(
        listener,
        shutdown,
        Duration::from_secs(1),
        move |stream, _peer, mut shutdown| {
            let replay = replay.clone();
            let token = token.clone();
            async move {
                let service = hyper::service::service_fn(move |req| {
                    let replay = replay.clone();
                    let token = token.clone();
                    async move {
                        let answer = match refusal(&req, port, token.as_deref()) {
                            Some(refused) => refused,
                            None => handle(&replay, req).await,
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

fn respond(
    status: StatusCode,
    content_type: &str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body.into()));
    *r.status_mut() = status;
    if let Ok(v) = http::HeaderValue::from_str(content_type) {
        r.headers_mut().insert(http::header::CONTENT_TYPE, v);
    }
    r
}

fn json(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut text = serde_json::to_string_pretty(value).unwrap_or_default();
    text.push('\n');
    respond(status, "application/json", text)
}

fn error(status: StatusCode, message: impl std::fmt::Display) -> Response<Full<Bytes>> {
    json(status, &serde_json::json!({ "error": message.to_string() }))
}

fn to_json<T: serde::Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or(serde_json::Value::Null)
}

/// Why a request must not reach the control API (see the module header), as the answer to
/// send; `None` lets it through. The rules are the admin listeners' shared ones.
fn refusal<B>(req: &Request<B>, port: u16, token: Option<&str>) -> Option<Response<Full<Bytes>>> {
    crate::net::admin::refusal(req, port, token).map(|(status, message)| error(status, message))
}

async fn handle(replay: &Replay, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("reading the request body: {e}"),
            )
        }
    };
    let planner = replay.planner();
    match (method, path.trim_end_matches('/')) {
        (Method::GET, "/metrics") => respond(
            StatusCode::OK,
            "text/plain; version=0.0.4; charset=utf-8",
            replay.metrics().render(),
        ),
        (Method::GET, "/api/state" | "") => json(
            StatusCode::OK,
            &serde_json::json!({ "seed": planner.seed(), "settings": to_json(&planner.settings()) }),
        ),
        (Method::GET, "/api/mode") => json(StatusCode::OK, &to_json(&planner.settings().scenario)),
        (Method::PUT | Method::POST, "/api/mode") => match scenario_from_json(&body) {
            Ok(s) => {
                tracing::info!(mode = ?s.mode, "mode changed through the admin API");
                planner.set_scenario(s.clone());
                json(StatusCode::OK, &to_json(&s))
            }
            Err(e) => error(StatusCode::BAD_REQUEST, e),
        },
        (Method::GET, "/api/latency") => {
            json(StatusCode::OK, &to_json(&planner.settings().latency))
        }
        (Method::PUT | Method::POST, "/api/latency") => {
            match serde_json::from_slice::<LatencySpec>(&body) {
                Ok(l) => {
                    planner.set_latency(l.clone());
                    json(StatusCode::OK, &to_json(&l))
                }
                Err(e) => error(StatusCode::BAD_REQUEST, format!("bad latency: {e}")),
            }
        }
        (Method::GET, "/api/rules") => json(StatusCode::OK, &to_json(&planner.settings().rules)),
        (Method::PUT | Method::POST, "/api/rules") => {
            // YAML is a superset of JSON: one parser takes both.
            let rules = std::str::from_utf8(&body)
                .map_err(|e| e.to_string())
                .and_then(|t| {
                    super::rules::from_yaml::<Vec<Rule>>(t).map_err(|e| format!("bad rules: {e}"))
                });
            match rules.map(|r| (planner.set_rules(r.clone()), r)) {
                Ok((Ok(()), r)) => json(StatusCode::OK, &to_json(&r)),
                Ok((Err(e), _)) => error(StatusCode::BAD_REQUEST, e),
                Err(e) => error(StatusCode::BAD_REQUEST, e),
            }
        }
        (Method::POST | Method::PUT, "/api/preset") => {
            let name = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("name").and_then(|n| n.as_str()).map(String::from));
            let Some(name) = name else {
                return error(StatusCode::BAD_REQUEST, "expected {\"name\": \"PRESET\"}");
            };
            match planner.apply_preset(&name) {
                Ok(s) => json(StatusCode::OK, &to_json(&s)),
                Err(e) => error(StatusCode::NOT_FOUND, e),
            }
        }
        (Method::POST, "/api/reset") => {
            replay.matcher().reset();
            planner.reset();
            json(StatusCode::OK, &serde_json::json!({ "reset": true }))
        }
        (Method::GET, "/api/stats") => {
            let s = &replay.stats;
            json(
                StatusCode::OK,
                &serde_json::json!({
                    "requests": s.requests.load(Ordering::Relaxed),
                    "matched": s.matched.load(Ordering::Relaxed),
                    "unmatched": s.unmatched.load(Ordering::Relaxed),
                    "bad_requests": s.bad_requests.load(Ordering::Relaxed),
                    "faults": to_json(&replay.metrics().fault_counts()),
                    "rules": to_json(&planner.rule_stats()),
                }),
            )
        }
        (_, p) if p == "/metrics" || p.starts_with("/api/") => {
            error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
        }
        _ => error(StatusCode::NOT_FOUND, format!("no admin endpoint {path}")),
    }
}

/// A scenario from JSON: the knobs given, the mode's defaults for the rest.
fn scenario_from_json(body: &[u8]) -> Result<Scenario, String> {
    let given: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| format!("expected a JSON object: {e}"))?;
    let mode: Mode = match given.get("mode") {
        Some(m) => serde_json::from_value(m.clone()).map_err(|_| {
            format!("unknown mode {m} (expected healthy, degraded, error or chaos)")
        })?,
        None => return Err("missing \"mode\"".into()),
    };
    let mut merged = match to_json(&scenario::for_mode(mode)) {
        serde_json::Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    merged.extend(given);
    serde_json::from_value(serde_json::Value::Object(merged))
        .map_err(|e| format!("bad scenario: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scenario_knobs_default_to_the_mode() {
        let s = scenario_from_json(br#"{"mode":"error","error_status":[418]}"#).unwrap();
        assert_eq!(s.mode, Mode::Error);
        assert_eq!(s.error_rate, scenario::for_mode(Mode::Error).error_rate);
        assert_eq!(s.error_status, vec![418]);
        assert!(scenario_from_json(br#"{"mode":"calm"}"#).is_err());
        assert!(scenario_from_json(br#"{"error_rate":1}"#).is_err());
        assert!(scenario_from_json(br#"{"mode":"error","eror_rate":1}"#).is_err());
    }
}
