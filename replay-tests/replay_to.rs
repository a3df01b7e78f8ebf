//! `mf replay FILE --to URL`: recorded requests sent to live services — two versions of a
//! JSON API with fresh ids and tokens on every run, a gRPC bidi call, a WebSocket session,
//! and targets that refuse, reset, answer garbage or hang.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use crate::common::judged::{junit, output_text};
use crate::common::*;

/// Records versioned_api.py (v1) through the proxy walking its flow once: login, create,
/// read, delete.
fn record_api_flow(dir: &Path) -> PathBuf {
    let db = dir.join("api.db");
    let server = start_python("versioned_api.py", &[]);
    let mut recorder = start_recorder(&server.url(), &db, &[]);
    let out = Command::new("python3")
        .arg(tests_dir().join("servers").join("versioned_client.py"))
        .arg(recorder.addr().to_string())
        .stdin(Stdio::null())
        .output()
        .expect("running versioned_client.py");
    assert!(
        out.status.success(),
        "client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    assert_eq!(ls_rows(&db), 4);
    db
}

/// `mf replay DB --to URL EXTRA...` to completion.
fn replay_to(db: &Path, url: &str, extra: &[&str]) -> Output {
    mf().arg("replay")
        .arg(db)
        .args(["--to", url])
        .args(extra)
        .output()
        .expect("running mf replay --to")
}

fn read_json(path: &Path) -> serde_json::Value {
    let raw = std::fs::read(path).expect("report written");
    serde_json::from_slice(&raw).expect("report is JSON")
}

/// The report's entries.
fn entries(report: &serde_json::Value) -> Vec<serde_json::Value> {
    report["entries"].as_array().cloned().unwrap_or_default()
}

/// (method path, [difference paths]) of the entries that differ.
fn differing(report: &serde_json::Value) -> Vec<(String, Vec<String>)> {
    entries(report)
        .iter()
        .filter(|e| e["outcome"] == "differ")
        .map(|e| {
            let paths = e["differences"]
                .as_array()
                .map(|d| {
                    d.iter()
                        .map(|d| d["path"].as_str().unwrap_or("").to_string())
                        .collect()
                })
                .unwrap_or_default();
            (
                format!(
                    "{} {}",
                    e["method"].as_str().unwrap_or(""),
                    e["path"].as_str().unwrap_or("")
                ),
                paths,
            )
        })
        .collect()
}

/// The JUnit file: (testcase name, failures) per testcase.
fn junit_cases(path: &Path) -> Vec<(String, usize)> {
    junit(path)
        .1
        .into_iter()
        .map(|c| (c.name, c.failures.len()))
        .collect()
}

#[test]
fn two_versions_of_an_api_give_exactly_the_known_differences() {
    let dir = tempfile::tempdir().unwrap();
    let db = record_api_flow(dir.path());

    // A fresh v1: new token, new ids, new timestamps. Rebinding and noise rules make it equal.
    let v1 = start_python("versioned_api.py", &[]);
    let out = replay_to(&db, &v1.url(), &["--speed", "max", "--times", "2"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("8 exchanges: 8 matched"),
        "{}",
        output_text(&out)
    );

    // The filters of `mf ls` pick what is sent: the two POSTs answered 2xx (login, create).
    let out = replay_to(
        &db,
        &v1.url(),
        &[
            "--speed",
            "max",
            "--method",
            "POST",
            "--status",
            "2xx",
            "--recorded-host",
            "127.0.0.1",
        ],
    );
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 exchanges: 2 matched"),
        "{}",
        output_text(&out)
    );
    let out = replay_to(&db, &v1.url(), &["--recorded-host", "elsewhere.test"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("the selection holds no client request"),
        "{}",
        output_text(&out)
    );

    let v2 = start_python("versioned_api.py", &["--v2"]);
    let report = dir.path().join("report.json");
    let junit = dir.path().join("junit.xml");
    let out = replay_to(
        &db,
        &v2.url(),
        &[
            "--report",
            report.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("4 exchanges: 2 matched, 2 differing, 0 failed"),
        "{}",
        output_text(&out)
    );
    assert!(
        stdout.contains("$.currency") && stdout.contains("EUR") && stdout.contains("USD"),
        "{}",
        output_text(&out)
    );
    assert!(
        stdout.contains("204") && stdout.contains("200"),
        "{}",
        output_text(&out)
    );

    let report = read_json(&report);
    assert_eq!(entries(&report).len(), 4, "{report:#}");
    let diffs = differing(&report);
    assert_eq!(diffs.len(), 2, "{diffs:?}");
    assert!(
        diffs[0].0.starts_with("GET /items/") && diffs[0].1 == ["$.currency"],
        "{diffs:?}"
    );
    assert!(
        diffs[1].0.starts_with("DELETE /items/") && diffs[1].1 == ["status"],
        "{diffs:?}"
    );
    let diff_entry = entries(&report)
        .into_iter()
        .find(|e| e["outcome"] == "differ")
        .unwrap();
    assert_eq!(diff_entry["differences"][0]["recorded"], "\"EUR\"");
    assert_eq!(diff_entry["differences"][0]["now"], "\"USD\"");

    let cases = junit_cases(&junit);
    assert_eq!(cases.len(), 4, "{cases:?}");
    assert_eq!(cases[0], ("POST /login".to_string(), 0));
    assert_eq!(cases[1], ("POST /items".to_string(), 0));
    assert!(
        cases[2].0.starts_with("GET /items/") && cases[2].1 == 1,
        "{cases:?}"
    );
    assert!(
        cases[3].0.starts_with("DELETE /items/") && cases[3].1 == 1,
        "{cases:?}"
    );

    // Gates decide instead: half matched is enough for 'match<50%', not for 'match<75%'.
    let out = replay_to(
        &db,
        &v2.url(),
        &["--speed", "max", "--fail-if", "match<50%"],
    );
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = replay_to(
        &db,
        &v2.url(),
        &["--speed", "max", "--fail-if", "match<75%"],
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let out = replay_to(&db, &v2.url(), &["--fail-if", "match<<5"]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
}

#[test]
fn bad_targets_fail_each_exchange_with_its_reason_and_the_run_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = record_api_flow(dir.path());
    let refused = refused_port();
    let refused_url = format!("http://127.0.0.1:{}", refused.port);
    let reset = start_python("bad_target.py", &["reset"]);
    let garbage = start_python("bad_target.py", &["garbage"]);
    let hang = start_python("bad_target.py", &["hang"]);
    for (url, kind) in [
        (refused_url, "upstream_refused"),
        (reset.url(), "upstream_reset"),
        (garbage.url(), "malformed_response"),
        (hang.url(), "upstream_timeout"),
    ] {
        let report = dir.path().join(format!("{kind}.json"));
        // POSTs only: two exchanges, so that the hanging target costs two timeouts.
        let out = replay_to(
            &db,
            &url,
            &[
                "--method",
                "POST",
                "--timeout",
                "1s",
                "--speed",
                "max",
                "--report",
                report.to_str().unwrap(),
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{kind}: {}", output_text(&out));
        let entries = entries(&read_json(&report));
        assert_eq!(
            entries.len(),
            2,
            "{kind}: every exchange tried: {entries:?}"
        );
        for e in &entries {
            assert_eq!(e["outcome"], "failed", "{e}");
            assert_eq!(e["kind"], kind, "{e}");
            assert!(!e["reason"].as_str().unwrap_or("").is_empty(), "{e}");
        }
    }
}

/// Runs `grpc_client.py ADDR all` (every call kind, a bidi Chat among them).
fn grpc_calls(addr: &str) {
    let out = Command::new("python3")
        .arg(tests_dir().join("servers").join("grpc_client.py"))
        .args([addr, "all"])
        .env("NO_PROXY", "*")
        .env_remove("http_proxy")
        .env_remove("grpc_proxy")
        .stdin(Stdio::null())
        .output()
        .expect("running grpc_client.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_grpc_bidi_call_replayed_to_a_changed_server_shows_the_changed_message() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("grpc.db");
    let server = start_python("grpc_server.py", &[]);
    let mut recorder = start_recorder(&server.url(), &db, &[]);
    grpc_calls(&recorder.addr().to_string());
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());

    let chat = ["--path", "/mftest.Routes/Chat", "--speed", "max"];
    let out = replay_to(&db, &server.url(), &chat);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    let changed = start_python("grpc_server.py", &["--changed"]);
    let report = dir.path().join("grpc.json");
    let mut args = chat.to_vec();
    args.extend(["--report", report.to_str().unwrap()]);
    let out = replay_to(&db, &changed.url(), &args);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let diffs = differing(&read_json(&report));
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(diffs[0].0, "POST /mftest.Routes/Chat");
    // Every second answer of the three says MORE now: three messages differ, nothing else.
    assert_eq!(diffs[0].1.len(), 3, "{diffs:?}");
    assert!(
        diffs[0].1.iter().all(|p| p.starts_with("grpc message")),
        "{diffs:?}"
    );
}

/// Records one `ws_client.py normal` session with ws_server.py through the proxy.
fn record_ws_session(dir: &Path, server: &Proc) -> PathBuf {
    let db = dir.join("ws.db");
    let mut recorder = start_recorder(&server.url(), &db, &[]);
    let out = Command::new("python3")
        .arg(tests_dir().join("servers").join("ws_client.py"))
        .args([&format!("ws://{}/chat", recorder.addr()), "normal"])
        .stdin(Stdio::null())
        .output()
        .expect("running ws_client.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    db
}

#[test]
fn a_websocket_session_replayed_to_a_changed_server_shows_the_changed_frame() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_python("ws_server.py", &[]);
    let db = record_ws_session(dir.path(), &server);

    let out = replay_to(&db, &server.url(), &["--speed", "max"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    let changed = start_python("ws_server.py", &["--changed"]);
    let report = dir.path().join("ws.json");
    let out = replay_to(
        &db,
        &changed.url(),
        &["--speed", "max", "--report", report.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let diffs = differing(&read_json(&report));
    assert_eq!(diffs.len(), 1, "{diffs:?}");
    assert_eq!(diffs[0].0, "GET /chat");
    assert_eq!(diffs[0].1.len(), 1, "only the greeting changed: {diffs:?}");
    assert!(diffs[0].1[0].starts_with("ws frame"), "{diffs:?}");
}

#[test]
fn a_tls_target_is_verified_with_the_given_ca_or_not_at_all_with_insecure() {
    let dir = tempfile::tempdir().unwrap();
    let plain = start_python("ws_server.py", &[]);
    let db = record_ws_session(dir.path(), &plain);
    let (ca, cert, key) = make_test_pki(dir.path());
    let tls = start_python(
        "ws_server.py",
        &["--tls", cert.to_str().unwrap(), key.to_str().unwrap()],
    );
    let url = format!("https://localhost:{}", tls.addr().port());

    let out = replay_to(
        &db,
        &url,
        &["--speed", "max", "--upstream-ca", ca.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    let out = replay_to(&db, &url, &["--speed", "max", "--insecure"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));

    // Unknown issuer: the session fails as a TLS failure, with the cause.
    let report = dir.path().join("tls.json");
    let out = replay_to(&db, &url, &["--report", report.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", output_text(&out));
    let entries = entries(&read_json(&report));
    assert_eq!(entries.len(), 1, "{entries:?}");
    assert_eq!(entries[0]["kind"], "upstream_tls", "{entries:?}");
}

#[test]
fn plain_http2_exchanges_are_sent_over_h2c_and_a_changed_body_is_found() {
    require("nghttpd");
    let dir = tempfile::tempdir().unwrap();
    let docroot = dir.path().join("www");
    std::fs::create_dir(&docroot).unwrap();
    std::fs::write(docroot.join("small.json"), br#"{"ok":true,"n":1}"#).unwrap();
    std::fs::write(docroot.join("page.txt"), "line one\nline two\n").unwrap();
    let port = crate::common::capture::free_port();
    let mut server = Command::new("nghttpd")
        .args(["--no-tls", "-d"])
        .arg(&docroot)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nghttpd");
    assert!(wait_until(std::time::Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    let url = format!("http://127.0.0.1:{port}");

    let db = dir.path().join("h2.db");
    let mut recorder = start_recorder(&url, &db, &[]);
    for path in ["/small.json", "/page.txt"] {
        let r = curl(&[
            "--http2-prior-knowledge",
            &format!("{}{path}", recorder.url()),
        ]);
        assert_eq!(r.status(), 200, "{r:?}");
    }
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    let h2 = mf_run(&["ls", db.to_str().unwrap(), "--protocol", "h2", "--json"]);
    assert_eq!(
        String::from_utf8_lossy(&h2.stdout).lines().count(),
        2,
        "both exchanges recorded as h2: {}",
        output_text(&h2)
    );

    let out = replay_to(&db, &url, &["--speed", "max"]);
    assert_eq!(out.status.code(), Some(0), "{}", output_text(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("2 exchanges: 2 matched"),
        "{}",
        output_text(&out)
    );

    // Same length: nghttpd keeps the size of a file it has served open.
    std::fs::write(docroot.join("small.json"), br#"{"ok":true,"n":2}"#).unwrap();
    let out = replay_to(&db, &url, &["--speed", "max"]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("1 differing") && stdout.contains("$.n"),
        "{}",
        output_text(&out)
    );
    let _ = server.kill();
    let _ = server.wait();
}
