//! Protocol fidelity with peers mf's other tests do not use: WebSocket permessage-deflate
//! (RFC 7692) through the recording proxy and out of the replay, and `grpc-message` written
//! as gRPC's HTTP/2 mapping says.

use std::process::{Command, Stdio};

use crate::common::*;

/// Runs a helper script under `replay-tests/servers/` to completion and returns its JSON
/// lines (stdout); a failing script fails the test with its stderr.
fn script_json(program: &[&str], script: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(program[0])
        .args(&program[1..])
        .arg(tests_dir().join("servers").join(script))
        .args(args)
        .env("NO_PROXY", "*")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        .env_remove("grpc_proxy")
        .env("TMPDIR", temp_root())
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {script}: {e}"));
    assert!(
        out.status.success(),
        "{script} {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{script} printed {l:?}: {e}")))
        .collect()
}

// ---------------------------------------------------------------------------------------
// gRPC status messages
// ---------------------------------------------------------------------------------------

const GRPC_DETAILS: &str = "déjà vu: 100% of /fid.Status/Fail failed";

fn grpc_call(addr: &str, path: &str) -> serde_json::Value {
    let mut lines = script_json(&["python3"], "grpc_status.py", &["call", addr, path]);
    assert_eq!(lines.len(), 1, "{lines:?}");
    lines.remove(0)
}

/// The `grpc-message` line exactly as it came over the wire, for a unary call to `path`.
fn raw_grpc_message(addr: &str, path: &str) -> String {
    // One length-prefixed message: uncompressed, 4 bytes, "ping".
    let body = shared_file("grpc-ping.bin", b"\0\0\0\0\x04ping");
    let r = curl(&[
        "--http2-prior-knowledge",
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "--data-binary",
        &format!("@{}", body.display()),
        &format!("http://{addr}{path}"),
    ]);
    assert_eq!(r.exit, 0, "{r:?}");
    r.headers
        .lines()
        .find_map(|l| {
            l.split_once(':')
                .filter(|(name, _)| name.eq_ignore_ascii_case("grpc-message"))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| panic!("no grpc-message in {}", r.headers))
}

/// Records one failing call (a status message with spaces, `:`, `/`, `.`, `%` and non-ASCII)
/// and returns the database and the proxy-side raw `grpc-message`.
fn record_failing_call(dir: &std::path::Path) -> (std::path::PathBuf, String) {
    let db = dir.join("grpc-status.db");
    let server = start_python("grpc_status.py", &["serve"]);
    let mut recorder = start_recorder(&server.url(), &db, &[]);
    let addr = recorder.addr().to_string();
    let through = grpc_call(&addr, "/fid.Status/Fail");
    assert_eq!(through["code"], "FAILED_PRECONDITION", "{through}");
    assert_eq!(through["details"], GRPC_DETAILS);
    let wire = raw_grpc_message(&addr, "/fid.Status/Fail");
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    (db, wire)
}

#[test]
fn grpc_unmatched_call_message_is_readable_and_unescaped_on_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let (db, _) = record_failing_call(dir.path());
    let mut replay = start_replay(&db, &[]);
    let addr = replay.addr().to_string();
    let got = grpc_call(&addr, "/fid.Status/Missing");
    assert_eq!(got["code"], "UNIMPLEMENTED", "{got}");
    assert_eq!(
        got["details"],
        "mf: no recorded call matches /fid.Status/Missing"
    );
    let wire = raw_grpc_message(&addr, "/fid.Status/Missing");
    assert_eq!(wire, "mf: no recorded call matches /fid.Status/Missing");
    assert!(!wire.contains("%3A") && !wire.contains("%20"), "{wire}");
    assert!(replay.interrupt().success(), "{}", replay.stderr());
}

#[test]
fn grpc_recorded_message_is_replayed_exactly_as_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let (db, recorded_wire) = record_failing_call(dir.path());
    // grpcio escapes '%' and the UTF-8 bytes, nothing else.
    assert_eq!(
        recorded_wire,
        "d%C3%A9j%C3%A0 vu: 100%25 of /fid.Status/Fail failed"
    );
    let mut replay = start_replay(&db, &[]);
    let addr = replay.addr().to_string();
    let got = grpc_call(&addr, "/fid.Status/Fail");
    assert_eq!(got["code"], "FAILED_PRECONDITION", "{got}");
    assert_eq!(got["details"], GRPC_DETAILS);
    assert_eq!(raw_grpc_message(&addr, "/fid.Status/Fail"), recorded_wire);
    assert!(replay.interrupt().success(), "{}", replay.stderr());
}

// ---------------------------------------------------------------------------------------
// WebSocket permessage-deflate
// ---------------------------------------------------------------------------------------

/// What every client of the scenario receives; the 22 400-character "big" text (by digest)
/// is left `null` for [`expect_scenario`] to fill.
fn deflate_scenario_messages(with_fragmented: bool) -> Vec<serde_json::Value> {
    let mut v = vec![
        serde_json::json!({"text": "welcome"}),
        serde_json::json!({"text": "echo: hello"}),
        serde_json::Value::Null,
    ];
    if with_fragmented {
        v.push(serde_json::json!({"text": "echo: client"}));
    }
    v.extend([
        serde_json::json!({"text": "echo: hello"}),
        serde_json::json!({"binary": "030201"}),
        serde_json::json!({"text": "part1-part2-part3"}),
        serde_json::json!({"closed": 1000, "reason": "done"}),
    ]);
    v
}

/// `ws_deflate_client.py URL deflate|none`: (the negotiated extensions, what it received).
fn py_client(url: &str, compression: &str) -> (serde_json::Value, Vec<serde_json::Value>) {
    let mut lines = script_json(&["python3"], "ws_deflate_client.py", &[url, compression]);
    let ext = lines.remove(0)["extensions"].clone();
    (ext, lines)
}

/// `ws_raw_deflate_client.py URL OFFER`: (the answer, what it received, how many messages
/// came compressed).
fn raw_client(url: &str, offer: &str) -> (serde_json::Value, Vec<serde_json::Value>, i64) {
    let mut lines = script_json(&["python3"], "ws_raw_deflate_client.py", &[url, offer]);
    let ext = lines.remove(0)["extensions"].clone();
    let compressed = lines.pop().and_then(|l| l["compressed_messages"].as_i64());
    (ext, lines, compressed.expect("a compressed_messages line"))
}

/// Node's built-in WebSocket client, when this machine's Node has one (Node 20 behind
/// `--experimental-websocket`, Node 22 on by default); `None` otherwise.
fn node_client(url: &str) -> Option<(serde_json::Value, Vec<serde_json::Value>)> {
    let has = |flags: &[&str]| {
        Command::new("node")
            .args(flags)
            .args([
                "-e",
                "process.exit(typeof WebSocket === 'function' ? 0 : 1)",
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    let program: &[&str] = if has(&[]) {
        &["node"]
    } else if has(&["--experimental-websocket"]) {
        &["node", "--experimental-websocket"]
    } else {
        eprintln!("note: no Node with a built-in WebSocket here; its client was not tried");
        return None;
    };
    let mut lines = script_json(program, "ws_deflate_client.mjs", &[url]);
    let ext = lines.remove(0)["extensions"].clone();
    Some((ext, lines))
}

/// Records one session of the Python client (compression on) against a server with
/// compression on, and returns the database and what the client received.
fn record_deflate_session(dir: &std::path::Path) -> (std::path::PathBuf, Vec<serde_json::Value>) {
    let db = dir.join("ws-deflate.db");
    let server = start_python("ws_deflate_server.py", &[]);
    let mut recorder = start_recorder(&server.url(), &db, &[]);
    let url = format!("ws://{}/chat", recorder.addr());
    let (ext, got) = py_client(&url, "deflate");
    // The server's answer reached the client unchanged: compression is on end to end.
    assert_eq!(
        ext,
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    );
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    (db, got)
}

/// The scenario's expected messages with the big text's line taken from `got` (checked for
/// its length only: its digest is whatever the server's text hashes to).
fn expect_scenario(got: &[serde_json::Value], with_fragmented: bool) -> Vec<serde_json::Value> {
    let mut want = deflate_scenario_messages(with_fragmented);
    let big = got.get(2).cloned().unwrap_or_default();
    assert_eq!(big["len"], 22400, "{got:?}");
    want[2] = big;
    want
}

#[test]
fn websocket_deflate_is_negotiated_through_the_proxy_and_recorded_inflated() {
    let dir = tempfile::tempdir().unwrap();
    let (db, got) = record_deflate_session(dir.path());
    assert_eq!(got, expect_scenario(&got, true));

    let rows = ls_json(&db);
    assert_eq!(rows.len(), 1, "{rows:?}");
    let show = mf_run(&[
        "show",
        db.to_str().unwrap(),
        &rows[0]["id"].to_string(),
        "--json",
    ]);
    assert!(
        show.status.success(),
        "{}",
        String::from_utf8_lossy(&show.stderr)
    );
    let ex: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
    let request_ext = ex["request"]["headers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|h| {
            h[0].as_str()
                .is_some_and(|n| n.eq_ignore_ascii_case("sec-websocket-extensions"))
        })
        .cloned();
    assert_eq!(
        request_ext.map(|h| h[1].clone()),
        Some(serde_json::json!(
            "permessage-deflate; client_max_window_bits"
        )),
        "the client's offer went upstream as sent"
    );
    let frames: Vec<(String, String, bool, bool)> = ex["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["direction"].as_str().unwrap().to_string(),
                m["data"]["text"]
                    .as_str()
                    .unwrap_or("")
                    .chars()
                    .take(30)
                    .collect(),
                m["kind"]["compressed"].as_bool().unwrap_or(false),
                m["kind"]["fin"].as_bool().unwrap(),
            )
        })
        .collect();
    let f = |d: &str, t: &str, c: bool, fin: bool| (d.to_string(), t.to_string(), c, fin);
    // Readable text, with the compressed flag where RSV1 was on the wire: on the first frame
    // of each compressed message, not on continuations.
    assert!(
        frames.contains(&f("server", "welcome", true, true)),
        "{frames:?}"
    );
    assert!(
        frames.contains(&f("client", "hello", true, true)),
        "{frames:?}"
    );
    assert!(
        frames.contains(&f("client", "cli", true, false)),
        "{frames:?}"
    );
    assert!(
        frames.contains(&f("client", "ent", false, false)),
        "{frames:?}"
    );
    assert!(
        frames.contains(&f("server", "part1-", true, false)),
        "{frames:?}"
    );
    assert!(
        frames.contains(&f("server", "part2-", false, false)),
        "{frames:?}"
    );
    assert!(
        frames.contains(&f("server", "line 00000: the quick brown fo", true, true)),
        "{frames:?}"
    );
    let text = String::from_utf8_lossy(
        &mf_run(&["show", db.to_str().unwrap(), &rows[0]["id"].to_string()]).stdout,
    )
    .into_owned();
    assert!(text.contains("ws op=1 deflate 7B \"welcome\""), "{text}");
}

#[test]
fn websocket_deflate_replay_negotiates_with_compressing_clients_and_serves_plain_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let (db, recorded) = record_deflate_session(dir.path());
    let mut replay = start_replay(&db, &[]);
    let url = format!("ws://{}/chat", replay.addr());

    // websockets with compression: the replay answers its offer.
    let (ext, got) = py_client(&url, "deflate");
    assert_eq!(ext, "permessage-deflate");
    assert_eq!(got, recorded);
    // websockets without compression: the same messages, uncompressed.
    let (ext, got) = py_client(&url, "none");
    assert_eq!(ext, serde_json::Value::Null);
    assert_eq!(got, recorded);
    // A client on a bare socket with zlib, asking for no context takeover on both sides and
    // a 512-byte server window; it inflates each message alone with that window.
    let (ext, got, compressed) = raw_client(
        &url,
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9; client_max_window_bits",
    );
    assert_eq!(
        ext,
        "permessage-deflate; server_no_context_takeover; server_max_window_bits=9; client_no_context_takeover"
    );
    assert_eq!(got, recorded);
    assert_eq!(
        compressed, 7,
        "every recorded compressed message came compressed"
    );
    // The same client with context takeover both ways (its second "hello" is a
    // back-reference the replay has to inflate).
    let (ext, got, compressed) = raw_client(&url, "x-unknown; a=1, permessage-deflate");
    assert_eq!(ext, "permessage-deflate");
    assert_eq!(got, recorded);
    assert_eq!(compressed, 7);
    // Without an offer: plain frames.
    let (ext, got, compressed) = raw_client(&url, "x-unknown");
    assert_eq!(ext, serde_json::Value::Null);
    assert_eq!(got, recorded);
    assert_eq!(compressed, 0);
    assert!(replay.interrupt().success(), "{}", replay.stderr());
}

#[test]
fn websocket_replay_without_recorded_deflate_declines_the_offer() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ws-plain.db");
    // The existing test server has compression off: it declines the offer the proxy forwards.
    let server = start_python("ws_server.py", &[]);
    let mut recorder = start_recorder(&server.url(), &db, &[]);
    let (ext, recorded) = py_client(&format!("ws://{}/chat", recorder.addr()), "deflate");
    assert_eq!(ext, serde_json::Value::Null);
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    drop(server);
    assert_eq!(recorded[2], serde_json::json!({"text": "echo: big"}));

    let mut replay = start_replay(&db, &[]);
    let url = format!("ws://{}/chat", replay.addr());
    let (ext, got) = py_client(&url, "deflate");
    assert_eq!(ext, serde_json::Value::Null);
    assert_eq!(got, recorded);
    let (ext, got, compressed) = raw_client(&url, "permessage-deflate");
    assert_eq!((ext, compressed), (serde_json::Value::Null, 0));
    assert_eq!(got, recorded);
    assert!(replay.interrupt().success(), "{}", replay.stderr());
}

/// Node's own client (undici), through the proxy and against the replay. Its API cannot send
/// a fragmented message, and replay matches client frames one by one, so it gets a recording
/// of its own.
#[test]
fn websocket_deflate_with_nodes_client_records_and_replays() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("ws-node.db");
    let server = start_python("ws_deflate_server.py", &[]);
    let mut recorder = start_recorder(&server.url(), &db, &[]);
    let Some((ext, recorded)) = node_client(&format!("ws://{}/chat", recorder.addr())) else {
        return;
    };
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    drop(server);
    assert_eq!(
        ext,
        "permessage-deflate; server_max_window_bits=12; client_max_window_bits=12"
    );
    assert_eq!(recorded, expect_scenario(&recorded, false));
    let mut replay = start_replay(&db, &[]);
    let (ext, got) = node_client(&format!("ws://{}/chat", replay.addr())).expect("node ran once");
    assert_eq!(ext, "permessage-deflate");
    assert_eq!(got, recorded);
    assert!(replay.interrupt().success(), "{}", replay.stderr());
}
