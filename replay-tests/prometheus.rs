//! The Grafana dashboard against a real Prometheus: a replay of HTTP, WebSocket and gRPC
//! traffic is scraped every second, and every panel's query of `contrib/grafana/mf.json`
//! must return data through the Prometheus HTTP API. The recording proxy's `/metrics` is
//! checked too (same metric names, its own admin guard).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::common::capture::free_port;
use crate::common::*;

/// Every query of every panel in the dashboard, with Grafana's range variable filled in.
fn dashboard_queries() -> Vec<(String, String)> {
    let path = tests_dir().join("../contrib/grafana/mf.json");
    let text = std::fs::read_to_string(&path).expect("contrib/grafana/mf.json");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    let mut out = Vec::new();
    for panel in dash["panels"].as_array().expect("panels") {
        for target in panel["targets"].as_array().into_iter().flatten() {
            let expr = target["expr"].as_str().expect("a PromQL expr");
            out.push((
                panel["title"].as_str().unwrap_or("?").to_string(),
                expr.replace("$__rate_interval", "1m"),
            ));
        }
    }
    out
}

/// `GET /api/v1/query?query=EXPR` on Prometheus at `base`: the result vector.
fn query(base: &str, expr: &str) -> Vec<serde_json::Value> {
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "10", "-G"])
        .arg(format!("{base}/api/v1/query"))
        .arg("--data-urlencode")
        .arg(format!("query={expr}"))
        .output()
        .expect("running curl");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["data"]["result"].as_array().cloned().unwrap_or_default()
}

/// Starts Prometheus scraping `targets` (HOST:PORT) every second, its data under `dir`.
fn start_prometheus(dir: &Path, targets: &[String]) -> Proc {
    let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: mf\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        ),
    )
    .unwrap();
    let mut cmd = Command::new("prometheus");
    cmd.current_dir(dir)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("tsdb").display()
        ))
        .arg("--web.listen-address=127.0.0.1:0");
    Proc::start("prometheus", cmd, "msg=\"Listening on\" address=")
}

/// HTTP, WebSocket and gRPC sessions, each recorded from its own upstream.
fn record_each(dir: &Path) -> [std::path::PathBuf; 3] {
    let dbs = ["http.db", "ws.db", "grpc.db"].map(|n| dir.join(n));
    let http = start_python("http_upstream.py", &[]);
    let mut rec = start_recorder(&http.url(), &dbs[0], &[]);
    for path in ["/json", "/api/items/1", "/api/items/2"] {
        assert_eq!(curl(&[&format!("{}{path}", rec.url())]).status(), 200);
    }
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    let ws = start_python("ws_server.py", &[]);
    let mut rec = start_recorder(&ws.url(), &dbs[1], &[]);
    crate::websocket::client(&format!("ws://{}/chat", rec.addr()), "normal");
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    let grpc = start_python("grpc_server.py", &[]);
    let mut rec = start_recorder(&grpc.url(), &dbs[2], &[]);
    crate::grpc::client(&rec.addr().to_string(), "all");
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    dbs
}

/// The three replays, each with its admin listener; the HTTP one injects a 503 fault.
struct Replays {
    http: Proc,
    ws: Proc,
    grpc: Proc,
    admins: Vec<String>,
}

fn start_replays(dir: &Path, dbs: &[std::path::PathBuf; 3]) -> Replays {
    let rules = dir.join("faults.yaml");
    std::fs::write(
        &rules,
        "rules:\n  - {match: {path: \"/api/items/2\"}, fault: {status: {code: 503}}}\n",
    )
    .unwrap();
    let admins: Vec<String> = (0..3)
        .map(|_| format!("127.0.0.1:{}", free_port()))
        .collect();
    let rules = rules.to_str().unwrap();
    Replays {
        http: start_replay(&dbs[0], &["--admin", &admins[0], "--config", rules]),
        ws: start_replay(&dbs[1], &["--admin", &admins[1]]),
        grpc: start_replay(&dbs[2], &["--admin", &admins[2]]),
        admins,
    }
}

/// One round of traffic of every kind against the replays.
fn traffic(r: &Replays) {
    for (path, status) in [
        ("/json", 200),
        ("/api/items/1", 200),
        ("/api/items/2", 503),
        ("/not-recorded", 404),
    ] {
        let got = curl(&[&format!("{}{path}", r.http.url())]);
        assert_eq!(
            got.status(),
            status,
            "{path}: {}",
            String::from_utf8_lossy(&got.body)
        );
    }
    let ws = format!("ws://{}/chat", r.ws.addr());
    crate::websocket::client(&ws, "normal");
    // A client that drops the connection: an abnormal closure.
    crate::websocket::client(&ws, "abort");
    crate::grpc::client(&r.grpc.addr().to_string(), "all");
}

#[test]
fn every_dashboard_panel_has_data_from_scraped_replays() {
    require("prometheus");
    let dir = tempfile::tempdir().unwrap();
    let dbs = record_each(dir.path());
    let replays = start_replays(dir.path(), &dbs);
    let prometheus = start_prometheus(dir.path(), &replays.admins);
    let base = prometheus.url();
    assert!(
        wait_until(Duration::from_secs(30), || {
            query(&base, "up{job=\"mf\"} == 1").len() == 3
        }),
        "Prometheus never scraped the replays:\n{}",
        prometheus.stderr()
    );
    // Rates need two samples of a series: traffic, a scrape that sees it, more traffic.
    traffic(&replays);
    assert!(
        wait_until(Duration::from_secs(20), || {
            !query(&base, "mf_websocket_abnormal_closures_total > 0").is_empty()
                && !query(&base, "mf_grpc_calls_total").is_empty()
                && !query(&base, "mf_faults_injected_total").is_empty()
        }),
        "the first round never showed in Prometheus"
    );
    traffic(&replays);

    let queries = dashboard_queries();
    assert!(queries.len() >= 17, "{queries:?}");
    let mut empty = Vec::new();
    let all_answer = wait_until(Duration::from_secs(30), || {
        empty = queries
            .iter()
            .filter(|(_, q)| query(&base, q).is_empty())
            .cloned()
            .collect();
        empty.is_empty()
    });
    assert!(all_answer, "panels without data: {empty:#?}");
    // Not just present: the counters saw both rounds of this run's traffic, once a scrape
    // after the second round reached Prometheus (an aborted WebSocket is counted when the
    // replay notices the drop, which can be after the next scrape).
    let value = |q: &str| -> f64 {
        query(&base, q)
            .first()
            .and_then(|r| r["value"][1].as_str()?.parse().ok())
            .unwrap_or(0.0)
    };
    let counters = [
        "sum(mf_faults_injected_total{kind=\"status\"})",
        "sum(mf_websocket_abnormal_closures_total)",
        "sum(mf_websocket_closes_total{code=\"1000\"})",
        "sum(mf_grpc_calls_total{code=\"5\"})",
        "sum(mf_requests_total{match=\"unmatched\",status=\"404\"})",
    ];
    let mut low = Vec::new();
    let counted = wait_until(Duration::from_secs(30), || {
        low = counters
            .iter()
            .map(|q| (*q, value(q)))
            .filter(|(_, v)| *v < 2.0)
            .collect();
        low.is_empty()
    });
    assert!(counted, "counters below this run's two rounds: {low:?}");
}

/// `mf record --proxy --admin` serves the same metric set, behind the admin guard.
#[test]
fn the_recording_proxy_serves_metrics_behind_the_admin_guard() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("proxied.db");
    let ws = start_python("ws_server.py", &[]);
    let mut rec = start_recorder(&ws.url(), &db, &["--admin", "127.0.0.1:0"]);
    let admin = rec
        .stderr()
        .split("metrics at ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_string)
        .expect("the admin address is announced");
    let url = format!("ws://{}/chat", rec.addr());
    crate::websocket::client(&url, "normal");
    crate::websocket::client(&url, "abort");
    let text = || String::from_utf8_lossy(&curl(&[&admin]).body).into_owned();
    // The aborted session is counted once the proxy has seen both sides go.
    assert!(
        wait_until(Duration::from_secs(10), || text()
            .contains("mf_websocket_abnormal_closures_total 1")),
        "{}",
        text()
    );
    let metrics = text();
    for line in [
        "mf_websocket_connections_total 2",
        "mf_websocket_connections_active 0",
        r#"mf_websocket_closes_total{code="1000",direction="client"} 1"#,
        r#"mf_requests_total{match="proxied",protocol="websocket",route="/chat",status="101"} 2"#,
    ] {
        assert!(metrics.contains(line), "{line} missing:\n{metrics}");
    }
    assert!(
        metrics.contains(r#"mf_websocket_frames_total{direction="server",opcode="text"}"#),
        "{metrics}"
    );
    // A DNS-rebinding page's Host, and a cross-site page's Origin, are refused.
    let rebound = curl(&["-H", "Host: evil.example", &admin]);
    assert_eq!(rebound.status(), 403);
    let cross = curl(&["-H", "Origin: http://evil.example", &admin]);
    assert_eq!(cross.status(), 403);
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    // With a token, /metrics needs it.
    let tokened = start_recorder(
        &ws.url(),
        &db,
        &["--admin", "127.0.0.1:0", "--admin-token", "prox-TOKEN-4d1e"],
    );
    let admin = tokened
        .stderr()
        .split("metrics at ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .map(str::to_string)
        .expect("the admin address is announced");
    assert_eq!(curl(&[&admin]).status(), 401);
    let authorized = curl(&["-H", "Authorization: Bearer prox-TOKEN-4d1e", &admin]);
    assert_eq!(authorized.status(), 200);
    assert!(String::from_utf8_lossy(&authorized.body).contains("mf_websocket_connections_total 0"));
    drop(tokened);
    // Off loopback a token is mandatory.
    let out = mf_run(&[
        "record",
        "--proxy",
        "--upstream",
        &ws.url(),
        "--listen",
        "127.0.0.1:0",
        "-o",
        db.to_str().unwrap(),
        "--admin",
        "0.0.0.0:0",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--admin-token"));
}
