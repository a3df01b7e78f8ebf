//! HTTP/2 requests other than gRPC calls: how HTTP/2 reads a request into a
//! [`RequestView`] and writes the pipeline's answer (recorded or fixture response, near-miss
//! 404, faults as RST_STREAM or a status with the recorded body).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::body::{empty, failing, paced, text, ReplayBody};
use super::faults::Fault;
use super::latency::Pacing;
use super::pipeline::{report_text, Found, Replay, RequestView};
use super::render::{failure_response, fault_body};
use super::timed::{h2_body, TimedBody};
use crate::decode::h1::{response_framing, Framing};
use crate::model::Protocol;
use crate::vocab::{header_map, headers_from_map};

/// Answers one HTTP/2 request that is not a gRPC call.
pub(crate) async fn answer(replay: Arc<Replay>, req: Request<Incoming>) -> Response<ReplayBody> {
    replay.received();
    let method = req.method().to_string();
    let headers = headers_from_map(req.headers());
    let authority = req.uri().authority().map(|a| a.to_string()).or_else(|| {
        req.headers()
            .get(http::header::HOST)
            .and_then(|h| h.to_str().ok())
            .map(str::to_string)
    });
    let target = req
        .uri()
        .path_and_query()
        .map_or("/".to_string(), |p| p.as_str().to_string());
    let body = match Limited::new(req.into_body(), replay.config().max_request_body)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            replay.refused();
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("mf: request body not read: {e}\n"),
            );
        }
    };
    let view = RequestView {
        protocol: Protocol::H2,
        method: &method,
        target: &target,
        authority: authority.as_deref(),
        headers: &headers,
        body: &body,
        grpc_method: None,
        grpc_first: None,
    };
    let decision = replay.decide_or_fetch(&view).await;
    let plan = &decision.plan;
    if !plan.first_byte.is_zero() {
        tokio::time::sleep(plan.first_byte).await;
    }
    let recorded = || match &decision.found {
        Found::Recorded(r) => {
            let ex = &r.exchange;
            let timed = r.rendered.timed.as_deref();
            match &ex.response {
                Some(r) => respond(&method, r, plan.pacing, timed),
                None => respond(&method, &failure_response(ex), plan.pacing, None),
            }
        }
        Found::Sourced(r) => respond(&method, r, plan.pacing, None),
        Found::Missing(report) => not_found(&method, report),
    };
    let (response, status) = match &plan.fault {
        Some(Fault::Status { code, body }) => {
            let (data, content_type) =
                fault_body(body.as_deref(), decision.recorded().map(|r| &r.rendered));
            let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let len = data.len();
            // RFC 9110 §9.3.2: a response to HEAD has no body (its length is still announced).
            let body = if method == "HEAD" {
                empty()
            } else {
                paced(data, plan.pacing, None)
            };
            let mut r = Response::new(body);
            *r.status_mut() = status;
            let h = r.headers_mut();
            if let Ok(v) = HeaderValue::from_bytes(&content_type) {
                h.insert(http::header::CONTENT_TYPE, v);
            }
            h.insert(http::header::CONTENT_LENGTH, HeaderValue::from(len));
            h.insert("x-mf-fault", HeaderValue::from_static("status"));
            (r, *code)
        }
        Some(Fault::Hang) => {
            replay.finish(view.path(), &decision, 0);
            // hyper drops this future when the client resets the stream or leaves.
            std::future::pending::<()>().await;
            unreachable_answer()
        }
        Some(Fault::Reset) => {
            let mut r = Response::new(failing(None));
            *r.status_mut() = StatusCode::OK;
            (r, 0)
        }
        Some(Fault::CloseMidBody { after_bytes }) => {
            // The recorded head and part of the body, then RST_STREAM.
            let (mut r, _) = recorded();
            let data = match decision.recorded() {
                Some(r) => r.rendered.raw_body.clone(),
                None => Bytes::new(),
            };
            let n = after_bytes
                .map_or(data.len() / 2, |n| n as usize)
                .min(data.len().saturating_sub(1));
            *r.body_mut() = failing((n > 0).then(|| data.slice(..n)));
            (r, 0)
        }
        _ => recorded(),
    };
    replay.finish(view.path(), &decision, status);
    response
}

/// What a never-answering stream would have sent; never reached (the future pends).
fn unreachable_answer() -> (Response<ReplayBody>, u16) {
    (text(StatusCode::GATEWAY_TIMEOUT, String::new()), 0)
}

/// `resp` as an HTTP/2 answer to a `method` request, its body sent at `pacing` (in the
/// recorded chunks of `timed` for [`Pacing::Chunks`]). A `content-length` that disagrees
/// with the stored body is corrected — except where the response has no body by definition
/// (HEAD, 204, 304), whose `content-length` describes the representation and stays.
fn respond(
    method: &str,
    resp: &crate::model::Response,
    pacing: Pacing,
    timed: Option<&TimedBody>,
) -> (Response<ReplayBody>, u16) {
    let bodiless = matches!(
        response_framing(method, resp.status, &resp.headers),
        Framing::Empty
    );
    let mut r = Response::new(if bodiless {
        empty()
    } else {
        let trailers = (!resp.trailers.is_empty()).then(|| header_map(&resp.trailers, None));
        match (pacing, timed) {
            (Pacing::Chunks(scale), Some(t)) => h2_body(resp.body.data.clone(), t, scale, trailers),
            _ => paced(resp.body.data.clone(), pacing, trailers),
        }
    });
    *r.status_mut() = StatusCode::from_u16(resp.status).unwrap_or(StatusCode::BAD_GATEWAY);
    *r.headers_mut() = header_map(&resp.headers, (!bodiless).then_some(resp.body.data.len()));
    (r, resp.status)
}

/// The near-miss report as a 404; to `HEAD`, its headers only (RFC 9110 §9.3.2: a DATA
/// frame on a HEAD stream is a protocol error that clients answer with a reset).
fn not_found(method: &str, report: &serde_json::Value) -> (Response<ReplayBody>, u16) {
    let report = report_text(report);
    let mut r = if method == "HEAD" {
        let mut r = text(StatusCode::NOT_FOUND, String::new());
        *r.body_mut() = empty();
        r.headers_mut().insert(
            http::header::CONTENT_LENGTH,
            HeaderValue::from(report.len()),
        );
        r
    } else {
        text(StatusCode::NOT_FOUND, report)
    };
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert("x-mf-match", HeaderValue::from_static("none"));
    (r, 404)
}
