//! Benchmark baseline: a bare hyper HTTP/2 server answering every request with the bytes of a
//! recorded gRPC unary answer (one message, then trailers). `benches/grpc_ws.sh` compares
//! `mf replay` against it. Prints `PORT n`.
//!
//! `bare_h2 [HEADERS TRAILERS]`: files of `name: value` lines with the recorded answer's
//! response headers and trailers, so that the baseline sends what the replay must send (the
//! recorded grpcio answer has three headers and four trailers; HPACK work grows with them).
//! Without them it sends `content-type` and `grpc-status: 0` only.
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

/// Reads `name: value` lines into a header map (skipping lines that are not valid fields).
fn read_fields(path: &str) -> std::io::Result<HeaderMap> {
    let mut map = HeaderMap::new();
    for line in std::fs::read_to_string(path)?.lines() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            http::HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_str(value.trim()),
        ) {
            map.append(n, v);
        }
    }
    Ok(map)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (head, tail) = match args.as_slice() {
        [h, t] => (read_fields(h)?, read_fields(t)?),
        _ => {
            let mut h = HeaderMap::new();
            h.insert("content-type", HeaderValue::from_static("application/grpc"));
            let mut t = HeaderMap::new();
            t.insert("grpc-status", HeaderValue::from_static("0"));
            (h, t)
        }
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    println!("PORT {}", listener.local_addr()?.port());
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let (head, tail) = (head.clone(), tail.clone());
        tokio::spawn(async move {
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (head, tail) = (head.clone(), tail.clone());
                    async move {
                        let _ = http_body_util::BodyExt::collect(req.into_body()).await;
                        let frames = futures_util::stream::iter([
                            Ok::<_, Infallible>(Frame::data(Bytes::from_static(MESSAGE))),
                            Ok(Frame::trailers(tail)),
                        ]);
                        let mut resp = Response::new(StreamBody::new(frames));
                        *resp.headers_mut() = head;
                        Ok::<_, Infallible>(resp)
                    }
                });
            let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
