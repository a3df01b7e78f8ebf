//! Other tools' recordings imported and replayed: a HAR shaped like Chrome's export, a
//! mitmproxy flow file written by a real `mitmdump -w`, and broken files of both kinds.

use std::path::Path;
use std::process::Command;

use base64::Engine;

use crate::common::*;

/// A PNG-ish body with every awkward byte.
const LOGO: &[u8] = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\xff\xfe\x00'\"$";

/// A HAR as Chrome's DevTools exports it ("Save all as HAR with content"): HTTP/2 with
/// pseudo-headers, `_initiator`/`_priority`/`_resourceType` extras, decoded bodies whose
/// headers still say `br`, a base64 binary body, and a request the browser blocked.
fn chrome_har() -> String {
    let logo = base64::engine::general_purpose::STANDARD.encode(LOGO);
    let entry = |started: &str,
                 method: &str,
                 url: &str,
                 version: &str,
                 extra_req: &str,
                 response: &str| {
        format!(
            r#"{{
      "_initiator": {{"type": "script", "stack": {{"callFrames": []}}}},
      "_priority": "High", "_resourceType": "fetch", "cache": {{}}, "connection": "311",
      "pageref": "page_1", "serverIPAddress": "93.184.216.34",
      "startedDateTime": "{started}", "time": 41.7,
      "request": {{"method": "{method}", "url": "{url}", "httpVersion": "{version}",
        "headers": [{{"name": ":authority", "value": "shop.test"}}, {{"name": ":method", "value": "{method}"}},
                    {{"name": ":path", "value": "/"}}, {{"name": ":scheme", "value": "https"}},
                    {{"name": "accept", "value": "*/*"}}, {{"name": "user-agent", "value": "Mozilla/5.0 HeadlessChrome/131.0"}}],
        "queryString": [], "cookies": [], "headersSize": -1, "bodySize": 0{extra_req}}},
      "response": {response},
      "timings": {{"blocked": 2.1, "dns": -1, "ssl": -1, "connect": -1, "send": 0.2, "wait": 35.4, "receive": 4.0,
                  "_blocked_queueing": 1.5}}
    }}"#
        )
    };
    let ok = |status: u16, mime: &str, content: &str| {
        format!(
            r#"{{"status": {status}, "statusText": "", "httpVersion": "h2",
        "headers": [{{"name": "content-type", "value": "{mime}"}}, {{"name": "content-encoding", "value": "br"}},
                    {{"name": "content-length", "value": "17"}}],
        "cookies": [], "content": {content}, "redirectURL": "", "headersSize": -1, "bodySize": 17,
        "_transferSize": 180, "_error": null}}"#
        )
    };
    let entries = [
        entry(
            "2026-11-30T09:15:00.120Z",
            "GET",
            "https://shop.test/api/products?page=2",
            "h2",
            "",
            &ok(
                200,
                "application/json",
                r#"{"size": 30, "mimeType": "application/json", "text": "{\"products\":[{\"id\":7}],\"page\":2}"}"#,
            ),
        ),
        entry(
            "2026-11-30T10:15:00.300+01:00",
            "POST",
            "https://shop.test/api/cart",
            "http/1.1",
            r#", "postData": {"mimeType": "application/json", "text": "{\"product\":7,\"qty\":1}"}"#,
            &ok(
                201,
                "application/json",
                r#"{"size": 12, "mimeType": "application/json", "text": "{\"items\":1}"}"#,
            ),
        ),
        entry(
            "2026-11-30T09:15:00.500Z",
            "GET",
            "https://shop.test/logo.png",
            "h2",
            "",
            &ok(
                200,
                "image/png",
                &format!(
                    r#"{{"size": {}, "mimeType": "image/png", "text": "{logo}", "encoding": "base64"}}"#,
                    LOGO.len()
                ),
            ),
        ),
        entry(
            "2026-11-30T09:15:00.700Z",
            "GET",
            "https://ads.shop.test/pixel",
            "",
            "",
            r#"{"status": 0, "statusText": "", "httpVersion": "", "headers": [], "cookies": [],
        "content": {"size": 0, "mimeType": "x-unknown"}, "redirectURL": "", "headersSize": -1, "bodySize": -1,
        "_error": "net::ERR_BLOCKED_BY_CLIENT"}"#,
        ),
    ];
    format!(
        r#"{{"log": {{"version": "1.2", "creator": {{"name": "WebInspector", "version": "537.36"}},
  "pages": [{{"startedDateTime": "2026-11-30T09:15:00.000Z", "id": "page_1", "title": "https://shop.test/",
             "pageTimings": {{"onContentLoad": 120.5, "onLoad": 340.2}}}}],
  "entries": [{}]}}}}"#,
        entries.join(",\n")
    )
}

fn import(file: &Path, db: &Path) -> std::process::Output {
    mf().arg("import")
        .arg(file)
        .arg("-o")
        .arg(db)
        .output()
        .unwrap()
}

#[test]
fn a_chrome_har_imports_and_replays_to_curl() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let har = dir.path().join("shop.har");
    std::fs::write(&har, chrome_har()).unwrap();
    let db = dir.path().join("shop.db");
    let out = import(&har, &db);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("4 exchanges from HAR file"));

    let rows = ls_json(&db);
    assert_eq!(rows.len(), 4);
    assert_eq!(rows[0]["protocol"], "h2");
    assert_eq!(rows[1]["protocol"], "http/1.1");
    assert_eq!(rows[0]["url"], "https://shop.test/api/products?page=2");
    assert_eq!(rows[3]["status"], serde_json::Value::Null);
    assert!(rows[3]["error"]
        .as_str()
        .unwrap()
        .contains("ERR_BLOCKED_BY_CLIENT"));
    // The POST was sent at 09:15:00.300Z (+01:00 in the file) plus 2.1 ms queueing.
    assert_eq!(rows[1]["started_at_ns"], 1_796_030_100_302_100_000i64);
    // Same connection id (Chrome's socket 311), in order.
    assert_eq!(rows[0]["connection_id"], rows[2]["connection_id"]);
    assert_eq!(rows[2]["seq"], 2);

    // The HAR spans two hosts, so replay matches on the host the client names.
    let replay = start_replay(&db, &[]);
    let host = "Host: shop.test";
    let products = curl(&["-H", host, &format!("{}/api/products?page=2", replay.url())]);
    assert_eq!(products.status(), 200);
    assert_eq!(products.body, br#"{"products":[{"id":7}],"page":2}"#);
    let lower = products.headers.to_ascii_lowercase();
    assert!(!lower.contains("content-encoding"), "{}", products.headers);
    let cart = curl(&[
        "-H",
        host,
        "-X",
        "POST",
        "-H",
        "content-type: application/json",
        "-d",
        r#"{"product":7,"qty":1}"#,
        &format!("{}/api/cart", replay.url()),
    ]);
    assert_eq!(cart.status(), 201);
    assert_eq!(cart.body, br#"{"items":1}"#);
    let logo = curl(&["-H", host, &format!("{}/logo.png", replay.url())]);
    assert_eq!(logo.status(), 200);
    assert_eq!(logo.body, LOGO);
}

#[test]
fn a_mitmdump_flow_file_imports_and_replays() {
    require("curl");
    require("mitmdump");
    let dir = tempfile::tempdir().unwrap();
    let flows = dir.path().join("api.flows");
    let upstream = start_python("http_upstream.py", &[]);
    let mut cmd = Command::new("mitmdump");
    cmd.args(["--mode", &format!("reverse:{}", upstream.url())])
        .args(["--listen-host", "127.0.0.1", "-p", "0", "-w"])
        .arg(&flows)
        .args([
            "--set",
            &format!("confdir={}", dir.path().join("mitm").display()),
        ])
        .env("TMPDIR", dir.path());
    let mut mitm = Proc::start("mitmdump", cmd, "listening at");
    let via = mitm.url();
    assert_eq!(curl(&[&format!("{via}/json")]).status(), 200);
    let echo = curl(&[
        "-H",
        "Content-Type: text/plain",
        "--data-binary",
        "hello mitm",
        &format!("{via}/echo"),
    ]);
    assert_eq!(echo.body, b"hello mitm");
    assert_eq!(curl(&[&format!("{via}/fail")]).status(), 503);
    mitm.interrupt();
    drop(upstream);

    let db = dir.path().join("mitm.db");
    let out = import(&flows, &db);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 exchanges from mitmproxy flow file"));
    let rows = ls_json(&db);
    let statuses: Vec<_> = rows.iter().map(|r| r["status"].as_u64().unwrap()).collect();
    assert_eq!(statuses, [200, 200, 503]);
    assert!(rows
        .iter()
        .all(|r| r["duration_ms"].as_f64().unwrap() > 0.0));

    let replay = start_replay(&db, &[]);
    let json = curl(&[&format!("{}/json", replay.url())]);
    assert_eq!(json.status(), 200);
    assert!(String::from_utf8_lossy(&json.body).contains("\"ada\""));
    assert!(
        json.headers.contains("X-Mixed-Case: Yes"),
        "{}",
        json.headers
    );
    let echo = curl(&[
        "-H",
        "Content-Type: text/plain",
        "--data-binary",
        "hello mitm",
        &format!("{}/echo", replay.url()),
    ]);
    assert_eq!(echo.body, b"hello mitm");
    assert_eq!(curl(&[&format!("{}/fail", replay.url())]).status(), 503);
}

/// Typed netstrings, to build a flow file by hand to mitmproxy's documented format.
fn tn(data: &[u8], tag: u8) -> Vec<u8> {
    let mut out = format!("{}:", data.len()).into_bytes();
    out.extend_from_slice(data);
    out.push(tag);
    out
}

fn tn_dict(items: &[(&str, Vec<u8>)]) -> Vec<u8> {
    let body: Vec<u8> = items
        .iter()
        .flat_map(|(k, v)| [tn(k.as_bytes(), b';'), v.clone()].concat())
        .collect();
    tn(&body, b'}')
}

fn tn_list(items: &[Vec<u8>]) -> Vec<u8> {
    tn(&items.concat(), b']')
}

/// One version-21 HTTP flow: `GET /hand` answered 418.
fn hand_flow() -> Vec<u8> {
    let header = |k: &str, v: &str| tn_list(&[tn(k.as_bytes(), b','), tn(v.as_bytes(), b',')]);
    tn_dict(&[
        ("version", tn(b"21", b'#')),
        ("type", tn(b"http", b';')),
        ("error", tn(b"", b'~')),
        (
            "request",
            tn_dict(&[
                ("host", tn(b"api.test", b';')),
                ("port", tn(b"80", b'#')),
                ("method", tn(b"GET", b',')),
                ("scheme", tn(b"http", b',')),
                ("authority", tn(b"", b',')),
                ("path", tn(b"/hand", b',')),
                ("http_version", tn(b"HTTP/1.1", b',')),
                ("headers", tn_list(&[header("Host", "api.test")])),
                ("content", tn(b"", b',')),
                ("trailers", tn(b"", b'~')),
                ("timestamp_start", tn(b"1796137355.5", b'^')),
                ("timestamp_end", tn(b"1796137355.501", b'^')),
            ]),
        ),
        (
            "response",
            tn_dict(&[
                ("http_version", tn(b"HTTP/1.1", b',')),
                ("status_code", tn(b"418", b'#')),
                ("reason", tn(b"I'm a teapot", b',')),
                ("headers", tn_list(&[header("Content-Length", "5")])),
                ("content", tn(b"short", b',')),
                ("trailers", tn(b"", b'~')),
                ("timestamp_start", tn(b"1796137355.51", b'^')),
                ("timestamp_end", tn(b"1796137355.52", b'^')),
            ]),
        ),
    ])
}

#[test]
fn broken_har_and_flow_files_exit_2_with_the_position_and_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    let write = |name: &str, data: &[u8]| {
        let p = dir.path().join(name);
        std::fs::write(&p, data).unwrap();
        p
    };
    let refused = |file: &Path, db: &Path, wanted: &str| {
        let out = import(file, db);
        assert_eq!(out.status.code(), Some(2), "{}", file.display());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(wanted), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    };

    // Into a new recording: refused, and no file made.
    let har = chrome_har();
    let cut = write("cut.har", &har.as_bytes()[..har.len() / 2]);
    refused(&cut, &db, "invalid HAR at line ");
    let wrong = write(
        "wrong.har",
        b"{\"log\": {\"version\": \"1.2\",\n  \"entries\": 7}}",
    );
    refused(&wrong, &db, "invalid HAR at line 2, column");
    let bad_url = write(
        "url.har",
        har.replacen("https://shop.test/logo.png", "shop.test/logo.png", 1)
            .as_bytes(),
    );
    refused(&bad_url, &db, "entries[2]");
    let flow = hand_flow();
    let cut_flow = write("cut.flows", &flow[..flow.len() - 20]);
    refused(&cut_flow, &db, "invalid mitmproxy flow file at byte 0");
    let mut bad_tag = flow.clone();
    let last = bad_tag.len() - 1;
    bad_tag[last] = b'?';
    let bad_tag = write("tag.flows", &[flow.clone(), bad_tag].concat());
    refused(&bad_tag, &db, &format!("at byte {}", 2 * flow.len() - 1));
    assert!(!db.exists(), "a refused import created the recording");

    // Into an existing recording: refused, and the file is byte for byte as it was.
    let good = write("hand.flows", &flow);
    let out = import(&good, &db);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = ls_json(&db);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0]["status"], 418);
    assert_eq!(rows[0]["url"], "http://api.test/hand");
    let before = std::fs::read(&db).unwrap();
    // Both kinds of broken file, even after a good one on the same command line.
    for broken in [&cut, &cut_flow] {
        let out = mf()
            .arg("import")
            .arg(&good)
            .arg(broken)
            .arg("-o")
            .arg(&db)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2));
    }
    assert_eq!(std::fs::read(&db).unwrap(), before, "the recording changed");
    assert_eq!(ls_rows(&db), 1);
}
