//! Protocol fidelity with peers mf's other tests do not use: WebSocket permessage-deflate
//! (RFC 7692) through the recording proxy and out of the replay, and `grpc-message` written
//! as gRPC's HTTP/2 mapping says.

use std::process::{Command, Stdio};

use crate::common::*;

/// Runs a helper script under `replay-tests/servers/` to completion and returns its JSON
/// lines (stdout); a failing script fails the test with its stderr.
fn script_json(program: &str, script: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new(program)
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
    let mut lines = script_json("python3", "grpc_status.py", &["call", addr, path]);
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
