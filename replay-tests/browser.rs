//! The viewer and the control center in a real browser: headless Chromium driven by
//! Selenium (`browser/drive.py`) over a recording made here through the proxy (HTTP with
//! curl, a WebSocket session, gRPC calls).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

/// The markup a recorded request carries: the viewer must show it, not run it.
const MARKUP: &str = "<script>window.__mf_xss=true</script><b>bold</b>";
/// The smallest PNG there is (1×1), as a recorded image body.
const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x56, 0xc7, 0x2f, 0x0d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// Runs `drive.py WHAT URL OUT` and returns what it found.
fn drive(what: &str, url: &str, out: &Path) -> serde_json::Value {
    let result = Command::new("python3")
        .arg(tests_dir().join("browser").join("drive.py"))
        .args([what, url])
        .arg(out)
        .env("NO_PROXY", "*")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        // Chromium's own temporary files stay in the test's folder.
        .env("TMPDIR", out)
        .env("HOME", out)
        .env("SE_OFFLINE", "true")
        .stdin(Stdio::null())
        .output()
        .expect("running drive.py");
    assert!(
        result.status.success(),
        "drive.py {what} failed:\n{}\n{}",
        String::from_utf8_lossy(&result.stdout),
        String::from_utf8_lossy(&result.stderr)
    );
    let stdout = String::from_utf8_lossy(&result.stdout);
    let line = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("drive.py printed {stdout:?}: {e}"))
}

fn python(script: &str, args: &[&str]) {
    let out = Command::new("python3")
        .arg(tests_dir().join("servers").join(script))
        .args(args)
        .env("NO_PROXY", "*")
        .env_remove("http_proxy")
        .env_remove("grpc_proxy")
        .stdin(Stdio::null())
        .output()
        .expect("running a client");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A recording of HTTP (JSON, a markup body, an image, a 503), one WebSocket session and
/// three gRPC calls, made through three proxy runs appending to one file.
fn record(db: &Path) {
    let http = start_python("http_upstream.py", &[]);
    let mut rec = start_recorder(&http.url(), db, &[]);
    let base = rec.url();
    assert_eq!(curl(&[&format!("{base}/json")]).status(), 200);
    let markup = curl(&[
        "-H",
        "content-type: text/html",
        "--data-binary",
        MARKUP,
        &format!("{base}/echo"),
    ]);
    assert_eq!(markup.status(), 200);
    let png = shared_file("pixel.png", PNG);
    let image = curl(&[
        "-H",
        "content-type: image/png",
        "--data-binary",
        &format!("@{}", png.display()),
        &format!("{base}/echo"),
    ]);
    assert_eq!(image.status(), 200);
    assert_eq!(curl(&[&format!("{base}/fail")]).status(), 503);
    assert!(rec.interrupt().success(), "{}", rec.stderr());

    let ws = start_python("ws_server.py", &[]);
    let mut rec = start_recorder(&ws.url(), db, &[]);
    python(
        "ws_client.py",
        &[&format!("ws://{}/chat", rec.addr()), "normal"],
    );
    assert!(rec.interrupt().success(), "{}", rec.stderr());

    let grpc = start_python("grpc_server.py", &[]);
    let mut rec = start_recorder(&grpc.url(), db, &[]);
    python("grpc_client.py", &[&rec.addr().to_string(), "faults"]);
    assert!(rec.interrupt().success(), "{}", rec.stderr());
}

#[test]
fn the_viewer_and_control_center_work_in_chromium() {
    require("chromium");
    require("chromedriver");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("seen.db");
    record(&db);
    let rows = ls_json(&db);
    assert_eq!(rows.len(), 4 + 1 + 3, "{rows:?}");

    let shots = dir.path().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let mut ui = Proc::start(
        "mf ui",
        {
            let mut cmd = mf();
            cmd.arg("ui").arg(&db).args(["--listen", "127.0.0.1:0"]);
            cmd
        },
        "listening on",
    );
    let found = drive("viewer", &ui.url(), &shots);
    assert_eq!(found["all_rows"], 8, "{found}");
    assert_eq!(found["websocket_rows"], 1, "{found}");
    assert_eq!(
        found["websocket_protocols"],
        serde_json::json!(["websocket"])
    );
    let ws = found["ws_messages"].as_array().cloned().unwrap_or_default();
    let from = |d: &str| ws.iter().filter(|m| m["direction"] == d).count();
    assert_eq!(
        (from("client"), from("server")),
        (9, 11),
        "every frame of the session, each way: {found}"
    );
    assert_eq!(ws[0]["direction"], "server");
    assert_eq!(ws[0]["content"], "welcome");
    assert_eq!(ws[1]["direction"], "client");
    assert_eq!(ws[1]["content"], "hello");
    let offsets: Vec<f64> = ws.iter().filter_map(|m| m["offset_ms"].as_f64()).collect();
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{offsets:?}");
    assert_eq!(found["ws_timeline_dots"], 20);
    // The "tick" the server pushed 300 ms after "push" is drawn that far along.
    let tick = ws
        .iter()
        .find(|m| m["content"] == "tick")
        .expect("the pushed tick");
    assert!(tick["offset_ms"].as_f64().unwrap_or(0.0) >= 300.0, "{tick}");
    assert_eq!(found["grpc_rows"], 3);
    assert_eq!(
        found["grpc_messages"],
        serde_json::json!([["client", "grpc"], ["server", "grpc"]])
    );
    assert_eq!(found["echo_rows"], 2);
    assert_eq!(found["markup_body_text"], MARKUP, "{found}");
    assert_eq!(found["markup_body_script_elements"], 0);
    assert_eq!(found["alerted"], false);
    assert!(
        found["curl"]
            .as_str()
            .is_some_and(|c| c.contains("curl -X POST") && c.contains("/echo")),
        "{found}"
    );
    assert_eq!(found["image_src_prefix"], "data:image/png;base64,");
    assert!(found["json_folds"].as_i64().unwrap_or(0) >= 2, "{found}");
    assert!(ui.interrupt().success(), "{}", ui.stderr());

    // The control center of a running replay switches it to failing every request.
    let mut replay = start_replay(&db, &["--admin", "127.0.0.1:0"]);
    let url = format!("{}/json", replay.url());
    // The recording spans three hosts, so replay matches on the one the client names.
    let recorded_host = rows[0]["url"]
        .as_str()
        .and_then(|u| u.strip_prefix("http://"))
        .and_then(|u| u.split('/').next())
        .map(|h| format!("Host: {h}"))
        .expect("the first exchange's host");
    let get = || curl(&["-H", &recorded_host, &url]);
    for _ in 0..5 {
        assert_eq!(get().status(), 200);
    }
    assert!(wait_until(Duration::from_secs(10), || replay
        .stderr()
        .contains("admin API at")));
    let admin = replay
        .stderr()
        .split("admin API at ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map(String::from)
        .expect("the admin address");
    let found = drive("control", &format!("http://{admin}"), &shots);
    assert_eq!(found["mode_before"], "healthy", "{found}");
    assert_eq!(found["mode_after"], "error", "{found}");
    assert_eq!(found["active_card"], "error");
    assert!(
        found["presets"]
            .as_array()
            .is_some_and(|p| p.iter().any(|n| n == "network-issues")),
        "{found}"
    );
    assert_eq!(found["histogram_bars"], 15, "{found}");
    let failed = get();
    assert!(
        (500..600).contains(&failed.status()),
        "after the switch: {}",
        failed.status()
    );
    assert!(replay.interrupt().success(), "{}", replay.stderr());
    for shot in ["viewer.png", "websocket.png", "detail.png", "control.png"] {
        let size = std::fs::metadata(shots.join(shot)).map_or(0, |m| m.len());
        assert!(size > 1000, "{shot} is {size} bytes");
    }
}
