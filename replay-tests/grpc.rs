//! gRPC through the recording proxy and back out of the replay, with a real grpcio server and
//! client generated from `fixtures/routes.proto` at test time.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

/// Runs `grpc_client.py ADDR MODE` and returns its JSON lines.
pub(crate) fn client(addr: &str, mode: &str) -> Vec<serde_json::Value> {
    let out = Command::new("python3")
        .arg(tests_dir().join("servers").join("grpc_client.py"))
        .args([addr, mode])
        .env("NO_PROXY", "*")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("grpc_proxy")
        .stdin(Stdio::null())
        .output()
        .expect("running grpc_client.py");
    assert!(
        out.status.success(),
        "grpc client failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("client prints JSON"))
        .collect()
}

fn host_port(p: &Proc) -> String {
    p.addr().to_string()
}

#[test]
fn all_four_call_kinds_replay_identically() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("grpc.db");
    let server = start_python("grpc_server.py", &[]);
    let mut recorder = start_recorder(&server.url(), &db, &[]);
    let recorded = client(&host_port(&recorder), "all");
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    drop(server);

    let by_call = |v: &[serde_json::Value], name: &str| -> serde_json::Value {
        v.iter()
            .find(|l| l["call"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("no {name} in {v:?}"))
    };
    // Through the proxy the client saw the real service.
    assert_eq!(
        by_call(&recorded, "unary")["messages"],
        serde_json::json!([[42, "got a"]])
    );
    assert_eq!(
        by_call(&recorded, "unary")["trailing"],
        serde_json::json!([["checksum-bin", "15fe"], ["served-by", "grpc_server"]])
    );
    assert_eq!(by_call(&recorded, "not_found")["code"], "NOT_FOUND");
    assert_eq!(by_call(&recorded, "deadline")["code"], "DEADLINE_EXCEEDED");
    assert_eq!(
        by_call(&recorded, "server_stream")["messages"]
            .as_array()
            .map(Vec::len),
        Some(5)
    );
    assert_eq!(
        by_call(&recorded, "client_stream")["messages"],
        serde_json::json!([[5, 15]])
    );
    assert_eq!(
        by_call(&recorded, "bidi")["messages"]
            .as_array()
            .map(Vec::len),
        Some(6)
    );

    let rows = ls_json(&db);
    assert_eq!(rows.len(), 7, "{rows:?}");
    assert!(rows.iter().all(|r| r["protocol"] == "grpc"));
    let status: Vec<&str> = rows
        .iter()
        .map(|r| r["grpc_status"].as_str().unwrap_or("-"))
        .collect();
    assert_eq!(
        [&status[..3], &status[4..]].concat(),
        ["0", "0", "5", "0", "0", "0"]
    );
    // The expired deadline: either the upstream's DEADLINE_EXCEEDED arrived before the
    // client's reset, or the client's cancel is what was recorded.
    assert!(
        status[3] == "4"
            || rows[3]["error"]
                .as_str()
                .is_some_and(|e| e.contains("client cancelled")),
        "{:?}",
        rows[3]
    );
    let chat = rows
        .iter()
        .find(|r| r["url"].as_str().is_some_and(|u| u.ends_with("/Chat")))
        .unwrap();
    assert_eq!(
        (chat["messages_in"].as_i64(), chat["messages_out"].as_i64()),
        (Some(3), Some(6))
    );
    let show = mf_run(&["show", db.to_str().unwrap(), &chat["id"].to_string()]);
    let text = String::from_utf8_lossy(&show.stdout);
    assert_eq!(
        text.lines().filter(|l| l.contains(" grpc ")).count(),
        9,
        "{text}"
    );

    // The upstream is gone; the replay answers the same client identically.
    let mut replay = start_replay(&db, &[]);
    let started = Instant::now();
    let replayed = client(&host_port(&replay), "all");
    assert_eq!(replayed, recorded);
    // Recorded timing: the server stream alone took 4 × 50 ms upstream.
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(replay.interrupt().success(), "{}", replay.stderr());

    let mut fast = start_replay(&db, &["--latency", "none"]);
    let again = client(&host_port(&fast), "all");
    for name in [
        "unary",
        "not_found",
        "server_stream",
        "client_stream",
        "bidi",
    ] {
        assert_eq!(
            by_call(&again, name),
            by_call(&recorded, name),
            "{name} with --latency none"
        );
    }
    assert_eq!(by_call(&again, "deadline")["code"], "DEADLINE_EXCEEDED");
    assert!(fast.interrupt().success());
}

#[test]
fn unknown_call_gets_unimplemented_from_replay() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("empty.db");
    let server = start_python("grpc_server.py", &[]);
    let mut recorder = start_recorder(&server.url(), &db, &[]);
    let _ = client(&host_port(&recorder), "cancel");
    assert!(recorder.interrupt().success());
    let replay = start_replay(&db, &[]);
    // GetPoint was never recorded.
    let lines = client(&host_port(&replay), "all");
    let unary = lines.iter().find(|l| l["call"] == "unary").unwrap();
    assert_eq!(unary["code"], "UNIMPLEMENTED", "{unary}");
    assert!(
        unary["details"]
            .as_str()
            .unwrap_or("")
            .contains("no recorded call"),
        "{unary}"
    );
}

#[test]
fn client_cancel_and_upstream_death_are_recorded_and_the_proxy_survives() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("errors.db");
    let mut server = start_python("grpc_server.py", &[]);
    let mut recorder = start_recorder(&server.url(), &db, &[]);
    let addr = host_port(&recorder);

    // A client that cancels a server stream after two messages.
    let cancelled = client(&addr, "cancel");
    assert_eq!(cancelled[0]["messages"].as_array().map(Vec::len), Some(2));

    // An upstream that dies in the middle of a stream.
    let mut long = Command::new("python3")
        .arg(tests_dir().join("servers").join("grpc_client.py"))
        .args([addr.as_str(), "long"])
        .env("NO_PROXY", "*")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(long.stdout.take().unwrap());
    let mut line = String::new();
    for _ in 0..3 {
        line.clear();
        std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
        assert!(line.contains("progress"), "{line}");
    }
    server.kill9();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).unwrap();
    assert!(long.wait().unwrap().success());
    let last: serde_json::Value = serde_json::from_str(rest.lines().last().unwrap()).unwrap();
    assert_ne!(last["code"], "OK", "{rest}");

    // Still serving: the next call gets a clear error instead of a dead proxy.
    let after = curl(&[
        "--http2-prior-knowledge",
        &format!("http://{addr}/anything"),
    ]);
    assert_eq!(after.status(), 502, "{after:?}");
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());

    let rows = ls_json(&db);
    let errors: Vec<String> = rows
        .iter()
        .filter_map(|r| r["error"].as_str().map(String::from))
        .collect();
    assert!(
        errors.iter().any(|e| e.contains("client cancelled")),
        "{rows:?}"
    );
    assert!(errors.iter().any(|e| e.contains("upstream")), "{rows:?}");
    // The client read three messages through the proxy before the upstream died, so the
    // recording holds at least three: a replay with fewer lost them on the way out.
    let died = rows
        .iter()
        .find(|r| r["error"].as_str().is_some_and(|e| e.contains("upstream")))
        .unwrap();
    assert!(died["messages_out"].as_i64() >= Some(3), "{died:?}");

    // Replayed, the upstream's death is a reset stream after the messages it had sent.
    let replay = start_replay(&db, &[]);
    let lines = client(&host_port(&replay), "long");
    let last = lines.last().unwrap();
    assert_ne!(last["code"], "OK", "{lines:?}");
    assert!(
        lines.iter().filter(|l| l.get("progress").is_some()).count() >= 3,
        "{lines:?}"
    );
}

/// Issue 5 on gRPC: rules pick a call by `service/method` and inject a grpc-status, a hang
/// (the client's deadline expires) or an HTTP-style error mapped to UNAVAILABLE.
#[test]
fn replay_rules_inject_grpc_faults_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("grpc.db");
    let server = start_python("grpc_server.py", &[]);
    let mut recorder = start_recorder(&server.url(), &db, &[]);
    let recorded = client(&host_port(&recorder), "faults");
    assert!(recorded.iter().all(|l| l["code"] == "OK"), "{recorded:?}");
    assert!(recorder.interrupt().success());
    drop(server);

    let config = dir.path().join("faults.yaml");
    std::fs::write(
        &config,
        "rules:\n  - match: {grpc: mftest.Routes/GetPoint}\n    nth: 1\n    fault: {grpc_status: {code: 14, message: backend down}}\n  - match: {grpc: mftest.Routes/GetPoint}\n    nth: 2\n    fault: hang\n",
    )
    .unwrap();
    let replay = start_replay(
        &db,
        &["--config", config.to_str().unwrap(), "--latency", "none"],
    );
    let got = client(&host_port(&replay), "faults");
    let codes: Vec<&str> = got
        .iter()
        .map(|l| l["code"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(codes, ["UNAVAILABLE", "DEADLINE_EXCEEDED", "OK"], "{got:?}");
    assert_eq!(got[0]["details"], "backend down");
    assert_eq!(got[2]["messages"], recorded[2]["messages"]);
}
