//! HTTP/1.1 record and replay through real curl and a real Python upstream.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::common::*;

/// The curl calls of the foundation scenario, each a list of arguments after the base URL is
/// substituted for `{}`.
fn scenario() -> Vec<Vec<String>> {
    let payload: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let payload_file = shared_file("upload.bin", &payload);
    let upload = format!("@{}", payload_file.display());
    let calls: Vec<Vec<&str>> = vec![
        vec!["{}/json"],
        vec![
            "-X",
            "POST",
            "-H",
            "Content-Type: application/json",
            "-d",
            r#"{"name":"ada","tags":["x","y"]}"#,
            "{}/echo",
        ],
        vec![
            "-H",
            "Transfer-Encoding: chunked",
            "--data-binary",
            &upload,
            "{}/upload",
        ],
        vec!["{}/binary"],
        vec!["{}/chunked"],
        vec!["{}/gzip"],
        vec!["{}/empty"],
        vec!["{}/fail"],
        vec!["-I", "{}/json"],
        vec!["{}/counter"],
        vec!["{}/counter"],
        vec!["{}/counter"],
        // Keep-alive: several requests on one connection.
        vec!["{}/json?b=2&a=1", "{}/empty", "{}/counter"],
        vec![
            "-H",
            "Expect: 100-continue",
            "--data-binary",
            &upload,
            "{}/size",
        ],
        vec![
            "-H",
            "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "{}/json",
        ],
    ];
    calls
        .into_iter()
        .map(|c| c.into_iter().map(String::from).collect())
        .collect()
}

fn run_scenario(base: &str) -> Vec<CurlResult> {
    scenario()
        .into_iter()
        .map(|call| {
            let args: Vec<String> = call.iter().map(|a| a.replace("{}", base)).collect();
            let refs: Vec<&str> = args.iter().map(String::as_str).collect();
            curl(&refs)
        })
        .collect()
}

#[test]
fn recorded_traffic_replays_identically() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    let upstream = start_python("http_upstream.py", &[]);
    // Byte-for-byte fidelity, cookies included: values stored as sent (redaction has its
    // own tests).
    let mut recorder = start_recorder(&upstream.url(), &db, &["--keep-secrets"]);
    let recorded = run_scenario(&recorder.url());
    let status = recorder.interrupt();
    assert!(
        status.success(),
        "recorder exit {status}: {}",
        recorder.stderr()
    );
    assert!(
        recorder.stderr().contains("recorded 17 exchanges"),
        "{}",
        recorder.stderr()
    );
    drop(upstream);

    // Sanity: what curl saw through the proxy is the upstream's real answer.
    assert_eq!(recorded[0].status(), 200);
    assert!(recorded[0].headers.contains("X-Mixed-Case: Yes"));
    assert!(recorded[0]
        .headers
        .contains("Set-Cookie: a=1\r\nset-cookie: b=2"));
    assert_eq!(recorded[2].status(), 201);
    assert!(String::from_utf8_lossy(&recorded[2].body).contains("\"received\": 300000"));
    assert_eq!(recorded[3].body.len(), 1 << 20);
    assert!(recorded[4].body.starts_with(b"first chunk\n"));
    assert_eq!(recorded[6].status(), 204);
    assert_eq!(recorded[7].status(), 503);
    assert!(
        recorded[13].headers.contains("100 Continue"),
        "{}",
        recorded[13].headers
    );

    let rows = ls_json(&db);
    assert_eq!(rows.len(), 17);
    let gz = rows
        .iter()
        .find(|r| r["url"].as_str().unwrap().ends_with("/gzip"))
        .unwrap();
    assert_eq!(gz["protocol"], "http/1.1");
    assert!(rows
        .iter()
        .any(|r| r["trace_id"] == "4bf92f3577b34da6a3ce929d0e0e4736"));
    for key in [
        "id",
        "protocol",
        "method",
        "url",
        "status",
        "request_bytes",
        "response_bytes",
        "duration_ms",
        "error",
    ] {
        assert!(rows[0].get(key).is_some(), "ls --json lacks {key}");
    }

    let replay = start_replay(&db, &[]);
    let replayed = run_scenario(&replay.url());
    for (i, (a, b)) in recorded.iter().zip(&replayed).enumerate() {
        assert_eq!(a.exit, 0, "call {i} through the proxy failed");
        assert_eq!(a.headers, b.headers, "headers of call {i} differ");
        assert_eq!(a.body, b.body, "body of call {i} differs");
    }
    // The counter answered 1, 2, 3 when recorded; the replay gives them back in that order.
    let calls: Vec<String> = replayed[9..12]
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(
        calls,
        [r#"{"call": 1}"#, r#"{"call": 2}"#, r#"{"call": 3}"#]
    );
}

#[test]
fn upstream_refused_gives_502_and_is_recorded() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    // A port nobody listens on, held for the whole test.
    let refused = refused_port();
    let port = refused.port;
    let mut recorder = start_recorder(&format!("http://127.0.0.1:{port}"), &db, &[]);
    let r = curl(&[&format!("{}/anything", recorder.url())]);
    assert_eq!(r.status(), 502);
    assert!(
        String::from_utf8_lossy(&r.body).contains("refused"),
        "{:?}",
        String::from_utf8_lossy(&r.body)
    );
    // SIGTERM flushes and exits 0 just like Ctrl-C.
    assert!(recorder.signal_and_wait(libc::SIGTERM).success());
    assert!(
        recorder.stderr().contains("recorded 1 exchanges"),
        "{}",
        recorder.stderr()
    );
    let rows = ls_json(&db);
    assert_eq!(rows.len(), 1);
    assert!(rows[0]["error"].as_str().unwrap().contains("refused"));
    assert!(rows[0]["status"].is_null());

    let replay = start_replay(&db, &[]);
    let again = curl(&[&format!("{}/anything", replay.url())]);
    assert_eq!(again.status(), 502);
    assert_eq!(again.body, r.body);
}

#[test]
fn kill_9_loses_at_most_the_last_batch() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    let upstream = start_python("http_upstream.py", &[]);
    let mut recorder = start_recorder(&upstream.url(), &db, &[]);
    for _ in 0..20 {
        assert_eq!(
            curl(&[&format!("{}/counter", recorder.url())]).status(),
            200
        );
    }
    // Pull the plug once the last batch is committed (batches commit every 50 ms).
    assert!(
        wait_until(Duration::from_secs(20), || ls_rows(&db) == 20),
        "the recorder never committed all 20 exchanges"
    );
    recorder.kill9();
    let rows = ls_json(&db);
    assert_eq!(
        rows.len(),
        20,
        "every exchange committed before the kill survives"
    );
    let out = mf_run(&["show", db.to_str().unwrap(), &rows[19]["id"].to_string()]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(r#"{"call": 20}"#));
}

#[test]
fn large_bodies_are_forwarded_whole_and_stored_truncated() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    let file = dir.path().join("big.bin");
    std::fs::write(&file, vec![b'z'; 3 << 20]).unwrap();
    let upstream = start_python("http_upstream.py", &[]);
    let mut recorder = start_recorder(&upstream.url(), &db, &["--max-body", "1MiB"]);
    let r = curl(&[
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{}/size", recorder.url()),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&r.body),
        format!(r#"{{"size": {}}}"#, 3 << 20)
    );
    assert!(recorder.interrupt().success());
    let rows = ls_json(&db);
    let out = mf_run(&[
        "show",
        "--json",
        db.to_str().unwrap(),
        &rows[0]["id"].to_string(),
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["request"]["body"]["truncated"], true);
    assert_eq!(v["request"]["body"]["size"], 3 << 20);
    assert_eq!(
        v["request"]["body"]["text"].as_str().unwrap().len(),
        1 << 20
    );
}

/// Sends raw bytes on a fresh connection and returns what came back before the close.
fn raw_exchange(addr: std::net::SocketAddr, bytes: &[u8]) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let _ = s.write_all(bytes);
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn abuse_then_check_still_serving(
    addr: std::net::SocketAddr,
    base: &str,
    log: impl Fn() -> String,
) {
    let garbage = raw_exchange(
        addr,
        b"\x16\x03\x01\x00\xa5garbage that is not http\r\n\r\n",
    );
    assert!(
        garbage.starts_with("HTTP/1.1 400"),
        "garbage got {garbage:?}"
    );
    let mut huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 100_000));
    huge.extend_from_slice(b"\r\n\r\n");
    let big = raw_exchange(addr, &huge);
    assert!(
        big.starts_with("HTTP/1.1 431"),
        "oversized head got {big:?}"
    );
    // Half a request, then the client vanishes.
    drop(
        TcpStream::connect(addr)
            .unwrap()
            .write_all(b"GET /json HTTP/1.1\r\nHo"),
    );
    // Meanwhile the server keeps serving everyone else.
    assert_eq!(curl(&[&format!("{base}/json")]).status(), 200);
    assert!(
        wait_until(Duration::from_secs(5), || log().contains("bad request")),
        "not logged: {}",
        log()
    );
}

#[test]
fn garbage_clients_get_errors_and_others_keep_being_served() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    let upstream = start_python("http_upstream.py", &[]);
    let mut recorder = start_recorder(&upstream.url(), &db, &[]);
    abuse_then_check_still_serving(recorder.addr(), &recorder.url(), || recorder.stderr());
    assert!(recorder.interrupt().success());
    assert_eq!(
        ls_json(&db).len(),
        1,
        "only the valid request is an exchange"
    );

    let replay = start_replay(&db, &[]);
    abuse_then_check_still_serving(replay.addr(), &replay.url(), || replay.stderr());
}

#[test]
fn unmatched_request_gets_near_miss_report() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    let upstream = start_python("http_upstream.py", &[]);
    let mut recorder = start_recorder(&upstream.url(), &db, &[]);
    curl(&[
        "-X",
        "POST",
        "-d",
        r#"{"a":1}"#,
        &format!("{}/echo?page=1", recorder.url()),
    ]);
    assert!(recorder.interrupt().success());
    let replay = start_replay(&db, &[]);
    let miss = curl(&[
        "-X",
        "POST",
        "-d",
        r#"{"a":2}"#,
        &format!("{}/echo?page=2", replay.url()),
    ]);
    assert_eq!(miss.status(), 404);
    let report: serde_json::Value = serde_json::from_slice(&miss.body).unwrap();
    let reasons = report["closest"][0]["mismatches"].to_string();
    assert!(
        reasons.contains("query") && reasons.contains("body"),
        "{report}"
    );
    // JSON bodies compare by value: key order and spacing do not matter.
    let hit = curl(&[
        "-X",
        "POST",
        "-d",
        r#"{ "a" : 1 }"#,
        &format!("{}/echo?page=1", replay.url()),
    ]);
    assert_eq!(hit.status(), 200);
    assert!(wait_until(Duration::from_secs(5), || replay
        .stderr()
        .contains("no recorded exchange matches")));
}

/// A reverse proxy whose upstream is its own address would forward every request to itself
/// until it ran out of descriptors: it refuses to start instead.
#[test]
fn an_upstream_that_is_the_proxy_itself_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let refused = refused_port();
    let port = refused.port;
    drop(refused);
    let out = mf()
        .args(["record", "--proxy", "--upstream"])
        .arg(format!("http://127.0.0.1:{port}"))
        .arg("--listen")
        .arg(format!("127.0.0.1:{port}"))
        .arg("-o")
        .arg(dir.path().join("loop.db"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("forward every request to itself"), "{err}");
}
