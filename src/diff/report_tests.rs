//! The report's unit tests: summary, files, exit codes and gates.

use super::{Difference, Entry, Gate, Ignored, Outcome, Report, Verdict};
use crate::model::ErrorKind;

fn entry(id: i64, path: &str, outcome: Outcome, now_ms: u64) -> Entry {
    Entry {
        id,
        method: "GET".into(),
        path: path.into(),
        outcome,
        latency_recorded_ns: Some(2_000_000),
        latency_now_ns: Some(now_ms * 1_000_000),
    }
}

fn matched() -> Outcome {
    Outcome::Compared(Verdict {
        differences: vec![],
        ignored: vec![Ignored {
            path: "$.id".into(),
            rule: "form: uuid".into(),
        }],
    })
}

fn differing() -> Outcome {
    Outcome::Compared(Verdict {
        differences: vec![Difference {
            path: "$.name".into(),
            recorded: "\"user-3\"".into(),
            now: "\"User <Three>\"".into(),
        }],
        ignored: vec![],
    })
}

fn sample() -> Report {
    let mut r = Report::new();
    r.add(entry(1, "/users/1", matched(), 1));
    r.add(entry(2, "/users/3", differing(), 2));
    r.add(entry(
        3,
        "/slow",
        Outcome::Failed {
            reason: "no answer within 1s".into(),
            kind: Some(ErrorKind::UpstreamTimeout),
        },
        300,
    ));
    r
}

#[test]
fn summary_names_counts_first_differences_and_latency() {
    let text = sample().summary_text();
    assert!(
        text.starts_with("3 exchanges: 1 matched, 1 differing, 1 failed (33.33% match)"),
        "{text}"
    );
    assert!(
        text.contains("GET /users/3  $.name: \"user-3\" → \"User <Three>\""),
        "{text}"
    );
    assert!(
        text.contains("GET /slow  upstream_timeout: no answer within 1s"),
        "{text}"
    );
    assert!(text.contains("1  form: uuid"), "{text}");
    assert!(text.contains("GET /users/{id}"), "{text}");
}

#[test]
fn json_and_junit_files_hold_every_entry() {
    let r = sample();
    let dir = tempfile::tempdir().unwrap();
    let (json, xml) = (dir.path().join("r.json"), dir.path().join("r.xml"));
    r.write_json(&json).unwrap();
    r.write_junit(&xml).unwrap();
    // Writing twice gives the same file: the spool is read, not consumed.
    r.write_json(&dir.path().join("again.json")).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&json).unwrap()).unwrap();
    assert_eq!(
        std::fs::read(&json).unwrap(),
        std::fs::read(dir.path().join("again.json")).unwrap()
    );
    assert_eq!(v["summary"]["differing"], 1);
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 3);
    assert_eq!(entries[1]["differences"][0]["path"], "$.name");
    assert_eq!(entries[0]["ignored"][0]["rule"], "form: uuid");
    assert_eq!(entries[2]["kind"], "upstream_timeout");
    assert_eq!(entries[2]["latency_now_ms"], 300.0);
    let xml = std::fs::read_to_string(&xml).unwrap();
    assert!(
        xml.contains(r#"<testcase name="GET /users/3" classname="GET /users/{id}""#),
        "{xml}"
    );
    assert!(xml.contains("&lt;Three&gt;"), "{xml}");
    assert!(xml.contains(r#"<error type="upstream_timeout""#), "{xml}");
}

#[test]
fn exit_codes_without_and_with_gates() {
    let gates = |s: &[&str]| {
        s.iter()
            .map(|g| g.parse::<Gate>().unwrap())
            .collect::<Vec<_>>()
    };
    let mut ok = Report::new();
    ok.add(entry(1, "/a", matched(), 1));
    assert_eq!(ok.exit_code(&[]), 0);
    let mut diff = Report::new();
    for i in 0..99 {
        diff.add(entry(i, "/a", matched(), 1));
    }
    diff.add(entry(100, "/a", differing(), 1));
    assert_eq!(diff.exit_code(&[]), 1);
    assert_eq!(diff.exit_code(&gates(&["match<99%"])), 0);
    assert_eq!(diff.exit_code(&gates(&["match<99.5%"])), 1);
    assert_eq!(diff.exit_code(&gates(&["match<99%", "p99>0.5ms"])), 1);
    assert_eq!(sample().exit_code(&[]), 2);
    assert_eq!(sample().exit_code(&gates(&["p99>1s"])), 0);
    assert_eq!(sample().exit_code(&gates(&["failed>0"])), 2);
}

#[test]
fn many_endpoints_share_one_line_beyond_the_cap() {
    let mut r = Report::new();
    for i in 0..1_100 {
        r.add(entry(i, &format!("/e{i}x"), matched(), 1));
    }
    let text = r.summary_text();
    assert!(text.contains("(other endpoints)"));
    assert_eq!(
        text.lines().filter(|l| l.starts_with("GET /e")).count(),
        1_000
    );
}

#[test]
fn a_summary_only_report_says_the_same_without_keeping_entries() {
    let mut lean = Report::summary_only();
    let full = sample();
    for e in [
        entry(1, "/users/1", matched(), 1),
        entry(2, "/users/3", differing(), 2),
        entry(
            3,
            "/slow",
            Outcome::Failed {
                reason: "no answer within 1s".into(),
                kind: Some(ErrorKind::UpstreamTimeout),
            },
            300,
        ),
    ] {
        lean.add(e);
    }
    assert_eq!(lean.summary_text(), full.summary_text());
    assert_eq!(lean.exit_code(&[]), full.exit_code(&[]));
    let mut seen = 0;
    lean.each_entry(|_| {
        seen += 1;
        Ok(())
    })
    .ok();
    assert_eq!(seen, 0, "no entry is spooled");
}
