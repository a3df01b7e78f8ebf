//! HTTP/2 (prior knowledge) for the replay server, through hyper's http2 server.
//!
//! gRPC calls (`content-type: application/grpc*`) go to [`super::grpc`]; everything else is
//! read whole and matched with the same [`super::matcher::Matcher`] rules as HTTP/1.1.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body::{Body as HttpBody, Frame};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::mpsc;

use super::matcher::{Incoming as MatchIncoming, MatchResult};
use super::server::Replay;
use crate::model::Header;
use crate::net::Shutdown;

/// Errors end the stream with RST_STREAM: how a recorded upstream reset is replayed.
pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
pub(crate) type ReplayBody = UnsyncBoxBody<Bytes, BoxError>;

/// Serves one connection that opened with the HTTP/2 preface.
pub(crate) async fn serve<S>(
    replay: Arc<Replay>,
    stream: S,
    peer: SocketAddr,
    mut shutdown: Shutdown,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let replay = replay.clone();
        async move { Ok::<_, std::convert::Infallible>(handle(replay, req).await) }
    });
    let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(peer = %peer, error = %e, "http/2 connection ended with an error");
            }
        }
        _ = shutdown.wait() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

async fn handle(replay: Arc<Replay>, req: Request<Incoming>) -> Response<ReplayBody> {
    replay.stats.requests.fetch_add(1, Ordering::Relaxed);
    let grpc = req
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"));
    if grpc {
        return super::grpc::serve_call(replay, req).await;
    }
    let method = req.method().to_string();
    let req_headers = to_model_headers(req.headers());
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
    let body = match Limited::new(req.into_body(), replay.config.max_request_body)
        .collect()
        .await
    {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            replay.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("mf: request body not read: {e}\n"),
            );
        }
    };
    let incoming = MatchIncoming {
        method: &method,
        target: &target,
        body: &body,
    };
    match replay.matcher.find_at(authority.as_deref(), &incoming) {
        MatchResult::Found { index, .. } => {
            replay.stats.matched.fetch_add(1, Ordering::Relaxed);
            // Issue-5 realism: the planner decides delay and faults, as for HTTP/1.
            let path = target.split('?').next().unwrap_or(&target);
            let info = super::rules::RequestInfo {
                protocol: crate::model::Protocol::H2,
                method: &method,
                path,
                grpc_method: None,
                headers: &req_headers,
            };
            let plan = replay.plan_for(&info, Some(index));
            if !plan.first_byte.is_zero() {
                tokio::time::sleep(plan.first_byte).await;
            }
            match &plan.fault {
                Some(super::faults::Fault::Status { code, body }) => {
                    let status =
                        StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                    return text(
                        status,
                        body.clone()
                            .unwrap_or_else(|| "mf: injected fault\n".into()),
                    );
                }
                Some(super::faults::Fault::Hang) => std::future::pending::<()>().await,
                Some(super::faults::Fault::Reset)
                | Some(super::faults::Fault::CloseMidBody { .. }) => {
                    // A body error makes hyper reset this stream (RST_STREAM).
                    let failing =
                        http_body_util::StreamBody::new(futures_util::stream::once(async {
                            Err::<http_body::Frame<Bytes>, BoxError>(
                                "mf: injected fault: stream reset".into(),
                            )
                        }));
                    return Response::builder()
                        .status(200)
                        .body(UnsyncBoxBody::new(failing))
                        .unwrap_or_else(|e| {
                            text(StatusCode::INTERNAL_SERVER_ERROR, format!("mf: {e}\n"))
                        });
                }
                _ => {}
            }
            let ex = &replay.exchanges[index];
            let Some(resp) = &ex.response else {
                let (status, message) = match &ex.error {
                    Some(e) => (e.kind.gateway_status(), e.message.as_str()),
                    None => (502, "upstream sent no response"),
                };
                return text(
                    StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY),
                    format!("mf: {message}\n"),
                );
            };
            let mut builder = Response::builder().status(resp.status);
            if let Some(h) = builder.headers_mut() {
                *h = header_map(&resp.headers, Some(resp.body.data.len()));
            }
            let trailers = (!resp.trailers.is_empty()).then(|| header_map(&resp.trailers, None));
            let body = FixedBody::new([resp.body.data.clone()].into(), trailers);
            builder
                .body(UnsyncBoxBody::new(body))
                .unwrap_or_else(|e| text(StatusCode::INTERNAL_SERVER_ERROR, format!("mf: {e}\n")))
        }
        MatchResult::NotFound { near_misses } => {
            replay.stats.unmatched.fetch_add(1, Ordering::Relaxed);
            let report = serde_json::json!({
                "error": "no recorded exchange matches this request",
                "request": { "method": method, "target": target },
                "closest": near_misses,
            });
            let mut t = serde_json::to_string_pretty(&report).unwrap_or_default();
            t.push('\n');
            let mut r = text(StatusCode::NOT_FOUND, t);
            r.headers_mut().insert(
                http::header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            );
            r.headers_mut()
                .insert("x-mf-match", HeaderValue::from_static("none"));
            r
        }
    }
}

/// An HTTP/2 header map as mf's header list (names are lowercase on HTTP/2 anyway).
pub(crate) fn to_model_headers(map: &HeaderMap) -> Vec<Header> {
    map.iter()
        .map(|(n, v)| Header {
            name: n.as_str().to_string(),
            value: v.as_bytes().to_vec(),
        })
        .collect()
}

/// A plain-text response.
pub(crate) fn text(status: StatusCode, body: String) -> Response<ReplayBody> {
    let mut r = Response::new(UnsyncBoxBody::new(
        Full::new(Bytes::from(body)).map_err(|never| match never {}),
    ));
    *r.status_mut() = status;
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Recorded headers as an HTTP/2 header map: names lowercased, connection-specific fields
/// (RFC 9113 §8.2.2) dropped, and a `content-length` that disagrees with the stored body
/// (cut at `--max-body`) corrected.
pub(crate) fn header_map(headers: &[Header], body_len: Option<usize>) -> HeaderMap {
    const CONNECTION_SPECIFIC: [&str; 6] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "transfer-encoding",
        "upgrade",
        "te",
    ];
    let mut map = HeaderMap::with_capacity(headers.len());
    for h in headers {
        let name = h.name.to_ascii_lowercase();
        if CONNECTION_SPECIFIC.contains(&name.as_str()) || name.starts_with(':') {
            continue;
        }
        let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_bytes(&h.value),
        ) else {
            continue;
        };
        if n == http::header::CONTENT_LENGTH {
            if let Some(len) = body_len {
                map.insert(n, HeaderValue::from(len));
                continue;
            }
        }
        map.append(n, v);
    }
    map
}

/// A body known in full: data frames, then optional trailers.
pub(crate) struct FixedBody {
    data: std::collections::VecDeque<Bytes>,
    trailers: Option<HeaderMap>,
}

impl FixedBody {
    pub(crate) fn new(
        data: std::collections::VecDeque<Bytes>,
        trailers: Option<HeaderMap>,
    ) -> Self {
        FixedBody { data, trailers }
    }
}

impl HttpBody for FixedBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        while let Some(d) = self.data.pop_front() {
            if !d.is_empty() {
                return Poll::Ready(Some(Ok(Frame::data(d))));
            }
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.iter().all(|d| d.is_empty()) && self.trailers.is_none()
    }
}

/// A body fed frame by frame by a player task; an `Err` resets the stream.
pub(crate) struct ChannelBody {
    pub(crate) rx: mpsc::Receiver<Result<Frame<Bytes>, BoxError>>,
}

impl HttpBody for ChannelBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        self.rx.poll_recv(cx)
    }
}
