//! Replay realism through real clients: seeded fault injection, deterministic rules, resets
//! and hangs as curl sees them, live mode switches through the admin API and `mf ctl`, and
//! `/metrics` read by Python's `prometheus_client` parser. Latency checks are lower bounds only.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use mf::model::Protocol;
use mf::replay::plan::{Planner, Settings};
use mf::replay::rules::RequestInfo;
use mf::replay::scenario::{Mode, Scenario};

use crate::common::*;

/// One recording shared by every test here: `/json`, `/binary` (1 MiB), `/users/7` (404
/// upstream), `/slow` (answered after 300 ms).
fn recording() -> &'static Path {
    static DB: OnceLock<PathBuf> = OnceLock::new();
    DB.get_or_init(|| {
        require("curl");
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("faults-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("rec.db");
        let _ = std::fs::remove_file(&db);
        let upstream = start_python("http_upstream.py", &[]);
        let mut recorder = start_recorder(&upstream.url(), &db, &[]);
        for path in ["/json", "/binary", "/users/7", "/slow"] {
            let r = curl(&[&format!("{}{path}", recorder.url())]);
            assert_eq!(r.exit, 0, "recording {path}");
        }
        let status = recorder.interrupt();
        assert!(status.success(), "{}", recorder.stderr());
        db
    })
}

/// The status of each request, in order, over one keep-alive connection where the server
/// keeps it (curl reconnects after a reset or close by itself).
fn statuses(base: &str, paths: &[&str]) -> Vec<u16> {
    let mut cmd = Command::new("curl");
    cmd.args([
        "-s",
        "--noproxy",
        "*",
        "--max-time",
        "20",
        "-w",
        "%{http_code}\\n",
    ]);
    for p in paths {
        cmd.arg(format!("{base}{p}")).args(["-o", "/dev/null"]);
    }
    let out = cmd.output().expect("running curl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim().parse().unwrap_or(0))
        .collect()
}

fn write_config(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("mf.yaml");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

/// Starts a replay with the admin API on an ephemeral port; returns it and the admin address.
fn replay_with_admin(extra: &[&str]) -> (Proc, String) {
    let mut args = vec!["--admin", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let replay = start_replay(recording(), &args);
    let mut admin = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            let err = replay.stderr();
            match err.split("admin API at ").nth(1) {
                Some(rest) => {
                    admin = rest.split_whitespace().next().unwrap_or("").to_string();
                    true
                }
                None => false,
            }
        }),
        "no admin address in {}",
        replay.stderr()
    );
    (replay, admin)
}

#[test]
fn error_mode_with_a_seed_injects_exactly_the_planned_faults_every_run() {
    const N: usize = 60;
    let paths = vec!["/json"; N];
    // What the planner decides for this seed, computed independently of the server.
    let scenario = Scenario {
        mode: Mode::Error,
        error_rate: 0.3,
        error_status: vec![502, 503],
        ..Scenario::default()
    };
    let planner = Planner::new(
        &[],
        Settings {
            scenario,
            ..Settings::default()
        },
        7,
    );
    let req = RequestInfo {
        protocol: Protocol::Http11,
        method: "GET",
        path: "/json",
        grpc_method: None,
        headers: &[],
    };
    let expected: Vec<u16> = (0..N)
        .map(|_| match planner.plan(&req, Some(0)).fault {
            Some(mf::replay::faults::Fault::Status { code, .. }) => code,
            _ => 200,
        })
        .collect();
    let injected = expected.iter().filter(|&&s| s != 200).count();
    assert!(
        injected > 5 && injected < 35,
        "seed 7 should fail some but not all: {injected}"
    );

    let mut runs = vec![];
    for _ in 0..2 {
        let replay = start_replay(
            recording(),
            &[
                "--mode",
                "error",
                "--error-rate",
                "0.3",
                "--error-status",
                "502,503",
                "--seed",
                "7",
            ],
        );
        assert!(
            wait_until(Duration::from_secs(5), || replay
                .stderr()
                .contains("mf: seed 7 ")),
            "the seed is logged: {}",
            replay.stderr()
        );
        runs.push(statuses(&replay.url(), &paths));
    }
    assert_eq!(runs[0], expected);
    assert_eq!(runs[1], expected, "the same seed gives the same run");
    assert_eq!(
        runs[0].iter().filter(|&&s| s == 502 || s == 503).count(),
        injected
    );
}

#[test]
fn nth_three_fails_exactly_the_third_call() {
    let (_dir, config) = write_config(
        "rules:\n  - name: third-json\n    match: {method: GET, path: /json}\n    nth: 3\n    fault: {status: {code: 503, body: \"third call\"}}\n",
    );
    let replay = start_replay(recording(), &["--config", config.to_str().unwrap()]);
    let got = statuses(
        &replay.url(),
        &[
            "/json", "/binary", "/json", "/json", "/binary", "/json", "/json",
        ],
    );
    assert_eq!(
        got,
        vec![200, 200, 200, 503, 200, 200, 200],
        "only the 3rd /json fails; /binary does not count"
    );
    let r = curl(&[&format!("{}/json", replay.url())]);
    assert_eq!(r.status(), 200);
}

#[test]
fn curl_sees_a_reset_a_timeout_and_a_truncated_body() {
    let (_dir, config) = write_config(
        "rules:\n  - {match: {path: /binary}, fault: reset}\n  - {match: {path: \"/users/{id}\"}, fault: hang}\n  - {match: {path: /json}, fault: {close_mid_body: {}}}\n",
    );
    let replay = start_replay(recording(), &["--config", config.to_str().unwrap()]);
    let reset = curl(&[&format!("{}/binary", replay.url())]);
    assert_eq!(reset.exit, 56, "connection reset: {reset:?}");
    let hang = curl(&["--max-time", "1", &format!("{}/users/7", replay.url())]);
    assert_eq!(hang.exit, 28, "timeout: {hang:?}");
    let cut = curl(&[&format!("{}/json", replay.url())]);
    assert_eq!(cut.exit, 18, "partial body: {cut:?}");
    // Unruled paths still answer.
    assert_eq!(curl(&[&format!("{}/slow", replay.url())]).status(), 200);
}

/// Over HTTP/2 a cut body is its head, its first bytes and then RST_STREAM: h2 discards the
/// DATA a reset stream still has queued, so the reset must wait until those bytes have left
/// (before it did, clients got a bare RST_STREAM, not even the head).
#[test]
fn an_http2_client_gets_the_head_and_the_bytes_before_a_mid_body_reset() {
    require("nghttp");
    let (_dir, config) = write_config(
        "rules:\n  - {match: {path: /json}, fault: {close_mid_body: {after_bytes: 10}}}\n",
    );
    let replay = start_replay(recording(), &["--config", config.to_str().unwrap()]);
    let url = format!("{}/json", replay.url());
    for _ in 0..10 {
        // nghttp shows the frames as they arrive.
        let out = Command::new("nghttp")
            .args(["-v", "--timeout", "10", &url])
            .env_remove("http_proxy")
            .output()
            .expect("nghttp runs");
        let text = String::from_utf8_lossy(&out.stdout);
        let data = text.find("recv DATA frame <length=10,");
        let reset = text.find("recv RST_STREAM frame");
        assert!(text.contains("recv (stream_id=13) :status: 200"), "{text}");
        assert!(
            matches!((data, reset), (Some(d), Some(r)) if d < r),
            "10 bytes of DATA, then the reset: {text}"
        );
        // curl reports the stream error (and, on an error, writes out neither head nor body).
        let cut = curl(&["--http2-prior-knowledge", &url]);
        assert_eq!(cut.exit, 92, "HTTP/2 stream error: {cut:?}");
    }
}

#[test]
fn admin_api_and_ctl_switch_the_mode_on_the_next_request() {
    let (replay, admin) = replay_with_admin(&["--seed", "3"]);
    let url = format!("{}/json", replay.url());
    assert_eq!(curl(&[&url]).status(), 200);
    // Changes must say they are JSON: a form-encoded body is what a cross-site page can send.
    let put = curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"mode":"error","error_rate":1.0,"error_status":[418]}"#,
        &format!("http://{admin}/api/mode"),
    ]);
    assert_eq!(put.status(), 200, "{}", String::from_utf8_lossy(&put.body));
    assert_eq!(curl(&[&url]).status(), 418);

    let ctl = mf_run(&["ctl", "--admin", &admin, "mode", "healthy"]);
    assert!(
        ctl.status.success(),
        "{}",
        String::from_utf8_lossy(&ctl.stderr)
    );
    assert_eq!(curl(&[&url]).status(), 200);

    let ctl = mf_run(&[
        "ctl",
        "--admin",
        &admin,
        "mode",
        "error",
        "--error-rate",
        "1",
        "--error-status",
        "503",
    ]);
    assert!(
        ctl.status.success(),
        "{}",
        String::from_utf8_lossy(&ctl.stderr)
    );
    assert_eq!(curl(&[&url]).status(), 503);

    let preset = mf_run(&["ctl", "--admin", &admin, "preset", "nope"]);
    assert_eq!(preset.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&preset.stderr).contains("unknown preset"));

    let stats = mf_run(&["ctl", "--admin", &admin, "stats"]);
    let stats: serde_json::Value = serde_json::from_slice(&stats.stdout).expect("stats are JSON");
    assert_eq!(stats["requests"], 4);
    assert_eq!(stats["faults"]["status"], 2);

    // Rules set live take effect at once.
    let (_dir, rules) =
        write_config("rules:\n  - {match: {path: /binary}, nth: 1, fault: reset}\n");
    assert!(mf_run(&["ctl", "--admin", &admin, "mode", "healthy"])
        .status
        .success());
    assert!(mf_run(&[
        "ctl",
        "--admin",
        &admin,
        "rules",
        "--set",
        rules.to_str().unwrap()
    ])
    .status
    .success());
    assert_eq!(curl(&[&format!("{}/binary", replay.url())]).exit, 56);
    assert_eq!(curl(&[&format!("{}/binary", replay.url())]).status(), 200);
    assert!(mf_run(&["ctl", "--admin", &admin, "reset"])
        .status
        .success());
    assert_eq!(
        curl(&[&format!("{}/binary", replay.url())]).exit,
        56,
        "reset starts the counters over"
    );
}

#[test]
fn admin_token_is_required_when_set_and_off_loopback() {
    let (_replay, admin) = replay_with_admin(&["--admin-token", "s3cret"]);
    let denied = curl(&[&format!("http://{admin}/api/state")]);
    assert_eq!(denied.status(), 401);
    let ok = curl(&[
        "-H",
        "Authorization: Bearer s3cret",
        &format!("http://{admin}/api/state"),
    ]);
    assert_eq!(ok.status(), 200);
    let ctl = mf_run(&["ctl", "--admin", &admin, "--token", "s3cret", "state"]);
    assert!(
        ctl.status.success(),
        "{}",
        String::from_utf8_lossy(&ctl.stderr)
    );
    let no_token = mf_run(&["ctl", "--admin", &admin, "state"]);
    assert_eq!(no_token.status.code(), Some(2));

    let open = mf_run(&[
        "replay",
        recording().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "0.0.0.0:0",
    ]);
    assert_eq!(open.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&open.stderr).contains("--admin-token"));
}

#[test]
fn metrics_parse_with_prometheus_client_and_count_what_happened() {
    let (_dir, config) =
        write_config("rules:\n  - {match: {path: /binary}, every: 2, fault: reset}\n");
    let (replay, admin) = replay_with_admin(&["--config", config.to_str().unwrap()]);
    let base = replay.url();
    for _ in 0..3 {
        assert_eq!(curl(&[&format!("{base}/json")]).status(), 200);
    }
    assert_eq!(
        curl(&[&format!("{base}/users/42")]).status(),
        404,
        "unmatched"
    );
    for i in 1..=4 {
        let r = curl(&[&format!("{base}/binary")]);
        assert_eq!(r.exit, if i % 2 == 0 { 56 } else { 0 });
    }
    let metrics = curl(&[&format!("http://{admin}/metrics")]);
    assert_eq!(metrics.status(), 200);
    let parse = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
out = []
for fam in text_string_to_metric_families(sys.stdin.read()):
    for s in fam.samples:
        out.append({"name": s.name, "labels": s.labels, "value": s.value})
print(json.dumps(out))
"#;
    let mut child = Command::new("python3")
        .args(["-c", parse])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &metrics.body).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "prometheus_client rejected the exposition: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let samples: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
    let value = |name: &str, labels: &[(&str, &str)]| -> f64 {
        samples
            .iter()
            .filter(|s| s["name"] == name && labels.iter().all(|(k, v)| s["labels"][*k] == *v))
            .map(|s| s["value"].as_f64().unwrap())
            .sum()
    };
    let req = "mf_requests_total";
    assert_eq!(
        value(
            req,
            &[
                ("route", "/json"),
                ("status", "200"),
                ("match", "matched"),
                ("protocol", "http/1.1")
            ]
        ),
        3.0
    );
    assert_eq!(
        value(
            req,
            &[
                ("route", "/users/{id}"),
                ("status", "404"),
                ("match", "unmatched")
            ]
        ),
        1.0
    );
    assert_eq!(value(req, &[("route", "/binary"), ("status", "200")]), 2.0);
    assert_eq!(value(req, &[("route", "/binary"), ("status", "none")]), 2.0);
    assert_eq!(value("mf_faults_injected_total", &[("kind", "reset")]), 2.0);
    assert_eq!(
        value("mf_request_duration_seconds_count", &[("route", "/json")]),
        3.0
    );
    assert!(samples
        .iter()
        .any(|s| s["name"] == "mf_websocket_connections_active"));
}

/// Seconds until curl saw the first byte of the answer.
fn time_to_first_byte(url: &str) -> f64 {
    let out = Command::new("curl")
        .args([
            "-s",
            "--noproxy",
            "*",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{time_starttransfer}",
            url,
        ])
        .output()
        .expect("curl");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("curl printed a time")
}

#[test]
fn answers_are_never_faster_than_the_configured_latency() {
    let fixed = start_replay(recording(), &["--latency", "fixed:200ms"]);
    let t = time_to_first_byte(&format!("{}/json", fixed.url()));
    assert!(t >= 0.2, "fixed:200ms answered after {t}s");

    // /slow took 300 ms upstream.
    let recorded = start_replay(recording(), &["--latency", "recorded"]);
    let t = time_to_first_byte(&format!("{}/slow", recorded.url()));
    assert!(t >= 0.29, "recorded answered after {t}s");

    let degraded = start_replay(
        recording(),
        &["--latency", "fixed:50ms", "--latency-multiplier", "4"],
    );
    let t = time_to_first_byte(&format!("{}/json", degraded.url()));
    assert!(t >= 0.2, "degraded ×4 of 50ms answered after {t}s");

    // 1 MiB at 512 KiB/s: 40 chunks, 50 ms apart.
    let paced = start_replay(recording(), &["--bandwidth", "512KiB"]);
    let out = Command::new("curl")
        .args([
            "-s",
            "--noproxy",
            "*",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{time_total} %{size_download}",
        ])
        .arg(format!("{}/binary", paced.url()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut it = text.split_whitespace();
    let total: f64 = it.next().unwrap().parse().unwrap();
    assert_eq!(it.next(), Some("1048576"));
    assert!(total >= 1.9, "1 MiB at 512 KiB/s took {total}s");
}

#[test]
fn status_faults_carry_the_recorded_or_the_configured_body() {
    let (_dir, config) = write_config(
        "rules:\n  - {match: {path: /json}, fault: {status: {code: 500}}}\n  - {match: {path: \"/users/*\"}, fault: {status: {code: 429, body: slow down}}}\n",
    );
    let replay = start_replay(recording(), &["--config", config.to_str().unwrap()]);
    let recorded = curl(&[&format!("{}/json", replay.url())]);
    assert_eq!(recorded.status(), 500);
    assert!(
        String::from_utf8_lossy(&recorded.body).contains("\"ada\""),
        "recorded body: {recorded:?}"
    );
    let configured = curl(&[&format!("{}/users/7", replay.url())]);
    assert_eq!(configured.status(), 429);
    assert_eq!(configured.body, b"slow down");
    assert!(configured.headers.contains("X-Mf-Fault: status"));
}

#[test]
fn ctl_latency_slows_the_next_answer() {
    let (replay, admin) = replay_with_admin(&[]);
    let ctl = mf_run(&["ctl", "--admin", &admin, "latency", "fixed:300ms"]);
    assert!(
        ctl.status.success(),
        "{}",
        String::from_utf8_lossy(&ctl.stderr)
    );
    let t = time_to_first_byte(&format!("{}/json", replay.url()));
    assert!(t >= 0.3, "fixed:300ms set live answered after {t}s");
    let bad = mf_run(&["ctl", "--admin", &admin, "latency", "fast"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("unknown latency mode"),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
}

/// A web page the user has open can reach a loopback admin API: a cross-site POST with a
/// simple content type, a page under a rebound DNS name, or a blank token must not change
/// anything.
#[test]
fn admin_refuses_cross_site_posts_rebound_hosts_and_blank_tokens() {
    let (_replay, admin) = replay_with_admin(&[]);
    let state = || {
        let r = curl(&[&format!("http://{admin}/api/mode")]);
        assert_eq!(r.status(), 200);
        String::from_utf8_lossy(&r.body).to_string()
    };
    let before = state();
    // What a form or `fetch(..., {mode: "no-cors"})` on another site sends.
    let cross = curl(&[
        "-X",
        "POST",
        "-H",
        "Origin: http://evil.example",
        "-H",
        "Content-Type: text/plain",
        "--data",
        r#"{"mode":"error","error_rate":1}"#,
        &format!("http://{admin}/api/mode"),
    ]);
    assert_eq!(cross.status(), 403, "{cross:?}");
    let plain = curl(&[
        "-X",
        "POST",
        "-H",
        "Content-Type: text/plain",
        "--data",
        r#"{"mode":"error","error_rate":1}"#,
        &format!("http://{admin}/api/mode"),
    ]);
    assert_eq!(plain.status(), 415, "{plain:?}");
    // DNS rebinding: the request arrives with the attacker's host name.
    let rebound = curl(&[
        "-H",
        "Host: rebind.example",
        &format!("http://{admin}/api/state"),
    ]);
    assert_eq!(rebound.status(), 403, "{rebound:?}");
    assert_eq!(state(), before, "nothing changed");
    // The real clients still work: curl with JSON, and mf ctl.
    let ok = curl(&[
        "-X",
        "PUT",
        "-H",
        "Content-Type: application/json",
        "--data",
        r#"{"mode":"degraded"}"#,
        &format!("http://{admin}/api/mode"),
    ]);
    assert_eq!(ok.status(), 200, "{ok:?}");
    assert!(mf_run(&["ctl", "--admin", &admin, "reset"])
        .status
        .success());

    let blank = mf_run(&[
        "replay",
        recording().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
        "--admin",
        "127.0.0.1:0",
        "--admin-token",
        " ",
    ]);
    assert_eq!(blank.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&blank.stderr).contains("blank"),
        "{}",
        String::from_utf8_lossy(&blank.stderr)
    );
}

/// The token can come from a file, so it stays out of `ps` and shell history.
#[test]
fn admin_token_from_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("token");
    std::fs::write(&file, "from-a-file\n").unwrap();
    let (_replay, admin) = replay_with_admin(&["--admin-token-file", file.to_str().unwrap()]);
    assert_eq!(curl(&[&format!("http://{admin}/api/state")]).status(), 401);
    let ok = curl(&[
        "-H",
        "Authorization: Bearer from-a-file",
        &format!("http://{admin}/api/state"),
    ]);
    assert_eq!(ok.status(), 200);
}

/// A scanner hitting thousands of unknown paths must not grow `/metrics` without bound.
#[test]
fn metrics_series_stay_bounded_after_many_unique_unmatched_paths() {
    let (replay, admin) = replay_with_admin(&[]);
    // One curl process, many URLs on one connection: 600 distinct unmatched routes.
    let urls: Vec<String> = (0..600)
        .map(|i| format!("{}/scan/p{i}x", replay.url()))
        .collect();
    let mut args: Vec<&str> = vec!["-o", "/dev/null"];
    for u in &urls {
        args.push(u);
    }
    curl(&args);
    let metrics = curl(&[&format!("http://{admin}/metrics")]);
    let text = String::from_utf8_lossy(&metrics.body);
    let series = text
        .lines()
        .filter(|l| l.starts_with("mf_requests_total{"))
        .count();
    assert!(series <= 110, "{series} series");
    let unmatched: f64 = text
        .lines()
        .filter(|l| l.starts_with("mf_requests_total{") && l.contains("match=\"unmatched\""))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(unmatched, 600.0, "every request is still counted");
}
