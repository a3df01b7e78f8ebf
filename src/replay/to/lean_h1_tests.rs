//! The HTTP/1.1 sender: the bytes it writes, what it refuses to write, and a target that
//! answers with an interim answer and closes after each one.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{encode, send};
use crate::model::{Body, ErrorKind, Exchange, Header, Request};
use crate::net::dial::Upstream;
use crate::replay::to::TargetConfig;

/// The shared test target, sent to `url` with the recorded Host.
fn config(url: &str) -> TargetConfig {
    let mut cfg = crate::replay::to::tests::config(([127, 0, 0, 1], 9).into(), 1, None);
    cfg.url = Upstream::parse(url).unwrap();
    cfg.host_override = None;
    cfg
}

fn post(headers: Vec<Header>, body: &'static str) -> Exchange {
    Exchange {
        request: Request {
            method: "POST".into(),
            target: "/users?x=1".into(),
            version: "HTTP/1.1".into(),
            headers,
            body: Body::full(body.as_bytes().to_vec()),
            ..Request::default()
        },
        ..Exchange::default()
    }
}

#[test]
fn a_request_is_its_line_host_headers_length_and_body_in_one_buffer() {
    let cfg = config("http://127.0.0.1:9/v2");
    let ex = post(
        vec![
            Header::new("Host", "recorded.example"),
            Header::new("Connection", "keep-alive"),
            Header::new("Content-Length", "99"),
            Header::new("X-Run", "recorded"),
            Header::new("Accept", "*/*"),
        ],
        "{}",
    );
    let mut out = BytesMut::new();
    encode(&mut out, &cfg, &ex).unwrap();
    assert_eq!(
        &out[..],
        b"POST /v2/users?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAccept: */*\r\nX-Run: test\r\nContent-Length: 2\r\n\r\n{}"
    );
}

#[test]
fn a_header_that_would_end_the_line_is_not_sent() {
    let cfg = config("http://127.0.0.1:9");
    let ex = post(vec![Header::new("X-Bad", "a\r\nInjected: yes")], "");
    let err = encode(&mut BytesMut::new(), &cfg, &ex).unwrap_err();
    assert_eq!(err.kind, ErrorKind::MalformedRequest);
}

#[tokio::test]
async fn an_interim_answer_is_skipped_and_a_closing_target_gets_a_new_connection() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = vec![0; 4096];
            let mut got = Vec::new();
            // The whole request: head and its 2-byte body.
            while !got.windows(4).any(|w| w == b"\r\n\r\n") || !got.ends_with(b"{}") {
                match s.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                }
            }
            let answer = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 2\r\nConnection: close\r\nX-Id: 7\r\n\r\nok";
            let _ = s.write_all(answer).await;
        }
    });
    let cfg = config(&format!("http://{addr}"));
    let mut conn = None;
    for _ in 0..2 {
        let observed = send(&mut conn, post(vec![], "{}"), &cfg).await.unwrap();
        let r = observed.response.unwrap();
        assert_eq!((r.status, &r.reason[..]), (201, "Created"));
        assert_eq!(&r.body.data[..], b"ok");
        assert!(
            r.headers.iter().any(|h| h.name == "x-id"),
            "{:?}",
            r.headers
        );
        assert!(conn.is_none(), "closed by the target's answer");
    }
}
