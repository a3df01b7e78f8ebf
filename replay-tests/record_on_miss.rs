//! `mf replay FILE|DIR --upstream URL`: what the recording answers comes from it, the rest is
//! fetched from the live upstream, served, kept (appended to the recording, or a new fixture
//! file), and answered offline by the next run.

use std::path::Path;

use crate::common::{
    curl, ls_rows, mf_run, refused_port, start_python, start_recorder, start_replay,
};

/// Records `/json` and `/counter` from `upstream_url` into `db`.
fn record_two(upstream_url: &str, db: &Path) {
    let mut rec = start_recorder(upstream_url, db, &[]);
    for path in ["/json", "/counter"] {
        assert_eq!(curl(&[&format!("{}{path}", rec.url())]).status(), 200);
    }
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    assert_eq!(ls_rows(db), 2);
}

fn body_text(r: &crate::common::CurlResult) -> String {
    String::from_utf8_lossy(&r.body).into_owned()
}

fn endpoint_files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir.join("endpoints"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_miss_is_fetched_from_the_upstream_appended_and_answered_offline_next_time() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    let mut upstream = start_python("http_upstream.py", &[]);
    record_two(&upstream.url(), &db);

    let mut replay = start_replay(&db, &["--upstream", &upstream.url()]);
    // Recorded: from the recording (the upstream's counter would say 2 otherwise).
    let recorded = curl(&[&format!("{}/counter", replay.url())]);
    assert_eq!(body_text(&recorded), r#"{"call": 1}"#);
    // Not recorded: from the upstream.
    let fetched = curl(&[&format!("{}/api/items/7", replay.url())]);
    assert_eq!(fetched.status(), 200, "{fetched:?}");
    assert!(body_text(&fetched).contains("\"item-7\""), "{fetched:?}");
    // Asked again: answered from memory now, not fetched a second time.
    let again = curl(&[&format!("{}/api/items/7", replay.url())]);
    assert_eq!(again.body, fetched.body);
    assert!(replay.interrupt().success(), "{}", replay.stderr());
    let stderr = replay.stderr();
    assert!(
        stderr.contains("1 misses answered by the upstream and kept"),
        "{stderr}"
    );
    assert_eq!(ls_rows(&db), 3, "exactly one more exchange: {stderr}");

    // Offline: the upstream is gone, the recording answers the third endpoint itself.
    upstream.kill9();
    let mut offline = start_replay(&db, &[]);
    let r = curl(&[&format!("{}/api/items/7", offline.url())]);
    assert_eq!(r.status(), 200);
    assert_eq!(r.body, fetched.body);
    offline.interrupt();
}

#[test]
fn a_miss_against_fixtures_becomes_one_new_fixture_file() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    let fx = dir.path().join("fixtures");
    let mut upstream = start_python("http_upstream.py", &[]);
    record_two(&upstream.url(), &db);
    let out = mf_run(&["infer", db.to_str().unwrap(), "-o", fx.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let before = endpoint_files(&fx);

    let mut replay = start_replay(&fx, &["--upstream", &upstream.url()]);
    let fetched = curl(&[&format!("{}/api/items/7", replay.url())]);
    assert_eq!(fetched.status(), 200, "{fetched:?}");
    assert!(body_text(&fetched).contains("\"item-7\""));
    assert!(replay.interrupt().success(), "{}", replay.stderr());
    let after = endpoint_files(&fx);
    let new: Vec<&String> = after.iter().filter(|f| !before.contains(f)).collect();
    assert_eq!(new.len(), 1, "one new fixture file: {before:?} → {after:?}");
    assert_eq!(after.len(), before.len() + 1);

    upstream.kill9();
    let mut offline = start_replay(&fx, &[]);
    let r = curl(&[&format!("{}/api/items/7", offline.url())]);
    assert_eq!(r.status(), 200, "{r:?}\n{}", offline.stderr());
    let json: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(json["name"], "item-7");
    offline.interrupt();
}

#[test]
fn an_upstream_that_is_down_gets_the_client_a_502_and_nothing_is_appended() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    let upstream = start_python("http_upstream.py", &[]);
    record_two(&upstream.url(), &db);
    let down = refused_port();

    let mut replay = start_replay(
        &db,
        &["--upstream", &format!("http://127.0.0.1:{}", down.port)],
    );
    let r = curl(&[&format!("{}/api/items/7", replay.url())]);
    assert_eq!(r.status(), 502, "{r:?}");
    let text = body_text(&r);
    assert!(
        text.contains("no recorded answer") && text.contains("refused"),
        "{text}"
    );
    // What the recording has is still served.
    assert_eq!(curl(&[&format!("{}/json", replay.url())]).status(), 200);
    assert!(replay.interrupt().success(), "{}", replay.stderr());
    assert_eq!(ls_rows(&db), 2, "nothing appended");
}

#[test]
fn a_tls_upstream_is_trusted_through_the_given_ca_and_unknown_issuers_keep_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    let plain = start_python("http_upstream.py", &[]);
    record_two(&plain.url(), &db);
    let (ca, cert, key) = crate::common::make_test_pki(dir.path());
    let tls = start_python(
        "http_upstream.py",
        &["--tls", cert.to_str().unwrap(), key.to_str().unwrap()],
    );
    let url = format!("https://localhost:{}", tls.addr().port());

    // Without the CA the upstream's issuer is unknown: a 502, nothing kept.
    let mut replay = start_replay(&db, &["--upstream", &url]);
    let r = curl(&[&format!("{}/api/items/1", replay.url())]);
    assert_eq!(r.status(), 502, "{r:?}");
    assert!(replay.interrupt().success(), "{}", replay.stderr());
    assert_eq!(ls_rows(&db), 2);

    // With --upstream-ca the miss is fetched over TLS and kept.
    let ca_arg = ca.to_str().unwrap();
    let mut replay = start_replay(&db, &["--upstream", &url, "--upstream-ca", ca_arg]);
    let r = curl(&[&format!("{}/api/items/2", replay.url())]);
    assert_eq!(r.status(), 200, "{r:?}");
    assert!(body_text(&r).contains("\"item-2\""), "{r:?}");
    assert!(replay.interrupt().success(), "{}", replay.stderr());
    assert_eq!(ls_rows(&db), 3);

    // --insecure skips the check, loudly.
    let mut replay = start_replay(&db, &["--upstream", &url, "--insecure"]);
    let r = curl(&[&format!("{}/api/items/3", replay.url())]);
    assert_eq!(r.status(), 200, "{r:?}");
    assert!(replay.interrupt().success(), "{}", replay.stderr());
    assert!(
        replay.stderr().contains("WARNING: --insecure"),
        "{}",
        replay.stderr()
    );
    assert_eq!(ls_rows(&db), 4);

    // Trust flags without an upstream or a target say what they are for.
    let out = mf_run(&["replay", db.to_str().unwrap(), "--insecure"]);
    assert_eq!(out.status.code(), Some(2));
}

/// `grpc_client.py ADDR faults`: three identical unary calls, one JSON line each.
fn three_unary_calls(addr: &str) -> Vec<serde_json::Value> {
    let out = std::process::Command::new("python3")
        .arg(
            crate::common::tests_dir()
                .join("servers")
                .join("grpc_client.py"),
        )
        .args([addr, "faults"])
        .env("NO_PROXY", "*")
        .env_remove("http_proxy")
        .env_remove("grpc_proxy")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("running grpc_client.py");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

#[test]
fn a_grpc_call_nothing_answers_is_forwarded_over_http2_kept_and_served_offline() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    let http = start_python("http_upstream.py", &[]);
    record_two(&http.url(), &db);
    let mut grpc = start_python("grpc_server.py", &[]);
    let upstream = format!("http://{}", grpc.addr());

    let mut replay = start_replay(&db, &["--upstream", &upstream]);
    let calls = three_unary_calls(&replay.addr().to_string());
    assert_eq!(calls.len(), 3, "{calls:?}");
    for c in &calls {
        assert_eq!(c["code"], "OK", "{calls:?}");
        assert_eq!(
            c["messages"],
            serde_json::json!([[42, "got a"]]),
            "{calls:?}"
        );
    }
    assert!(replay.interrupt().success(), "{}", replay.stderr());
    let stderr = replay.stderr();
    assert!(
        stderr.contains("1 misses answered by the upstream and kept"),
        "the 2nd and 3rd calls come from memory: {stderr}"
    );
    assert_eq!(ls_rows(&db), 3, "{stderr}");
    let grpc_rows = mf_run(&["ls", db.to_str().unwrap(), "--protocol", "grpc", "--json"]);
    assert_eq!(
        String::from_utf8_lossy(&grpc_rows.stdout).lines().count(),
        1
    );

    // Offline: the server is gone and the recording answers the call, trailers included.
    grpc.kill9();
    let mut offline = start_replay(&db, &[]);
    let calls = three_unary_calls(&offline.addr().to_string());
    for c in &calls {
        assert_eq!(c["code"], "OK", "{calls:?}");
        assert_eq!(
            c["messages"],
            serde_json::json!([[42, "got a"]]),
            "{calls:?}"
        );
    }
    offline.interrupt();
}
