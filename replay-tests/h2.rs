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

/// An upstream that resets a stream right after three DATA frames (in the same write): the
/// client behind the recording proxy gets the three frames and then the reset, as it would
/// directly. h2 discards a reset stream's queued DATA, so the proxy passes the reset on only
/// once the frames have left; before, nghttp saw the head and a bare RST_STREAM.
#[test]
fn an_upstream_reset_mid_body_reaches_the_client_after_the_data_before_it() {
    require("nghttp");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("reset.db");
    let upstream = start_python("h2_reset_upstream.py", &[]);
    let mut recorder = start_recorder(&upstream.url(), &db, &[]);
    let url = format!("{}/x", recorder.url());
    for _ in 0..5 {
        let out = std::process::Command::new("nghttp")
            .args(["-v", "--timeout", "10", &url])
            .output()
            .expect("nghttp runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let data: Vec<usize> = text
            .match_indices("recv DATA frame <length=6,")
            .map(|(i, _)| i)
            .collect();
        let reset = text.find("recv RST_STREAM frame");
        assert_eq!(data.len(), 3, "three DATA frames: {text}");
        assert!(
            reset.is_some_and(|r| data.iter().all(|d| *d < r)),
            "then the reset: {text}"
        );
        // nghttp prints the bytes between its frame lines.
        for part in ["part1", "part2", "part3"] {
            assert!(text.contains(part), "{part}: {text}");
        }
    }
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    let rows = ls_json(&db);
    assert_eq!(rows.len(), 5, "{rows:?}");
    for r in &rows {
        assert_eq!(r["response_bytes"], 18, "{r}");
        assert_eq!(r["error_kind"], "upstream_reset", "{r}");
    }
}
