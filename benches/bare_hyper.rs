//! Baseline for `make bench`: the plainest hyper 1.x HTTP/1.1 server, answering every request
//! with the same status, headers and body that the replay server sends for the benchmark's
//! recorded exchange. Usage: `bare_hyper HEADERS_FILE BODY_FILE` (headers as `Name: value`
//! lines); prints `listening on ADDR`.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let headers_text =
        std::fs::read_to_string(args.get(1).ok_or("usage: bare_hyper HEADERS BODY")?)?;
    let body = Bytes::from(std::fs::read(
        args.get(2).ok_or("usage: bare_hyper HEADERS BODY")?,
    )?);
    let headers: Arc<Vec<(String, String)>> = Arc::new(
        headers_text
            .lines()
            .filter_map(|l| l.split_once(": "))
            .filter(|(n, _)| !n.eq_ignore_ascii_case("content-length"))
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    eprintln!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        let headers = headers.clone();
        let body = body.clone();
        tokio::spawn(async move {
            let service = service_fn(move |_req: Request<hyper::body::Incoming>| {
                let mut resp = Response::builder().status(200);
                for (n, v) in headers.iter() {
                    resp = resp.header(n.as_str(), v.as_str());
                }
                let resp = resp.body(Full::new(body.clone())).unwrap_or_default();
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
