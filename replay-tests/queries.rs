//! Queries over a recording made through the proxy from real curl traffic: every `mf ls`
//! filter, `mf stats --json`, `mf sql` (views, functions, writes refused), `mf export
//! --format curl` run by a real shell, and `mf prune` (including a kill -9 mid-way).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::*;

/// `mf ls DB --json ARGS` parsed, asserting success.
fn ls(db: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let out = mf()
        .arg("ls")
        .arg(db)
        .arg("--json")
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mf ls {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The paths (without scheme and authority) of the rows `mf ls ARGS` selects, in order.
fn paths(db: &Path, args: &[&str]) -> Vec<String> {
    ls(db, args)
        .iter()
        .map(|r| r["target"].as_str().unwrap().to_string())
        .collect()
}

/// `mf sql DB --json QUERY` rows, asserting success.
fn sql(db: &Path, query: &str) -> Vec<serde_json::Value> {
    let out = mf()
        .arg("sql")
        .arg(db)
        .arg("--json")
        .arg(query)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mf sql {query}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn sql_one(db: &Path, query: &str) -> serde_json::Value {
    let rows = sql(db, query);
    assert_eq!(rows.len(), 1, "{query}: {rows:?}");
    let row = rows[0].as_object().unwrap();
    row.values().next().unwrap().clone()
}

/// Blobs no row refers to (prune must leave none).
const ORPHAN_BLOBS: &str = "SELECT count(*) AS n FROM blobs WHERE hash NOT IN (
    SELECT req_headers FROM exchanges
    UNION SELECT req_body FROM exchanges WHERE req_body IS NOT NULL
    UNION SELECT resp_body FROM exchanges WHERE resp_body IS NOT NULL
    UNION SELECT data FROM messages WHERE data IS NOT NULL)";

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// Records nine known exchanges through the proxy; returns the live upstream too.
fn record(db: &Path) -> Proc {
    let upstream = start_python("http_upstream.py", &[]);
    let mut recorder = start_recorder(&upstream.url(), db, &[]);
    let base = recorder.url();
    let traceparent = format!("traceparent: 00-{TRACE}-00f067aa0ba902b7-01");
    let calls: Vec<(Vec<String>, u16)> = vec![
        (vec![format!("{base}/json")], 200),
        (vec!["-H".into(), traceparent, format!("{base}/json")], 200),
        (vec![format!("{base}/slow")], 200),
        (vec![format!("{base}/fail")], 503),
        (vec![format!("{base}/missing")], 404),
        (
            vec![
                "-X".into(),
                "POST".into(),
                "-H".into(),
                "Content-Type: application/json".into(),
                "-d".into(),
                r#"{"it's":"$HOME `x`"}"#.into(),
                format!("{base}/echo"),
            ],
            200,
        ),
        (vec![format!("{base}/api/items/1")], 200),
        (vec![format!("{base}/api/items/2")], 200),
        (vec![format!("{base}/api/items/3")], 200),
    ];
    for (args, status) in &calls {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        assert_eq!(curl(&refs).status(), *status, "{args:?}");
    }
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    upstream
}

#[test]
fn ls_filters_stats_sql_and_curl_export_on_recorded_traffic() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    let upstream = record(&db);
    assert_eq!(ls(&db, &[]).len(), 9);

    // Every filter, alone and combined.
    assert_eq!(paths(&db, &["--status", "5xx"]), ["/fail"]);
    assert_eq!(paths(&db, &["--status", "404"]), ["/missing"]);
    assert_eq!(paths(&db, &["--status", "404,503"]), ["/fail", "/missing"]);
    assert_eq!(paths(&db, &["--status", "200-299"]).len(), 7);
    assert_eq!(paths(&db, &["--method", "post"]), ["/echo"]);
    assert_eq!(
        paths(&db, &["--path", "/api/items/*"]),
        ["/api/items/1", "/api/items/2", "/api/items/3"]
    );
    assert_eq!(
        paths(&db, &["--path", "/api/*", "--path", "/json"]).len(),
        5
    );
    assert_eq!(paths(&db, &["--slower-than", "250ms"]), ["/slow"]);
    assert_eq!(paths(&db, &["--errors"]), ["/fail"]);
    assert_eq!(paths(&db, &["--trace-id", TRACE]), ["/json"]);
    assert_eq!(paths(&db, &["--protocol", "http/1.1"]).len(), 9);
    assert!(paths(&db, &["--protocol", "h2"]).is_empty());
    assert_eq!(paths(&db, &["--host", "127.0.0.1"]).len(), 9);
    assert!(paths(&db, &["--host", "example.com"]).is_empty());
    assert_eq!(paths(&db, &["--since", "1h"]).len(), 9);
    assert!(paths(&db, &["--until", "1h"]).is_empty());
    assert!(paths(&db, &["--since", "2200-01-01T00:00:00Z"]).is_empty());
    assert_eq!(
        paths(&db, &["--until", "2200-01-01T00:00:00+02:00"]).len(),
        9
    );
    assert_eq!(
        paths(
            &db,
            &[
                "--method",
                "GET",
                "--status",
                "2xx",
                "--path",
                "/api/items/2"
            ]
        ),
        ["/api/items/2"]
    );
    // The table form filters the same way.
    let table = mf_run(&["ls", db.to_str().unwrap(), "--status", "503"]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains("/fail"), "{text}");
    for bad in [
        ["--status", "6zz"],
        ["--since", "last tuesday"],
        ["--slower-than", "fast"],
    ] {
        let out = mf_run(&["ls", db.to_str().unwrap(), bad[0], bad[1]]);
        assert_eq!(out.status.code(), Some(2), "{bad:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }

    // Stats per endpoint template.
    let out = mf_run(&["stats", db.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stats: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stats["exchanges"], 9);
    assert_eq!(stats["errors"], 1);
    let endpoint = |method: &str, template: &str| {
        stats["endpoints"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["method"] == method && e["template"] == template)
            .unwrap_or_else(|| panic!("no {method} {template} in {stats:#}"))
            .clone()
    };
    let items = endpoint("GET", "/api/items/{id}");
    assert_eq!(items["count"], 3);
    assert_eq!(items["statuses"]["200"], 3);
    assert_eq!(items["errors"], 0);
    assert!(items["response_bytes"].as_u64().unwrap() > 100);
    let slow = endpoint("GET", "/slow");
    assert!(
        slow["latency_ms"]["p50"].as_f64().unwrap() >= 290.0,
        "{slow}"
    );
    assert!(
        slow["latency_ms"]["p99"].as_f64().unwrap() >= 290.0,
        "{slow}"
    );
    let fail = endpoint("GET", "/fail");
    assert_eq!(
        (fail["errors"].clone(), fail["statuses"]["503"].clone()),
        (1.into(), 1.into())
    );
    assert_eq!(endpoint("GET", "/json")["count"], 2);
    let only_items = mf_run(&["stats", db.to_str().unwrap(), "--json", "--path", "/api/*"]);
    let only: serde_json::Value = serde_json::from_slice(&only_items.stdout).unwrap();
    assert_eq!(only["exchanges"], 3);
    let table = mf_run(&["stats", db.to_str().unwrap()]);
    assert!(String::from_utf8_lossy(&table.stdout).contains("/api/items/{id}"));

    // SQL over the views, with the functions.
    let fail_row = sql(
        &db,
        "SELECT status, path, host, body_text(resp_body) AS body,
                header(resp_headers, 'retry-after') AS retry, header(req_headers, 'USER-AGENT') AS ua
         FROM exchanges_v WHERE status >= 500",
    );
    assert_eq!(fail_row.len(), 1);
    assert_eq!(fail_row[0]["path"], "/fail");
    assert!(fail_row[0]["body"].as_str().unwrap().contains("overloaded"));
    assert_eq!(fail_row[0]["retry"], "5");
    assert!(fail_row[0]["ua"].as_str().unwrap().starts_with("curl/"));
    assert_eq!(
        sql_one(
            &db,
            "SELECT trace_id FROM exchanges_v WHERE trace_id IS NOT NULL"
        ),
        TRACE
    );
    assert_eq!(
        sql_one(
            &db,
            "SELECT count(*) FROM exchanges_v WHERE duration_ms > 250"
        ),
        1
    );
    assert_eq!(sql_one(&db, "SELECT count(*) FROM messages_v"), 0);
    let table = mf_run(&[
        "sql",
        db.to_str().unwrap(),
        "SELECT id, method, path FROM exchanges_v ORDER BY id LIMIT 2",
    ]);
    let text = String::from_utf8_lossy(&table.stdout);
    assert!(text.starts_with("id  method  path"), "{text}");
    assert_eq!(text.lines().count(), 3, "{text}");
    for write in [
        "DELETE FROM exchanges",
        "UPDATE exchanges SET status = 200",
        "DROP VIEW exchanges_v",
        "INSERT INTO meta VALUES ('k', 'v')",
    ] {
        let out = mf_run(&["sql", db.to_str().unwrap(), write]);
        assert_eq!(out.status.code(), Some(2), "{write}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("read-only"), "{write}: {err}");
    }
    let out = mf_run(&["sql", db.to_str().unwrap(), "SELECT nonsense FROM nowhere"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no such table"));
    assert_eq!(ls(&db, &[]).len(), 9, "the refused writes changed nothing");

    // The curl export of the POST, run by a real shell, reaches the upstream with the same
    // body (quotes, `$` and backticks intact).
    let out = mf_run(&[
        "export",
        db.to_str().unwrap(),
        "--format",
        "curl",
        "--method",
        "POST",
    ]);
    assert!(out.status.success());
    let script = String::from_utf8(out.stdout).unwrap();
    assert_eq!(script.matches("\ncurl ").count(), 1, "{script}");
    let proxy_port = ls(&db, &["--method", "POST"])[0]["url"]
        .as_str()
        .unwrap()
        .split('/')
        .nth(2)
        .unwrap()
        .to_string();
    let script = script.replace(&proxy_port, &upstream.addr().to_string());
    let run = Command::new("sh").args(["-c", &script]).output().unwrap();
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&run.stdout),
        r#"{"it's":"$HOME `x`"}"#
    );
    drop(upstream);

    // Prune: nothing is an hour old; then keep the newest three.
    let before_blobs = sql_one(&db, "SELECT count(*) FROM blobs").as_u64().unwrap();
    let out = mf_run(&["prune", db.to_str().unwrap(), "--older-than", "1h"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(ls(&db, &[]).len(), 9);
    let out = mf_run(&["prune", db.to_str().unwrap(), "--keep-last", "3"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("pruned 6 exchanges"));
    assert_eq!(
        paths(&db, &[]),
        ["/api/items/1", "/api/items/2", "/api/items/3"]
    );
    let after_blobs = sql_one(&db, "SELECT count(*) FROM blobs").as_u64().unwrap();
    assert!(after_blobs < before_blobs, "{before_blobs} → {after_blobs}");
    assert_eq!(sql_one(&db, ORPHAN_BLOBS), 0);
    assert_eq!(sql_one(&db, "PRAGMA integrity_check"), "ok");
    let out = mf_run(&["prune", db.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "prune needs a rule");
}

#[test]
fn prune_by_age_and_a_kill_mid_way_leave_a_valid_recording() {
    const N: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("synthetic.db");
    let out = mf_run(&[
        "generate",
        "synthetic-recording",
        "--exchanges",
        &N.to_string(),
        "-o",
        db.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let copy = dir.path().join("copy.db");
    std::fs::copy(&db, &copy).unwrap();

    // Killed while the delete transaction is writing: the recording is whole, either as it
    // was or pruned.
    let wal = dir.path().join("synthetic.db-wal");
    let mut prune = mf()
        .args(["prune", db.to_str().unwrap(), "--keep-last", "10"])
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let writing = wait_until(Duration::from_secs(30), || {
        std::fs::metadata(&wal).is_ok_and(|m| m.len() > 256 * 1024)
            || prune.try_wait().ok().flatten().is_some()
    });
    assert!(writing, "prune never wrote");
    let _ = prune.kill();
    let _ = prune.wait();
    assert_eq!(sql_one(&db, "PRAGMA integrity_check"), "ok");
    let left = sql_one(&db, "SELECT count(*) FROM exchanges")
        .as_u64()
        .unwrap();
    assert!(
        left == N as u64 || left == 10,
        "{left} exchanges after the kill"
    );
    assert_eq!(sql_one(&db, ORPHAN_BLOBS), 0);
    // Run again to the end: the result is the same as an uninterrupted prune.
    let out = mf_run(&["prune", db.to_str().unwrap(), "--keep-last", "10"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sql_one(&db, "SELECT count(*) FROM exchanges"), 10);
    assert_eq!(sql_one(&db, ORPHAN_BLOBS), 0);

    // By age: the synthetic traffic is from 2024, so thirty days removes all of it, and the
    // file shrinks.
    let size = std::fs::metadata(&copy).unwrap().len();
    let out = mf_run(&["prune", copy.to_str().unwrap(), "--older-than", "30d"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(sql_one(&copy, "SELECT count(*) FROM exchanges"), 0);
    assert_eq!(sql_one(&copy, "SELECT count(*) FROM blobs"), 0);
    assert_eq!(sql_one(&copy, "PRAGMA integrity_check"), "ok");
    assert!(std::fs::metadata(&copy).unwrap().len() < size / 10);
}
