//! `mf diff`: two recordings of the same curl script through `mf record --proxy`, against a
//! Python API whose every answer has fresh ids and timestamps. The same version twice
//! matches (exit 0); version 2 (user 3 renamed, /status 503) gives exactly those
//! differences, in the text summary, the JSON report and the JUnit XML (exit 1). The item the
//! script creates is read back by its fresh id: pairing rebinds it. WebSocket sessions compare
//! frame by frame.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

use crate::common::judged::{junit, output_text};
use crate::common::*;

/// The client script: the same requests, in the same order, on every run; the item it
/// creates is read back by the id the server gave it (a fresh UUID each run).
fn run_script(proxy: &str) {
    let base = proxy.trim_end_matches('/');
    let get = |path: &str| {
        let r = curl(&[&format!("{base}{path}")]);
        assert_eq!(r.exit, 0, "curl {path} failed");
    };
    get("/users/3");
    let created = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"name":"pen"}"#,
        &format!("{base}/items"),
    ]);
    assert_eq!(created.status(), 201);
    let item: Value = serde_json::from_slice(&created.body).expect("POST /items answers JSON");
    get(&format!("/items/{}", item["id"].as_str().expect("an id")));
    get("/status");
    get("/page");
    get("/users/3");
}

/// Records the script against version `version` of the API into `dir/name.db`.
fn record(dir: &Path, name: &str, version: &str) -> PathBuf {
    let api = start_python("noisy_api.py", &[version]);
    let db = dir.join(format!("{name}.db"));
    let mut recorder = start_recorder(&api.url(), &db, &[]);
    run_script(&recorder.url());
    let status = recorder.interrupt();
    assert!(status.success(), "recorder: {}", recorder.stderr());
    assert_eq!(ls_rows(&db), 6, "every request recorded");
    db
}

fn diff(a: &Path, b: &Path, extra: &[&str]) -> Output {
    mf().arg("diff")
        .arg(a)
        .arg(b)
        .args(extra)
        .output()
        .expect("running mf diff")
}

/// The JUnit file: (testcases, [(testcase, failure message)]); three testcases fail.
fn junit_failures(path: &Path) -> (usize, Vec<(String, String)>) {
    let (declared, cases) = junit(path);
    assert_eq!(declared, "3", "three testcases fail");
    let fails = cases
        .iter()
        .flat_map(|c| c.failures.iter().map(|m| (c.name.clone(), m.clone())))
        .collect();
    (cases.len(), fails)
}

#[test]
fn same_version_matches_new_version_reports_exactly_the_known_differences() {
    require("curl");
    let dir = tempfile::tempdir_in(temp_root()).unwrap();
    let a = record(dir.path(), "a", "1");
    let b = record(dir.path(), "b", "1");
    let c = record(dir.path(), "c", "2");

    // Same version: only noise differs (fresh UUIDs, timestamps, request ids, ETags).
    let same = diff(&a, &b, &[]);
    assert_eq!(same.status.code(), Some(0), "{}", output_text(&same));
    let out = String::from_utf8_lossy(&same.stdout);
    assert!(
        out.starts_with("6 exchanges: 6 matched, 0 differing, 0 failed"),
        "{out}"
    );
    assert!(
        out.contains("form: uuid") && out.contains("form: timestamp"),
        "{out}"
    );
    assert!(out.contains("volatile header x-request-id"), "{out}");

    // Version 2: the renamed user (asked twice) and the status.
    let report = dir.path().join("report.json");
    let junit = dir.path().join("junit.xml");
    let changed = diff(
        &a,
        &c,
        &[
            "--report",
            report.to_str().unwrap(),
            "--junit",
            junit.to_str().unwrap(),
        ],
    );
    assert_eq!(changed.status.code(), Some(1), "{}", output_text(&changed));
    let out = String::from_utf8_lossy(&changed.stdout);
    assert!(
        out.starts_with("6 exchanges: 3 matched, 3 differing, 0 failed"),
        "{out}"
    );
    assert!(
        out.contains(r#"GET /users/3  $.name: "user-3" → "User Three""#),
        "{out}"
    );
    assert!(out.contains("GET /status  status: 200 → 503"), "{out}");

    let v: Value =
        serde_json::from_slice(&std::fs::read(&report).unwrap()).expect("report is JSON");
    let mut found: Vec<(String, String, String, String)> = Vec::new();
    for e in v["entries"].as_array().unwrap() {
        for d in e["differences"].as_array().unwrap() {
            found.push((
                e["path"].as_str().unwrap().into(),
                d["path"].as_str().unwrap().into(),
                d["recorded"].as_str().unwrap().into(),
                d["now"].as_str().unwrap().into(),
            ));
        }
    }
    found.sort();
    let s = |x: &str| x.to_string();
    assert_eq!(
        found,
        [
            (s("/status"), s("status"), s("200"), s("503")),
            (
                s("/users/3"),
                s("$.name"),
                s(r#""user-3""#),
                s(r#""User Three""#)
            ),
            (
                s("/users/3"),
                s("$.name"),
                s(r#""user-3""#),
                s(r#""User Three""#)
            ),
        ],
        "exactly the known differences: the name (asked twice) and the status"
    );
    let ignored_rules: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|e| e["ignored"].as_array().unwrap())
        .map(|i| i["rule"].as_str().unwrap())
        .collect();
    assert!(ignored_rules.contains(&"form: uuid"), "{ignored_rules:?}");
    assert!(v["entries"][0]["latency_recorded_ms"].is_number());

    let (cases, failures) = junit_failures(&junit);
    assert_eq!(cases, 6);
    let mut failures = failures;
    failures.sort();
    assert_eq!(
        failures,
        [
            (s("GET /status"), s("status: 200 → 503")),
            (s("GET /users/3"), s(r#"$.name: "user-3" → "User Three""#)),
            (s("GET /users/3"), s(r#"$.name: "user-3" → "User Three""#)),
        ]
    );

    // Gates decide instead: 50% match passes 'match<40%' and fails 'match<60%'.
    assert_eq!(
        diff(&a, &c, &["--fail-if", "match<40%"]).status.code(),
        Some(0)
    );
    let gated = diff(&a, &c, &["--fail-if", "match<60%"]);
    assert_eq!(gated.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&gated.stderr).contains("--fail-if 'match<60%' holds"),
        "{}",
        output_text(&gated)
    );
    // An ignore rule makes the renamed user noise.
    let ignored = diff(
        &a,
        &c,
        &[
            "--ignore",
            "GET /users/{id} $.name",
            "--fail-if",
            "differing>1",
        ],
    );
    assert_eq!(ignored.status.code(), Some(0), "{}", output_text(&ignored));
    assert!(String::from_utf8_lossy(&ignored.stdout).contains("ignore: $.name"));
}

#[test]
fn bad_gates_missing_files_and_unpaired_exchanges() {
    let dir = tempfile::tempdir_in(temp_root()).unwrap();
    let missing = dir.path().join("missing.db");
    let bad = diff(&missing, &missing, &["--fail-if", "p99>250"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("needs a unit"),
        "{}",
        output_text(&bad)
    );
    let gone = diff(&missing, &missing, &[]);
    assert_eq!(gone.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&gone.stderr).contains("missing.db"),
        "{}",
        output_text(&gone)
    );

    // A recording of one extra request: reported on its side, exit 1.
    require("curl");
    let api = start_python("noisy_api.py", &["1"]);
    let one = dir.path().join("one.db");
    let two = dir.path().join("two.db");
    for (db, paths) in [
        (&one, &["/users/3"][..]),
        (&two, &["/users/3", "/page"][..]),
    ] {
        let mut recorder = start_recorder(&api.url(), db, &[]);
        for p in paths {
            assert_eq!(
                curl(&[&format!("{}{p}", recorder.url().trim_end_matches('/'))]).exit,
                0
            );
        }
        assert!(
            recorder.interrupt().success(),
            "recorder: {}",
            recorder.stderr()
        );
    }
    let out = diff(&one, &two, &[]);
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("GET /page  exchange: not in A → recorded in B"),
        "{stdout}"
    );
    // A bad ignore file is a clear error too.
    let bad_rules = dir.path().join("ignore.yaml");
    std::fs::write(&bad_rules, "ignore: {not: [a list\n").unwrap();
    let out = diff(&one, &two, &["--ignore-from", bad_rules.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ignore.yaml"),
        "{}",
        output_text(&out)
    );
}

/// Records one `ws_client.py MODE` session through the proxy into `db`.
fn record_ws(db: &Path, mode: &str) {
    let server = start_python("ws_server.py", &[]);
    let mut recorder = start_recorder(&server.url(), db, &[]);
    let out = Command::new("python3")
        .arg(tests_dir().join("servers").join("ws_client.py"))
        .arg(format!("ws://{}/chat", recorder.addr()))
        .arg(mode)
        .env("NO_PROXY", "*")
        .output()
        .expect("running ws_client.py");
    assert!(
        out.status.success(),
        "ws client: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        recorder.interrupt().success(),
        "recorder: {}",
        recorder.stderr()
    );
}

#[test]
fn websocket_sessions_compare_frame_by_frame() {
    let dir = tempfile::tempdir_in(temp_root()).unwrap();
    let (a, b, c) = (
        dir.path().join("a.db"),
        dir.path().join("b.db"),
        dir.path().join("c.db"),
    );
    record_ws(&a, "normal");
    record_ws(&b, "normal");
    record_ws(&c, "error");
    // A fresh Sec-WebSocket-Accept each session is noise; the frames are equal.
    let same = diff(&a, &b, &[]);
    assert_eq!(same.status.code(), Some(0), "{}", output_text(&same));
    assert!(String::from_utf8_lossy(&same.stdout).contains("volatile header sec-websocket-accept"));
    // The server closing with 1011 instead of echoing the client's 1000.
    let report = dir.path().join("ws.json");
    let changed = diff(&a, &c, &["--report", report.to_str().unwrap()]);
    assert_eq!(changed.status.code(), Some(1), "{}", output_text(&changed));
    let v: Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    let d = &v["entries"][0]["differences"];
    assert_eq!(d.as_array().map(Vec::len), Some(1), "{d}");
    assert!(
        d[0]["path"].as_str().unwrap().ends_with("close code"),
        "{d}"
    );
    assert_eq!(
        (d[0]["recorded"].as_str(), d[0]["now"].as_str()),
        (Some("1000"), Some("1011"))
    );
}
