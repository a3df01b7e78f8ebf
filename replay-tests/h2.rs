//! Plain HTTP/2 with curl: prior knowledge (`--http2-prior-knowledge`) and the HTTP/1.1
//! `Upgrade: h2c` offer (`--http2`), against the proxy and the replay.

use crate::common::*;

fn h2(url: &str, extra: &[&str]) -> CurlResult {
    let mut args = vec!["--http2-prior-knowledge"];
    args.extend_from_slice(extra);
    args.push(url);
    curl(&args)
}

#[test]
fn curl_http2_through_proxy_and_replay() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    // An HTTP/2-capable upstream: mf's own replay of a recording of the Python HTTP/1 server.
    let db1 = dir.path().join("h1.db");
    let python = start_python("http_upstream.py", &[]);
    let mut rec1 = start_recorder(&python.url(), &db1, &[]);
    let direct_json = curl(&[&format!("{}/json", rec1.url())]);
    let direct_echo = curl(&[
        "-d",
        "{\"n\":1}",
        "-H",
        "Content-Type: application/json",
        &format!("{}/echo", rec1.url()),
    ]);
    assert!(rec1.interrupt().success());
    drop(python);
    let upstream = start_replay(&db1, &[]);

    let db2 = dir.path().join("h2.db");
    let mut rec2 = start_recorder(&upstream.url(), &db2, &[]);
    let json = h2(&format!("{}/json", rec2.url()), &[]);
    assert!(json.headers.starts_with("HTTP/2 200"), "{json:?}");
    assert_eq!(json.body, direct_json.body);
    let echo = h2(
        &format!("{}/echo", rec2.url()),
        &["-d", "{\"n\":1}", "-H", "Content-Type: application/json"],
    );
    assert_eq!((echo.status(), &echo.body), (200, &direct_echo.body));
    // The h2c upgrade offer is declined: the answer comes over HTTP/1.1.
    let upgraded = curl(&["--http2", &format!("{}/json", rec2.url())]);
    assert!(upgraded.headers.starts_with("HTTP/1.1 200"), "{upgraded:?}");
    assert_eq!(upgraded.body, direct_json.body);
    assert!(rec2.interrupt().success(), "{}", rec2.stderr());
    drop(upstream);

    let rows = ls_json(&db2);
    let protocols: Vec<&str> = rows
        .iter()
        .map(|r| r["protocol"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(protocols, ["h2", "h2", "http/1.1"], "{rows:?}");

    let replay = start_replay(&db2, &[]);
    let again = h2(&format!("{}/json", replay.url()), &[]);
    assert!(again.headers.starts_with("HTTP/2 200"), "{again:?}");
    assert_eq!(again.body, json.body);
    let echo2 = h2(
        &format!("{}/echo", replay.url()),
        &["-d", "{\"n\":1}", "-H", "Content-Type: application/json"],
    );
    assert_eq!((echo2.status(), &echo2.body), (200, &echo.body));
    let up2 = curl(&["--http2", &format!("{}/json", replay.url())]);
    assert_eq!((up2.status(), &up2.body), (200, &json.body));
    let missing = h2(&format!("{}/nope", replay.url()), &[]);
    assert_eq!(missing.status(), 404);
    assert!(String::from_utf8_lossy(&missing.body).contains("no recorded exchange"));
}
