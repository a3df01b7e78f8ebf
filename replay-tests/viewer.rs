//! The viewer's HTTP side without a browser: the admin rules in front of the pages and the
//! live feed, `mf diagram`, and the refusals of `mf ui`.

use std::path::Path;

use crate::common::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Three exchanges through the proxy, two of them in one trace.
fn record(db: &Path) {
    let http = start_python("http_upstream.py", &[]);
    let mut rec = start_recorder(&http.url(), db, &[]);
    let base = rec.url();
    let traced = format!("traceparent: 00-{TRACE}-00f067aa0ba902b7-01");
    assert_eq!(
        curl(&["-H", &traced, &format!("{base}/json")]).status(),
        200
    );
    assert_eq!(
        curl(&["-H", &traced, &format!("{base}/fail")]).status(),
        503
    );
    assert_eq!(curl(&[&format!("{base}/counter")]).status(), 200);
    assert!(rec.interrupt().success(), "{}", rec.stderr());
}

fn admin_of(replay: &Proc) -> String {
    let mut admin = String::new();
    assert!(wait_until(std::time::Duration::from_secs(10), || {
        match replay.stderr().split("admin API at ").nth(1) {
            Some(rest) => {
                admin = rest.split_whitespace().next().unwrap_or("").to_string();
                true
            }
            None => false,
        }
    }));
    admin
}

#[test]
fn pages_and_the_live_feed_are_behind_the_admin_rules() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("v.db");
    record(&db);
    let mut replay = start_replay(&db, &["--admin", "127.0.0.1:0", "--admin-token", "s3cret"]);
    let admin = format!("http://{}", admin_of(&replay));

    assert_eq!(curl(&[&format!("{admin}/")]).status(), 401);
    assert_eq!(curl(&[&format!("{admin}/control")]).status(), 401);
    let opened = curl(&[&format!("{admin}/?token=s3cret")]);
    assert_eq!(opened.status(), 200, "{}", opened.headers);
    assert!(
        opened
            .headers
            .to_ascii_lowercase()
            .contains("set-cookie: mf_admin_token=s3cret; path=/; httponly; samesite=strict"),
        "{}",
        opened.headers
    );
    assert!(String::from_utf8_lossy(&opened.body).contains("/json"));
    let cookie = "Cookie: mf_admin_token=s3cret";
    let control = curl(&["-H", cookie, &format!("{admin}/control")]);
    assert_eq!(control.status(), 200);
    assert!(String::from_utf8_lossy(&control.body).contains("id=\"control\""));
    assert!(control
        .headers
        .to_ascii_lowercase()
        .contains("content-security-policy: default-src 'self'"));
    // A page of another site cannot use the browser's cookie.
    let cross = curl(&[
        "-H",
        cookie,
        "-H",
        "Origin: http://evil.example",
        &format!("{admin}/"),
    ]);
    assert_eq!(cross.status(), 403);
    // The token in a URL opens pages, never changes anything.
    let sneaky = curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"mode":"error"}"#,
        &format!("{admin}/api/mode?token=s3cret"),
    ]);
    assert_eq!(sneaky.status(), 401);

    // Traffic, then the live feed: an event at once and one a second.
    let host = ls_json(&db)[0]["url"]
        .as_str()
        .and_then(|u| u.strip_prefix("http://"))
        .and_then(|u| u.split('/').next())
        .map(|h| format!("Host: {h}"))
        .unwrap();
    for _ in 0..3 {
        assert_eq!(
            curl(&["-H", &host, &format!("{}/json", replay.url())]).status(),
            200
        );
    }
    let live = curl(&[
        "-N",
        "--max-time",
        "2.5",
        "-H",
        "Authorization: Bearer s3cret",
        &format!("{admin}/api/live"),
    ]);
    assert!(
        live.headers.contains("text/event-stream"),
        "{}",
        live.headers
    );
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&live.body)
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|l| serde_json::from_str(l).expect("each event is JSON"))
        .collect();
    assert!(events.len() >= 2, "{events:?}");
    assert_eq!(events[0]["requests"], 3, "{:?}", events[0]);
    assert_eq!(events[0]["mode"], "healthy");
    let observed: u64 = events[0]["latency_buckets"]
        .as_array()
        .map(|b| b.iter().filter_map(|b| b["count"].as_u64()).sum())
        .unwrap_or(0);
    assert_eq!(observed, 3, "{:?}", events[0]);
    assert!(replay.interrupt().success(), "{}", replay.stderr());

    // `mf ui`: no token, so the Host must be this machine's; it only reads.
    let ui = Proc::start(
        "mf ui",
        {
            let mut cmd = mf();
            cmd.arg("ui").arg(&db).args(["--listen", "127.0.0.1:0"]);
            cmd
        },
        "listening on",
    );
    let port = ui.addr().port();
    assert_eq!(
        curl(&[&format!("{}/?trace={TRACE}", ui.url())]).status(),
        200
    );
    let rebound = curl(&[
        "-H",
        &format!("Host: evil.example:{port}"),
        &format!("{}/", ui.url()),
    ]);
    assert_eq!(rebound.status(), 403);
    let write = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data",
        "{}",
        &format!("{}/", ui.url()),
    ]);
    assert_eq!(write.status(), 405);
}

#[test]
fn diagrams_of_a_trace_and_a_connection_and_bad_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("d.db");
    record(&db);
    let file = db.to_str().unwrap();
    let out = mf_run(&["diagram", file, "--trace", TRACE]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("sequenceDiagram\n    participant client\n    participant mf\n    participant h1 as 127.0.0.1:"), "{text}");
    assert!(text.contains("client->>mf: GET /json\n"), "{text}");
    assert!(text.contains("mf->>h1: GET /fail\n"), "{text}");
    assert!(text.contains("h1-->>mf: 503 ("), "{text}");
    assert!(!text.contains("/counter"), "{text}");
    let connection = ls_json(&db)[2]["connection_id"].to_string();
    let out = mf_run(&["diagram", file, "--connection", &connection]);
    let text = String::from_utf8_lossy(&out.stdout);
    // The header, three participants, four arrows of the one exchange.
    assert_eq!(text.lines().count(), 8, "{text}");
    assert!(text.contains("GET /counter"), "{text}");

    assert_eq!(mf_run(&["diagram", file]).status.code(), Some(2));
    assert_eq!(
        mf_run(&["diagram", file, "--trace", "0000"]).status.code(),
        Some(1)
    );
    let open = mf_run(&["ui", file, "--listen", "0.0.0.0:0"]);
    assert_eq!(open.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&open.stderr).contains("loopback only"));
    let missing = mf_run(&["ui", "/nonexistent/x.db"]);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no such recording"));
}
