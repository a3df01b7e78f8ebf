//! Replay of a big recording: only an index is held in memory and answers are read from the
//! recording on demand, so they must be the recorded bytes all the same; an unknown URL gets
//! its near-miss report from the indexed candidates; identical requests keep recorded order.

use std::path::Path;

use crate::common::*;

/// Exchanges in the synthetic recording: above the size whose near misses score every
/// exchange, small enough to generate in a few seconds with a debug build.
const EXCHANGES: &str = "30000";

fn ls_path(db: &Path, glob: &str) -> Vec<serde_json::Value> {
    let out = mf_run(&["ls", db.to_str().unwrap(), "--json", "--path", glob]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The response body `mf show` prints for exchange `id`.
fn shown_body(db: &Path, id: &serde_json::Value) -> String {
    let out = mf_run(&["show", db.to_str().unwrap(), &id.to_string(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ex: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    ex["response"]["body"]["text"].as_str().unwrap().to_string()
}

#[test]
fn a_big_recording_is_served_from_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    let gen = mf_run(&[
        "generate",
        "synthetic-recording",
        "-o",
        db.to_str().unwrap(),
        "--exchanges",
        EXCHANGES,
    ]);
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let mut replay = start_replay(&db, &[]);
    let base = replay.url();
    assert!(
        replay
            .stderr()
            .contains(&format!("replaying {EXCHANGES} exchanges")),
        "{}",
        replay.stderr()
    );

    // A recorded request, answered with the recorded bytes.
    let orders = ls_path(&db, "/orders/*");
    let order = &orders[orders.len() / 2];
    let target = order["target"].as_str().unwrap();
    let got = curl(&[&format!("{base}{target}")]);
    assert_eq!(got.status(), 200, "{got:?}");
    assert_eq!(
        String::from_utf8(got.body).unwrap(),
        shown_body(&db, &order["id"])
    );

    // Identical requests: the 1st and 2nd recorded answers, in recorded order.
    let flaky = ls_path(&db, "/flaky");
    for recorded in &flaky[..2] {
        let got = curl(&[&format!("{base}/flaky")]);
        assert_eq!(
            u64::from(got.status()),
            recorded["status"].as_u64().unwrap()
        );
        assert_eq!(
            String::from_utf8(got.body).unwrap(),
            shown_body(&db, &recorded["id"])
        );
    }

    // An unknown URL: a near-miss report naming the closest recorded path.
    let missing = curl(&[&format!("{base}/orders/no-such-order")]);
    assert_eq!(missing.status(), 404);
    let report: serde_json::Value = serde_json::from_slice(&missing.body).unwrap();
    let closest = report["closest"].as_array().unwrap();
    assert_eq!(closest.len(), 3, "{report}");
    for c in closest {
        assert!(
            c["target"].as_str().unwrap().starts_with("/orders/"),
            "{report}"
        );
        assert!(
            c["mismatches"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m.as_str().unwrap().starts_with("path: recorded /orders/")),
            "{report}"
        );
    }
    assert!(replay.interrupt().success(), "{}", replay.stderr());
    assert!(
        replay
            .stderr()
            .contains("served 4 requests (3 matched, 1 unmatched, 0 bad)"),
        "{}",
        replay.stderr()
    );
}
