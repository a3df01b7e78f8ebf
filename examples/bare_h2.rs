//! Benchmark baseline: a bare hyper HTTP/2 server answering every request with the bytes of a
//! recorded gRPC unary answer (one message, `grpc-status: 0` trailers). `benches/grpc_ws.sh`
//! compares `mf replay` against it. Prints `PORT n`.
//!
//! It reads the request body before answering, as any gRPC server must before it can compute
//! a unary answer (and as the replay must, to match the call); otherwise the baseline would
//! measure a server that answers before the question arrives.

use std::convert::Infallible;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response};
use http_body::Frame;
use http_body_util::StreamBody;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// `Point { x: 42, label: "got a" }`, gRPC-framed.
const MESSAGE: &[u8] = b"\x00\x00\x00\x00\x09\x08\x2a\x12\x05got a";

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("PORT {}", listener.local_addr()?.port());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(|req: hyper::Request<hyper::body::Incoming>| async {
                    let _ = http_body_util::BodyExt::collect(req.into_body()).await;
                    let mut trailers = HeaderMap::new();
                    trailers.insert("grpc-status", HeaderValue::from_static("0"));
                    let frames = futures_util::stream::iter([
                        Ok::<_, Infallible>(Frame::data(Bytes::from_static(MESSAGE))),
                        Ok(Frame::trailers(trailers)),
                    ]);
                    let mut resp = Response::new(StreamBody::new(frames));
                    resp.headers_mut()
                        .insert("content-type", HeaderValue::from_static("application/grpc"));
                    Ok::<_, Infallible>(resp)
                });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
