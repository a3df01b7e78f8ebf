//! Peers that stop half-way through the recording proxy: an upstream that stalls in the
//! middle of its body, a client that stalls in the middle of its request body, and a
//! recording stopped while an exchange is still in flight. Each is cut at its timeout (or at
//! shutdown) and recorded with what arrived and its error kind, never lost.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::*;

/// Sends a GET for `/stall` and reads until the 100 body bytes the upstream sends arrived.
fn start_stalled_download(proxy: &Proc) -> TcpStream {
    let mut s = TcpStream::connect(proxy.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /stall HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.ends_with(&[b's'; 100]) {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "proxy closed before the body began");
        got.extend_from_slice(&buf[..n]);
    }
    s
}

/// The one exchange of `db` whose URL ends with `path`.
fn exchange(db: &std::path::Path, path: &str) -> serde_json::Value {
    let rows = ls_json(db);
    rows.into_iter()
        .find(|r| r["url"].as_str().is_some_and(|u| u.ends_with(path)))
        .unwrap_or_else(|| panic!("no {path} exchange recorded"))
}

#[test]
fn an_upstream_stalled_mid_body_is_cut_at_the_timeout_and_recorded_with_its_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stall.db");
    let upstream = start_python("http_upstream.py", &[]);
    let mut recorder = start_recorder(&upstream.url(), &db, &["--upstream-timeout", "1s"]);
    let mut s = start_stalled_download(&recorder);
    // Cut at the timeout: the client sees the connection close short of the 1000 bytes.
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
    assert!(rest.len() < 900, "the stalled body was not cut");
    // The proxy goes on serving.
    assert_eq!(curl(&[&format!("{}/json", recorder.url())]).status(), 200);
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    let ex = exchange(&db, "/stall");
    assert_eq!(ex["error_kind"], "upstream_timeout", "{ex}");
    assert_eq!(ex["status"], 200, "{ex}");
    let shown = mf_run(&[
        "show",
        db.to_str().unwrap(),
        &ex["id"].to_string(),
        "--json",
    ]);
    let shown: serde_json::Value = serde_json::from_slice(&shown.stdout).unwrap();
    assert_eq!(shown["response"]["body"]["size"], 100, "{shown}");
}

#[test]
fn an_exchange_in_flight_at_shutdown_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("stop.db");
    let upstream = start_python("http_upstream.py", &[]);
    let mut recorder = start_recorder(&upstream.url(), &db, &[]);
    let _s = start_stalled_download(&recorder);
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    assert!(
        recorder.stderr().contains("recorded 1 exchange"),
        "{}",
        recorder.stderr()
    );
    let ex = exchange(&db, "/stall");
    assert_eq!(ex["error_kind"], "upstream_timeout", "{ex}");
}

#[test]
fn a_client_stalled_mid_body_gets_408_and_the_exchange_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("slowbody.db");
    let upstream = start_python("http_upstream.py", &[]);
    let mut recorder = start_recorder(&upstream.url(), &db, &["--idle-timeout", "1s"]);
    let mut s = TcpStream::connect(recorder.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n0123456789")
        .unwrap();
    let mut answer = Vec::new();
    let _ = s.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    let ex = exchange(&db, "/upload");
    assert_eq!(ex["error_kind"], "client_aborted", "{ex}");
}
