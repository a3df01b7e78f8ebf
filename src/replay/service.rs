//! The replay as a [`Service`] behind the front door ([`crate::net::door`]): an HTTP/1
//! connection goes to [`super::h1`] (and a matched WebSocket handshake from there to
//! [`super::ws`]); an HTTP/2 connection is driven by hyper, each request going to
//! [`super::grpc`] or [`super::h2`]. This is the only file that knows every protocol; the
//! protocol files know only the pipeline.

use std::sync::Arc;
use std::time::Duration;

use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::pipeline::Replay;
use super::{grpc, h1, h2, ws};
use crate::net::door::{Door, H1Exit, Io, Origin, Service};
use crate::net::Shutdown;

impl Service for Replay {
    type Carry = ();

    async fn serve_h1<S: Io>(
        self: Arc<Self>,
        stream: S,
        origin: Origin,
        _: Option<()>,
        shutdown: Shutdown,
    ) -> H1Exit<S> {
        match h1::serve(&self, stream, &origin, shutdown).await {
            h1::Exit::Closed => H1Exit::Closed,
            h1::Exit::Connect {
                stream,
                authority,
                early,
            } => H1Exit::Intercept {
                stream,
                authority,
                early,
                carry: (),
            },
            h1::Exit::WebSocket(upgrade) => {
                ws::serve(&self, *upgrade).await;
                H1Exit::Closed
            }
        }
    }

    async fn serve_h2<S: Io>(
        self: Arc<Self>,
        stream: S,
        origin: Origin,
        _: Option<()>,
        mut shutdown: Shutdown,
    ) {
        let replay = self;
        // Inside an intercepted tunnel a request is addressed to the tunnel's host; clients
        // name it in `:authority` (RFC 9113 §8.3.1), and the tunnel stands in for one that
        // does not.
        let tunnel = origin
            .tunnel
            .as_deref()
            .and_then(|t| http::HeaderValue::from_str(t).ok());
        let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
            let replay = replay.clone();
            if let Some(host) = &tunnel {
                if req.uri().authority().is_none()
                    && !req.headers().contains_key(http::header::HOST)
                {
                    req.headers_mut().insert(http::header::HOST, host.clone());
                }
            }
            async move {
                Ok::<_, std::convert::Infallible>(if grpc::is_grpc(&req) {
                    grpc::answer(replay, req).await
                } else {
                    h2::answer(replay, req).await
                })
            }
        });
        let conn = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(conn);
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(peer = %origin.peer, error = %e, "http/2 connection ended with an error");
                }
            }
            _ = shutdown.wait() => {
                conn.as_mut().graceful_shutdown();
                let _ = conn.await;
            }
        }
    }
}

/// Serves `replay` on `listener` through `door` until `shutdown`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    replay: Arc<Replay>,
    shutdown: Shutdown,
    door: Door,
) {
    Arc::new(door)
        .serve(listener, replay, shutdown, Duration::from_secs(2))
        .await;
}
