//! WebSocket through the recording proxy and back out of the replay, with a real `websockets`
//! server and client.

use std::process::{Command, Stdio};

use crate::common::*;

/// Runs `ws_client.py URL MODE` and returns its JSON lines.
pub(crate) fn client(url: &str, mode: &str) -> Vec<serde_json::Value> {
    let out = Command::new("python3")
        .arg(tests_dir().join("servers").join("ws_client.py"))
        .args([url, mode])
        .env("NO_PROXY", "*")
        .env_remove("http_proxy")
        .env_remove("all_proxy")
        .stdin(Stdio::null())
        .output()
        .expect("running ws_client.py");
    assert!(
        out.status.success(),
        "ws client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("client prints JSON"))
        .collect()
}

#[test]
fn websocket_sessions_replay_frame_for_frame() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ws.db");
    let server = start_python("ws_server.py", &[]);
    let mut recorder = start_recorder(&server.url(), &db, &[]);
    let ws_url = format!("ws://{}/chat", recorder.addr());
    let normal = client(&ws_url, "normal");
    let error = client(&ws_url, "error");
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    drop(server);

    let expected_start = serde_json::json!([
        {"text": "welcome"}, {"text": "echo: hello"}, {"binary": "030201"}, {"text": "echo: client"},
        {"text": "part1-part2-part3"}, {"pong": true}, {"text": "tick"}
    ]);
    assert_eq!(serde_json::json!(normal[..7]), expected_start);
    assert_eq!(
        normal[7],
        serde_json::json!({"closed": 1000, "reason": "done"})
    );
    assert_eq!(
        error[7],
        serde_json::json!({"closed": 1011, "reason": "server failure"})
    );

    let rows = ls_json(&db);
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert!(rows
        .iter()
        .all(|r| r["protocol"] == "websocket" && r["status"] == 101));
    // Client: hello, binary, 3 fragments, frag, ping, push, close-error, close.
    assert_eq!(
        (
            rows[1]["messages_in"].as_i64(),
            rows[1]["messages_out"].as_i64()
        ),
        (Some(10), Some(11))
    );
    let show = mf_run(&["show", db.to_str().unwrap(), &rows[1]["id"].to_string()]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert!(
        text.contains("ws op=1 (fragment) 6B \"part1-\""),
        "fragments kept as sent:\n{text}"
    );
    assert!(
        text.contains("ws op=8 16B 03f3"),
        "close code 1011 kept:\n{text}"
    );
    assert!(text.contains("ws op=9 13B \"are you there\""), "{text}");

    let mut replay = start_replay(&db, &[]);
    let url = format!("ws://{}/chat", replay.addr());
    let started = std::time::Instant::now();
    assert_eq!(client(&url, "normal"), normal);
    // The timer push came 300 ms after "push" upstream; the replay keeps that delay.
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!(client(&url, "error"), error);
    assert!(replay.interrupt().success(), "{}", replay.stderr());
}

#[test]
fn client_dropping_a_websocket_is_recorded_and_the_proxy_survives() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ws-abort.db");
    let server = start_python("ws_server.py", &[]);
    let mut recorder = start_recorder(&server.url(), &db, &[]);
    let url = format!("ws://{}/chat", recorder.addr());
    assert_eq!(
        client(&url, "abort"),
        [serde_json::json!({"text": "welcome"})]
    );
    // The proxy keeps serving after the reset.
    assert_eq!(client(&url, "normal").len(), 8);
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    let rows = ls_json(&db);
    assert_eq!(rows.len(), 2, "{rows:?}");
    let dropped = &rows[0];
    assert_eq!(dropped["protocol"], "websocket");
    assert!(dropped["messages_in"].as_i64() >= Some(1), "{dropped}");
    assert!(dropped["messages_out"].as_i64() >= Some(1), "{dropped}");
    assert!(
        dropped["error"]
            .as_str()
            .is_some_and(|e| e.contains("client")),
        "{dropped}"
    );
}

/// Issue 5 on WebSocket: rules close a session with a chosen code, drop it abnormally, and
/// leave the next one alone.
#[test]
fn replay_rules_close_and_drop_websocket_sessions() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ws.db");
    let server = start_python("ws_server.py", &[]);
    let mut recorder = start_recorder(&server.url(), &db, &[]);
    let url = format!("ws://{}/chat", recorder.addr());
    let recorded = client(&url, "first");
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    drop(server);
    assert!(recorded[0].get("text").is_some(), "{recorded:?}");

    let config = dir.path().join("ws-faults.yaml");
    std::fs::write(
        &config,
        "rules:\n  - match: {protocol: websocket}\n    nth: 1\n    fault: {ws_close: {code: 1013, reason: try later}}\n  - match: {protocol: websocket}\n    nth: 2\n    fault: ws_drop\n",
    )
    .unwrap();
    let replay = start_replay(&db, &["--config", config.to_str().unwrap()]);
    let rurl = format!("ws://{}/chat", replay.addr());
    assert_eq!(
        client(&rurl, "first")[0],
        serde_json::json!({"closed": 1013, "reason": "try later"})
    );
    assert_eq!(client(&rurl, "first")[0]["closed"], 1006);
    assert_eq!(client(&rurl, "first"), recorded);
}
