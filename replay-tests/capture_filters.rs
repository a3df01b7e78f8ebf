//! Filters, sampling and dedup at capture, through the real proxy: a filtered exchange is
//! forwarded as usual, only not stored, and the summary line counts it.

use std::collections::BTreeSet;
use std::path::Path;

use crate::common::capture::load;
use crate::common::*;

#[test]
fn excluded_paths_and_methods_are_forwarded_but_not_stored() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("filtered.db");
    let up = start_python("http_upstream.py", &[]);
    let mut rec = start_recorder(
        &up.url(),
        &db,
        &[
            "--exclude",
            "/health",
            "--exclude",
            "/metrics*",
            "--method",
            "GET,POST",
        ],
    );
    let base = rec.url();
    // The upstream answers /health and /metrics/x with its own 404: the client gets it.
    let health = curl(&[&format!("{base}/health")]);
    assert_eq!(health.status(), 404);
    assert_eq!(health.body, br#"{"error":"not found"}"#);
    assert_eq!(curl(&[&format!("{base}/metrics/cpu")]).status(), 404);
    assert_eq!(
        curl(&["-X", "DELETE", &format!("{base}/json")]).status(),
        200
    );
    assert_eq!(curl(&[&format!("{base}/json")]).status(), 200);
    assert_eq!(
        curl(&["--data", "x=1", &format!("{base}/echo")]).status(),
        200
    );
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    let stderr = rec.stderr();
    assert!(stderr.contains("mf: recorded 2 exchanges"), "{stderr}");
    assert!(
        stderr.contains("mf: capture policy: 3 filtered, 0 deduplicated"),
        "{stderr}"
    );
    let stored: Vec<(String, String)> = load(&db)
        .into_iter()
        .map(|e| (e.request.method.into(), e.request.target.into()))
        .collect();
    assert_eq!(
        stored,
        vec![
            ("GET".to_string(), "/json".to_string()),
            ("POST".to_string(), "/echo".to_string())
        ]
    );
}

/// Records 12 clients × 2 requests with `--sample 0.5 --sample-by X-Client`; returns the
/// clients whose requests were stored, checking that each was kept whole.
fn sampled_clients(db: &Path) -> BTreeSet<String> {
    let up = start_python("http_upstream.py", &[]);
    let mut rec = start_recorder(
        &up.url(),
        db,
        &["--sample", "0.5", "--sample-by", "X-Client"],
    );
    for c in 0..12 {
        let r = curl(&[
            "-H",
            &format!("X-Client: client-{c}"),
            &format!("{}/json", rec.url()),
            &format!("{}/counter", rec.url()),
        ]);
        assert_eq!(r.exit, 0, "every request is forwarded");
    }
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    let mut per = std::collections::BTreeMap::<String, usize>::new();
    for e in load(db) {
        let client = e
            .request
            .headers
            .iter()
            .find(|h| h.name == "X-Client")
            .map(|h| h.value_str().into_owned())
            .unwrap_or_default();
        *per.entry(client).or_default() += 1;
    }
    assert!(
        per.values().all(|n| *n == 2),
        "a client is kept whole: {per:?}"
    );
    let filtered = 24 - 2 * per.len();
    assert!(
        rec.stderr()
            .contains(&format!("{filtered} filtered ({filtered} by sampling)")),
        "{}",
        rec.stderr()
    );
    per.into_keys().collect()
}

#[test]
fn sample_by_header_keeps_the_same_clients_in_every_recording() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let first = sampled_clients(&dir.path().join("a.db"));
    let second = sampled_clients(&dir.path().join("b.db"));
    assert!(!first.is_empty() && first.len() < 12, "{first:?}");
    assert_eq!(first, second);
}

#[test]
fn dedup_keeps_n_identical_exchanges_and_counts_the_rest_on_the_last() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("dedup.db");
    let up = start_python("http_upstream.py", &[]);
    let mut rec = start_recorder(&up.url(), &db, &["--dedup", "2"]);
    let base = rec.url();
    // Five identical exchanges, and three whose answers differ (a counter).
    let urls: Vec<String> = (0..5)
        .map(|_| format!("{base}/json"))
        .chain((0..3).map(|_| format!("{base}/counter")))
        .collect();
    let r = curl(&urls.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(r.exit, 0);
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    assert!(
        rec.stderr().contains("0 filtered, 3 deduplicated"),
        "{}",
        rec.stderr()
    );
    let all = load(&db);
    let json: Vec<_> = all.iter().filter(|e| e.request.target == "/json").collect();
    assert_eq!(json.len(), 2);
    assert_eq!(json[0].tags.get("dedup_dropped"), None);
    assert_eq!(
        json[1].tags.get("dedup_dropped").map(String::as_str),
        Some("3")
    );
    assert_eq!(
        all.iter()
            .filter(|e| e.request.target == "/counter")
            .count(),
        3
    );
}

#[test]
fn bad_policy_flags_exit_2_before_anything_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("never.db");
    let pcap = shared_file("empty.pcap", b"not a capture at all");
    let cases: Vec<(Vec<String>, &str)> = vec![
        (
            vec![
                "record",
                "--proxy",
                "--upstream",
                "http://127.0.0.1:9",
                "--exclude",
                "/a[",
            ],
            "invalid pattern \"/a[\"",
        ),
        (
            vec![
                "record",
                "--proxy",
                "--upstream",
                "http://127.0.0.1:9",
                "--sample",
                "1.5",
            ],
            "--sample must be a fraction in (0, 1]",
        ),
        (
            vec!["import", pcap.to_str().unwrap(), "--sample", "0"],
            "--sample must be a fraction in (0, 1]",
        ),
        (
            vec!["import", pcap.to_str().unwrap(), "--dedup", "0"],
            "--dedup",
        ),
    ]
    .into_iter()
    .map(|(a, m)| (a.into_iter().map(String::from).collect(), m))
    .collect();
    for (args, message) in cases {
        let out = mf()
            .args(&args)
            .args(
                ["--listen", "127.0.0.1:0"]
                    .iter()
                    .filter(|_| args[0] == "record"),
            )
            .arg("-o")
            .arg(&db)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!db.exists(), "{args:?} created the recording");
    }
}
