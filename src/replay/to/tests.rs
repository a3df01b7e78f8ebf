//! The driver against a real HTTP/1.1 server on 127.0.0.1 (hyper, in the test): interleaved
//! connections under a concurrency cap smaller than the recording's, keep-alive, loops.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;

use super::*;
use crate::model::{Header, Request, Response};

/// Answers every request 200 with its path, its `X-Run` header and its Host as the body
/// (`/p|x-run|host`); counts accepted connections.
async fn echo_server() -> (std::net::SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(|req: hyper::Request<hyper::body::Incoming>| async move {
                    let h = |n: &str| {
                        req.headers()
                            .get(n)
                            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                            .unwrap_or_default()
                    };
                    let body = format!("{}|{}|{}", req.uri().path(), h("x-run"), h("host"));
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(body))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, accepted)
}

pub(super) fn config(
    addr: std::net::SocketAddr,
    concurrency: usize,
    times: Option<u32>,
) -> TargetConfig {
    let tls = crate::tls::client_config(&Default::default(), &crate::tls::ALPN_H1).unwrap();
    TargetConfig {
        url: Upstream::parse(&format!("http://{addr}")).unwrap(),
        host_override: Some("api.example".into()),
        set_headers: vec![("X-Run".into(), "test".into())],
        tls: TlsMode {
            enabled: false,
            h1: tls.clone(),
            h2: tls,
        },
        speed: Speed::Max,
        times,
        for_duration: None,
        concurrency,
        timeout: Duration::from_secs(5),
    }
}

fn exchange(conn: u64, seq: u32, path: String) -> Exchange {
    Exchange {
        id: i64::from(seq) + 1,
        connection_id: conn,
        seq,
        started_at_ns: i64::from(seq),
        request: Request {
            method: "GET".into(),
            target: path.into(),
            version: "HTTP/1.1".into(),
            headers: vec![
                Header::new("Host", "recorded.example"),
                Header::new("X-Run", "recorded"),
            ],
            ..Request::default()
        },
        response: Some(Response {
            status: 200,
            ..Response::default()
        }),
        ..Exchange::default()
    }
}

/// Exchanges in recorded order: `conns` connections taking turns, `each` requests each.
struct Interleaved {
    conns: u64,
    each: u32,
}

impl Feed for Interleaved {
    fn pass(&mut self) -> tokio::sync::mpsc::Receiver<Vec<Exchange>> {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let (conns, each) = (self.conns, self.each);
        tokio::spawn(async move {
            for i in 0..each {
                // One batch per round: every connection's next exchange.
                let batch = (0..conns)
                    .map(|c| exchange(c, i * conns as u32 + c as u32, format!("/c{c}/{i}")))
                    .collect();
                if tx.send(batch).await.is_err() {
                    return;
                }
            }
        });
        rx
    }
}

/// Keeps (recorded path, answered body) pairs in the order answers came.
#[derive(Default)]
struct Seen(Mutex<Vec<(String, String)>>);

impl Observer for Seen {
    fn before_send(&self, _recorded: &Exchange, _outgoing: &mut Exchange) {}
    fn answered(&self, recorded: &Exchange, observed: Result<Exchange, ExchangeError>, _: u64) {
        let body = match observed {
            Ok(o) => String::from_utf8_lossy(&o.response.unwrap_or_default().body.data).into(),
            Err(e) => format!("error: {e}"),
        };
        self.0
            .lock()
            .unwrap()
            .push((recorded.request.target.clone().into(), body));
    }
}

#[tokio::test]
async fn interleaved_connections_under_a_smaller_cap_all_finish_in_order() {
    let (addr, accepted) = echo_server().await;
    let counts: ConnectionCounts = (0..5).map(|c| (c, 30)).collect();
    let seen = Arc::new(Seen::default());
    let mut feed = Interleaved { conns: 5, each: 30 };
    let summary = tokio::time::timeout(
        Duration::from_secs(30),
        drive(&mut feed, &counts, config(addr, 2, Some(2)), seen.clone()),
    )
    .await
    .expect("no deadlock")
    .unwrap();
    assert_eq!(summary.sent, 300);
    assert_eq!(summary.failed, 0);
    assert_eq!(summary.passes, 2);
    assert_eq!(summary.connections, 10);
    // One keep-alive connection per recorded connection and pass.
    assert_eq!(accepted.load(Ordering::SeqCst), 10);
    let seen = seen.0.lock().unwrap();
    // --host and --set-header replaced the recorded Host and X-Run.
    assert!(
        seen.iter()
            .all(|(path, body)| *body == format!("{path}|test|api.example")),
        "{seen:?}"
    );
    for c in 0..5 {
        let order: Vec<&str> = seen
            .iter()
            .filter(|(p, _)| p.starts_with(&format!("/c{c}/")))
            .map(|(p, _)| p.as_str())
            .collect();
        let expected: Vec<String> = (0..2)
            .flat_map(|_| (0..30).map(move |i| format!("/c{c}/{i}")))
            .collect();
        assert_eq!(order, expected, "connection {c} kept its order");
    }
}

#[tokio::test]
async fn nothing_to_send_and_no_concurrency_are_errors() {
    let (addr, _) = echo_server().await;
    let seen: Arc<dyn Observer> = Arc::new(Seen::default());
    let mut feed = Interleaved { conns: 0, each: 0 };
    let empty = ConnectionCounts::new();
    assert!(matches!(
        drive(&mut feed, &empty, config(addr, 1, None), seen.clone()).await,
        Err(DriveError::Nothing)
    ));
    let counts: ConnectionCounts = [(0, 1)].into_iter().collect();
    assert!(matches!(
        drive(&mut feed, &counts, config(addr, 0, None), seen).await,
        Err(DriveError::NoConcurrency)
    ));
}
