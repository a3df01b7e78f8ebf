//! Recordings in a real PostgreSQL server: several recorders appending to one recording,
//! a recorder killed mid-load, the database restarted under a recorder, replay from the
//! database, `mf copy` both ways, and bad or unreachable locations.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::postgres::{cluster, Cluster, PrivateCluster};
use crate::common::{
    curl, ls_json, mf, mf_run, start_python, start_recorder, start_replay, wait_until,
};

/// GETs every URL in one curl run (keep-alive), returning each status.
fn fetch_all(urls: &[String]) -> Vec<u16> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-sS",
        "--noproxy",
        "*",
        "--max-time",
        "30",
        "-w",
        "%{http_code}\n",
    ]);
    for u in urls {
        cmd.args(["-o", "/dev/null"]).arg(u);
    }
    let out = cmd.output().expect("running curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap_or(0))
        .collect()
}

fn item_urls(base: &str, from: usize, n: usize) -> Vec<String> {
    (from..from + n)
        .map(|i| format!("{base}/api/items/{i}"))
        .collect()
}

/// Stored exchanges per recorder, read with SQL (the CLI shows no recorder column).
fn per_recorder(c: &Cluster, db: &str, recording: &str) -> Vec<(String, i64)> {
    let mut client = c.client(db);
    client
        .query(
            &format!(
                "SELECT recorder, count(*) FROM \"mf_{recording}\".exchanges GROUP BY 1 ORDER BY 1"
            ),
            &[],
        )
        .map(|rows| rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        .unwrap_or_default()
}

fn stored_of(c: &Cluster, db: &str, recording: &str, recorder: &str) -> i64 {
    per_recorder(c, db, recording)
        .into_iter()
        .find(|(r, _)| r == recorder)
        .map_or(0, |(_, n)| n)
}

fn paths(db: &Path) -> Vec<String> {
    ls_json(db)
        .iter()
        .map(|r| r["target"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn two_recorders_append_to_one_recording_at_once() {
    let c = cluster();
    let db = c.fresh_db("two_recorders");
    let url = PathBuf::from(c.recording_url(&db, "shared"));
    let upstream = start_python("http_upstream.py", &[]);
    let mut a = start_recorder(&upstream.url(), &url, &["--recorder", "node-a"]);
    let mut b = start_recorder(&upstream.url(), &url, &["--recorder", "node-b"]);
    let (a_url, b_url) = (a.url(), b.url());
    let ta = std::thread::spawn(move || fetch_all(&item_urls(&a_url, 0, 60)));
    let tb = std::thread::spawn(move || fetch_all(&item_urls(&b_url, 1000, 60)));
    let (sa, sb) = (ta.join().unwrap(), tb.join().unwrap());
    assert!(sa.iter().chain(&sb).all(|s| *s == 200), "{sa:?} {sb:?}");
    assert!(a.interrupt().success(), "{}", a.stderr());
    assert!(b.interrupt().success(), "{}", b.stderr());

    let rows = ls_json(&url);
    assert_eq!(rows.len(), 120);
    let targets: HashSet<String> = paths(&url).into_iter().collect();
    let expected: HashSet<String> = (0..60)
        .chain(1000..1060)
        .map(|i| format!("/api/items/{i}"))
        .collect();
    assert_eq!(targets, expected, "every exchange present exactly once");
    assert_eq!(
        per_recorder(c, &db, "shared"),
        vec![("node-a".to_string(), 60), ("node-b".to_string(), 60)]
    );
    // Connection ids never collide between the two recorders.
    let conns = |prefix: &str| -> HashSet<i64> {
        rows.iter()
            .filter(|r| {
                let n: usize = r["target"].as_str().unwrap()["/api/items/".len()..]
                    .parse()
                    .unwrap();
                (prefix == "a") == (n < 1000)
            })
            .map(|r| r["connection_id"].as_i64().unwrap())
            .collect()
    };
    assert!(conns("a").is_disjoint(&conns("b")));
    // Bodies are shared blobs: identical answers are stored once, whoever recorded them.
    let mut client = c.client(&db);
    let dup: i64 = client
        .query_one(
            "SELECT count(*) FROM (SELECT hash FROM \"mf_shared\".blobs GROUP BY hash HAVING count(*) > 1) d",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(dup, 0);
}

#[test]
fn a_recorder_killed_mid_load_loses_at_most_its_last_batch() {
    let c = cluster();
    let db = c.fresh_db("kill_nine");
    let url = PathBuf::from(c.recording_url(&db, "fleet"));
    let upstream = start_python("http_upstream.py", &[]);
    let mut a = start_recorder(&upstream.url(), &url, &["--recorder", "doomed"]);
    let mut b = start_recorder(&upstream.url(), &url, &["--recorder", "survivor"]);
    assert!(fetch_all(&item_urls(&a.url(), 0, 30))
        .iter()
        .all(|s| *s == 200));
    // Batches are committed while the recorder runs, not at its exit.
    assert!(
        wait_until(Duration::from_secs(10), || stored_of(
            c, &db, "fleet", "doomed"
        ) == 30),
        "{:?}",
        per_recorder(c, &db, "fleet")
    );
    let a_url = a.url();
    let burst = std::thread::spawn(move || fetch_all(&item_urls(&a_url, 100, 200)));
    assert!(fetch_all(&item_urls(&b.url(), 1000, 20))
        .iter()
        .all(|s| *s == 200));
    a.kill9();
    let _ = burst.join();
    assert!(fetch_all(&item_urls(&b.url(), 1020, 20))
        .iter()
        .all(|s| *s == 200));
    assert!(b.interrupt().success(), "{}", b.stderr());

    assert_eq!(stored_of(c, &db, "fleet", "survivor"), 40);
    let doomed = stored_of(c, &db, "fleet", "doomed");
    assert!((30..=230).contains(&doomed), "{doomed}");
    // What was stored is whole and readable, once each.
    let targets = paths(&url);
    let unique: HashSet<&String> = targets.iter().collect();
    assert_eq!(unique.len(), targets.len());
    assert_eq!(targets.len() as i64, 40 + doomed);
}

#[test]
fn a_database_restart_costs_the_gap_and_recording_resumes() {
    let private = PrivateCluster::start();
    let c = &private.0;
    let db = c.fresh_db("restart");
    let url = PathBuf::from(c.recording_url(&db, "r"));
    let upstream = start_python("http_upstream.py", &[]);
    let mut rec = start_recorder(&upstream.url(), &url, &["--recorder", "r1"]);
    assert!(fetch_all(&item_urls(&rec.url(), 0, 10))
        .iter()
        .all(|s| *s == 200));
    assert!(wait_until(Duration::from_secs(10), || stored_of(
        c, &db, "r", "r1"
    ) == 10));

    c.stop();
    // Forwarding never waits on the database.
    assert!(fetch_all(&item_urls(&rec.url(), 100, 10))
        .iter()
        .all(|s| *s == 200));
    assert!(
        wait_until(Duration::from_secs(10), || rec
            .stderr()
            .contains("cannot write")),
        "{}",
        rec.stderr()
    );
    c.start();
    // After the restart, exchanges are stored again (the writer reconnects on its own).
    let resumed = wait_until(Duration::from_secs(20), || {
        let _ = fetch_all(&item_urls(&rec.url(), 200, 1));
        rec.stderr().contains("resumed")
    });
    assert!(resumed, "{}", rec.stderr());
    assert!(fetch_all(&item_urls(&rec.url(), 300, 10))
        .iter()
        .all(|s| *s == 200));
    let status = rec.interrupt();
    let err = rec.stderr();
    assert_eq!(
        status.code(),
        Some(3),
        "exchanges were lost, so exit 3:\n{err}"
    );
    assert_eq!(
        err.matches("cannot write").count(),
        1,
        "reported once:\n{err}"
    );
    assert!(err.contains("not stored"), "{err}");
    let targets: HashSet<String> = paths(&url).into_iter().collect();
    for i in (0..10).chain(300..310) {
        assert!(
            targets.contains(&format!("/api/items/{i}")),
            "{i} missing: {targets:?}"
        );
    }
}

/// Status, headers and body of `path` from a replay at `base`.
fn answer(base: &str, path: &str) -> (u16, String, Vec<u8>) {
    let r = curl(&[&format!("{base}{path}")]);
    (r.status(), r.headers, r.body)
}

#[test]
fn replay_from_the_database_matches_replay_from_the_file() {
    let c = cluster();
    let db = c.fresh_db("replay_same");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("api.db");
    let upstream = start_python("http_upstream.py", &[]);
    let mut rec = start_recorder(&upstream.url(), &file, &[]);
    let requests = [
        "/json",
        "/binary",
        "/chunked",
        "/gzip",
        "/empty",
        "/api/items/7",
    ];
    for p in requests {
        let status = curl(&[&format!("{}{p}", rec.url())]).status();
        assert!((200..300).contains(&status), "{p}: {status}");
    }
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    let url = PathBuf::from(c.recording_url(&db, "copied"));
    let out = mf().arg("copy").arg(&file).arg(&url).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let from_file = start_replay(&file, &[]);
    let from_db = start_replay(&url, &[]);
    for p in requests {
        let (a, b) = (answer(&from_file.url(), p), answer(&from_db.url(), p));
        assert!((200..300).contains(&a.0), "{p}: {}", a.0);
        assert!(
            a == b,
            "{p} differs between file and database replays:\n{}\n{}",
            a.1,
            b.1
        );
    }
}

#[test]
fn copy_round_trip_file_database_file_is_identical_and_idempotent() {
    let c = cluster();
    let db = c.fresh_db("round_trip");
    let dir = tempfile::tempdir().unwrap();
    let first = dir.path().join("first.db");
    let back = dir.path().join("back.db");
    let out = mf_run(&[
        "generate",
        "synthetic-recording",
        "--exchanges",
        "300",
        "-o",
        first.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = PathBuf::from(c.recording_url(&db, "rt"));
    let copy = |src: &Path, dst: &Path| {
        let out = mf().arg("copy").arg(src).arg(dst).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let said = copy(&first, &url);
    assert!(said.contains("copied 300 exchanges"), "{said}");
    let again = copy(&first, &url);
    assert!(
        again.contains("copied 0 exchanges") && again.contains("300 already there"),
        "{again}"
    );
    copy(&url, &back);
    let again = copy(&url, &back);
    assert!(again.contains("copied 0 exchanges"), "{again}");

    let listing = ls_json(&first);
    assert_eq!(listing.len(), 300);
    assert!(
        listing == ls_json(&back),
        "mf ls --json differs after file -> db -> file"
    );
    assert!(
        listing == ls_json(&url),
        "mf ls --json differs between file and db"
    );
    let har = |p: &Path| {
        // Kept secrets: the placeholders of a redacting export differ from run to run.
        let out = mf()
            .args(["export", "--keep-secrets"])
            .arg(p)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        v["log"]["entries"].clone()
    };
    let (a, b) = (har(&first), har(&back));
    assert_eq!(a.as_array().map(Vec::len), Some(300));
    assert!(a == b, "bodies and heads differ after the round trip");
}

#[test]
fn bad_or_unreachable_databases_fail_clearly_without_the_password() {
    let port = crate::common::refused_port();
    let secret = "hunter2-s3cret";
    let unreachable = format!(
        "postgres://mf:{secret}@127.0.0.1:{}/db?recording=x",
        port.port
    );
    let cases: Vec<Vec<String>> = vec![
        vec!["ls".into(), unreachable.clone()],
        vec!["replay".into(), unreachable.clone()],
        vec!["copy".into(), unreachable.clone(), "out.db".into()],
        vec![
            "record".into(),
            "--proxy".into(),
            "--upstream".into(),
            "http://127.0.0.1:9".into(),
            "--listen".into(),
            "127.0.0.1:0".into(),
            "-o".into(),
            unreachable.clone(),
        ],
        vec![
            "ls".into(),
            format!("postgres://mf:{secret}@127.0.0.1/db?recording=no/slash"),
        ],
        vec![
            "ls".into(),
            format!("postgres://mf:{secret}@127.0.0.1/db?nonsense=1"),
        ],
        vec![
            "sql".into(),
            format!("postgres://mf:{secret}@127.0.0.1/db"),
            "SELECT 1".into(),
        ],
    ];
    for args in cases {
        let out = mf().args(&args).output().unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains("mf: error"), "{args:?}: {stderr}");
        assert!(
            !stderr.contains(secret) && !stdout.contains(secret),
            "{args:?}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    }

    // A password in a working URL is used, and kept out of messages and the recording.
    let c = cluster();
    let db = c.fresh_db("secret_url");
    let url = format!(
        "postgres://postgres:{secret}@127.0.0.1:{}/{db}?recording=s&sslmode=disable",
        c.port
    );
    let upstream = start_python("http_upstream.py", &[]);
    let mut rec = start_recorder(&upstream.url(), Path::new(&url), &[]);
    assert_eq!(curl(&[&format!("{}/json", rec.url())]).status(), 200);
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    assert!(!rec.stderr().contains(secret), "{}", rec.stderr());
    assert!(
        rec.stderr().contains("recorded 1 exchanges"),
        "{}",
        rec.stderr()
    );
    let mut client = c.client(&db);
    let leaked: i64 = client
        .query_one(
            "SELECT count(*) FROM \"mf_s\".meta WHERE value LIKE '%' || $1 || '%'",
            &[&secret],
        )
        .unwrap()
        .get(0);
    assert_eq!(leaked, 0, "the password reached the recording's metadata");
    let out = mf().args(["ls", &url]).output().unwrap();
    assert!(out.status.success());
    assert!(!String::from_utf8_lossy(&out.stdout).contains(secret));
}

#[test]
fn websocket_frames_recorded_into_the_database_survive_a_copy_out() {
    let c = cluster();
    let db = c.fresh_db("frames");
    let url = PathBuf::from(c.recording_url(&db, "ws"));
    let server = start_python("ws_server.py", &[]);
    let mut rec = start_recorder(&server.url(), &url, &[]);
    let seen = crate::websocket::client(&format!("ws://{}/chat", rec.addr()), "normal");
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ws.db");
    let out = mf().arg("copy").arg(&url).arg(&file).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let rows = ls_json(&url);
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0]["messages_in"].as_i64() > Some(0) && rows[0]["messages_out"].as_i64() > Some(0)
    );
    assert!(rows == ls_json(&file));
    let show = |p: &Path, id: &str| {
        let out = mf()
            .arg("show")
            .arg(p)
            .args([id, "--json"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap()
    };
    let (id_db, id_file) = (
        rows[0]["id"].to_string(),
        ls_json(&file)[0]["id"].to_string(),
    );
    assert!(
        show(&url, &id_db) == show(&file, &id_file),
        "frames differ after the copy"
    );
    // Replayed from the database, the session plays the recorded frames.
    let replay = start_replay(&url, &[]);
    let replayed = crate::websocket::client(&format!("ws://{}/chat", replay.addr()), "normal");
    assert_eq!(replayed[..7], seen[..7]);
}

#[test]
fn tls_to_the_database_is_verified_against_the_given_ca() {
    let c = cluster();
    let db = c.fresh_db("tls");
    let base = format!("{}?recording=t&sslmode=require", c.db_url(&db));
    let trusted = format!("{base}&sslrootcert={}", c.ca.display());
    let upstream = start_python("http_upstream.py", &[]);
    let mut rec = start_recorder(&upstream.url(), Path::new(&trusted), &["--recorder", "tls"]);
    assert_eq!(curl(&[&format!("{}/json", rec.url())]).status(), 200);
    // The recorder's own connection is encrypted, as the server sees it.
    let mut client = c.client(&db);
    let encrypted: i64 = client
        .query_one(
            "SELECT count(*) FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'mf' AND s.ssl",
            &[],
        )
        .unwrap()
        .get(0);
    assert!(encrypted >= 1);
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    assert_eq!(ls_json(Path::new(&trusted)).len(), 1);
    // Without the CA, the server's certificate is not trusted: a clear error, exit 2.
    let out = mf().args(["ls", &base]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("certificate"), "{err}");
}
