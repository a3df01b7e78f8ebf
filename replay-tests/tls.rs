//! HTTPS: TLS upstreams, TLS listeners, and the forward proxy that intercepts CONNECT with
//! certificates from the local mf CA — recorded and replayed with real curl and Python.

use std::path::Path;
use std::process::Command;

use crate::common::*;

/// An `mf` command using a private CA directory.
fn mf_with_ca(ca_dir: &Path) -> Command {
    let mut cmd = mf();
    cmd.env("MF_CA_DIR", ca_dir);
    cmd
}

fn start_mf(name: &str, ca_dir: &Path, args: &[&str]) -> Proc {
    let mut cmd = mf_with_ca(ca_dir);
    cmd.args(args);
    Proc::start(name, cmd, "listening on")
}

/// `mf record` as a TLS reverse proxy (cert from the mf CA) in front of an https upstream
/// trusted through `test_ca`.
fn start_tls_recorder(ca_dir: &Path, upstream: &str, test_ca: &Path, db: &Path) -> Proc {
    start_mf(
        "record",
        ca_dir,
        &[
            "record",
            "--proxy",
            "--upstream",
            upstream,
            "--upstream-ca",
            test_ca.to_str().unwrap(),
            "--tls",
            "--listen",
            "127.0.0.1:0",
            "-o",
            db.to_str().unwrap(),
        ],
    )
}

/// The JSON lines a Python test client printed, after checking it succeeded.
fn json_lines(out: std::process::Output) -> Vec<serde_json::Value> {
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

fn https_upstream(cert: &Path, key: &Path) -> Proc {
    start_python(
        "http_upstream.py",
        &["--tls", cert.to_str().unwrap(), key.to_str().unwrap()],
    )
}

#[test]
fn mf_ca_init_path_export() {
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let out = mf_with_ca(&ca).args(["ca", "init"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(path.ends_with("mf-ca.pem"));
    let pem = mf_with_ca(&ca).args(["ca", "export"]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&pem.stdout),
        std::fs::read_to_string(&path).unwrap()
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let key = ca.join("mf-ca-key.pem");
        assert_eq!(
            std::fs::metadata(key).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }
    let missing = mf_with_ca(&dir.path().join("none"))
        .args(["ca", "path"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("mf ca init"));
}

#[test]
fn tls_upstream_is_verified_recorded_and_replayed_over_a_tls_listener() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("mfca");
    let (test_ca, cert, key) = make_test_pki(dir.path());
    let upstream = https_upstream(&cert, &key);
    let up_url = format!("https://localhost:{}", upstream.addr().port());
    let db = dir.path().join("rec.db");

    // Without the private CA the upstream's certificate is refused, with a clear 502.
    let mut strict = start_mf(
        "strict",
        &ca_dir,
        &[
            "record",
            "--proxy",
            "--upstream",
            &up_url,
            "--listen",
            "127.0.0.1:0",
            "-o",
            dir.path().join("strict.db").to_str().unwrap(),
        ],
    );
    let refused = curl(&[&format!("{}/json", strict.url())]);
    assert_eq!(refused.status(), 502);
    assert!(
        String::from_utf8_lossy(&refused.body).contains("TLS handshake with upstream"),
        "{:?}",
        String::from_utf8_lossy(&refused.body)
    );
    // ... and the proxy survives it.
    assert_eq!(curl(&[&format!("{}/json", strict.url())]).status(), 502);
    assert!(strict.interrupt().success());

    // --insecure accepts it, loudly.
    let mut insecure = start_mf(
        "insecure",
        &ca_dir,
        &[
            "record",
            "--proxy",
            "--upstream",
            &up_url,
            "--insecure",
            "--listen",
            "127.0.0.1:0",
            "-o",
            dir.path().join("insecure.db").to_str().unwrap(),
        ],
    );
    assert_eq!(curl(&[&format!("{}/json", insecure.url())]).status(), 200);
    assert!(insecure.interrupt().success());
    assert!(insecure.stderr().contains("WARNING: --insecure"));

    // With --upstream-ca, through a TLS listener of our own (--tls, cert from the mf CA).
    let mut recorder = start_mf(
        "record",
        &ca_dir,
        &[
            "record",
            "--proxy",
            "--upstream",
            &up_url,
            "--upstream-ca",
            test_ca.to_str().unwrap(),
            "--tls",
            "--listen",
            "127.0.0.1:0",
            "-o",
            db.to_str().unwrap(),
            // Byte-for-byte fidelity, cookies included (redaction has its own tests).
            "--keep-secrets",
        ],
    );
    let mf_ca = ca_dir.join("mf-ca.pem");
    let base = format!("https://127.0.0.1:{}", recorder.addr().port());
    let cacert = mf_ca.to_str().unwrap();
    let recorded: Vec<CurlResult> = ["/json", "/counter", "/counter"]
        .iter()
        .map(|p| curl(&["--cacert", cacert, &format!("{base}{p}")]))
        .collect();
    assert!(recorded.iter().all(|r| r.status() == 200), "{recorded:?}");
    // A client that does not trust the mf CA fails the handshake; the listener survives.
    assert_eq!(curl(&[&format!("{base}/json")]).exit, 60);
    assert_eq!(
        curl(&["--cacert", cacert, &format!("{base}/json")]).status(),
        200
    );
    assert!(recorder.interrupt().success());
    drop(upstream);

    let rows = ls_json(&db);
    assert!(
        rows.iter()
            .all(|r| r["url"].as_str().unwrap().starts_with("https://localhost:")),
        "{rows:?}"
    );

    let replay = start_mf(
        "replay",
        &ca_dir,
        &[
            "replay",
            db.to_str().unwrap(),
            "--tls",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let rbase = format!("https://127.0.0.1:{}", replay.addr().port());
    let replayed: Vec<CurlResult> = ["/json", "/counter", "/counter"]
        .iter()
        .map(|p| curl(&["--cacert", cacert, &format!("{rbase}{p}")]))
        .collect();
    for (a, b) in recorded.iter().zip(&replayed) {
        assert_eq!(a.headers, b.headers);
        assert_eq!(a.body, b.body);
    }
}

#[test]
fn forward_proxy_records_many_hosts_and_replays_them_offline() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("mfca");
    let (test_ca, cert, key) = make_test_pki(dir.path());
    let plain = start_python("http_upstream.py", &[]);
    let secure = https_upstream(&cert, &key);
    let plain_url = plain.url();
    let secure_url = format!("https://localhost:{}", secure.addr().port());
    let passthrough_url = format!("https://127.0.0.1:{}", secure.addr().port());
    let db = dir.path().join("fwd.db");
    let mut proxy = start_mf(
        "forward",
        &ca_dir,
        &[
            "record",
            "--proxy",
            "--upstream-ca",
            test_ca.to_str().unwrap(),
            "--passthrough",
            "127.0.0.1",
            "--listen",
            "127.0.0.1:0",
            "-o",
            db.to_str().unwrap(),
        ],
    );
    let mf_ca = ca_dir.join("mf-ca.pem");
    let cacert = mf_ca.to_str().unwrap();
    let via = proxy.url();

    let calls = |via: &str| -> Vec<CurlResult> {
        vec![
            curl(&["-x", via, &format!("{plain_url}/counter")]),
            curl(&["-x", via, &format!("{plain_url}/counter")]),
            curl(&[
                "-x",
                via,
                "--cacert",
                cacert,
                &format!("{secure_url}/counter"),
            ]),
            curl(&["-x", via, "--cacert", cacert, &format!("{secure_url}/json")]),
        ]
    };
    let recorded = calls(&via);
    let bodies: Vec<String> = recorded
        .iter()
        .map(|r| String::from_utf8_lossy(&r.body).into_owned())
        .collect();
    assert_eq!(
        &bodies[..3],
        [r#"{"call": 1}"#, r#"{"call": 2}"#, r#"{"call": 1}"#],
        "each host has its own counter"
    );

    // Python requests through HTTPS_PROXY with the mf CA bundle.
    let py = Command::new("python3")
        .args(["-c", &format!("import requests; r = requests.get('{secure_url}/json'); print(r.status_code, r.json()['users'][0]['name'])")])
        .env("HTTPS_PROXY", &via)
        .env("REQUESTS_CA_BUNDLE", &mf_ca)
        .env_remove("NO_PROXY")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&py.stdout).trim(),
        "200 ada",
        "{}",
        String::from_utf8_lossy(&py.stderr)
    );

    // A client that does not trust the mf CA fails cleanly; the proxy keeps serving.
    let untrusted = curl(&["-x", &via, &format!("{secure_url}/json")]);
    assert_eq!(untrusted.exit, 60, "curl: certificate problem");
    // Passthrough hosts are tunnelled untouched: the client sees the real certificate.
    let tunneled = curl(&[
        "-x",
        &via,
        "--cacert",
        test_ca.to_str().unwrap(),
        &format!("{passthrough_url}/json"),
    ]);
    assert_eq!(tunneled.status(), 200);
    assert!(proxy.interrupt().success());
    drop(plain);
    drop(secure);

    let rows = ls_json(&db);
    let urls: Vec<&str> = rows.iter().map(|r| r["url"].as_str().unwrap()).collect();
    assert!(
        urls.contains(&format!("{plain_url}/counter").as_str()),
        "{urls:?}"
    );
    assert!(
        urls.contains(&format!("{secure_url}/json").as_str()),
        "{urls:?}"
    );
    assert!(
        rows.iter()
            .any(|r| r["method"] == "CONNECT" && r["url"].as_str().unwrap().contains("127.0.0.1")),
        "opaque tunnel recorded: {urls:?}"
    );
    let key_text = std::fs::read_to_string(ca_dir.join("mf-ca-key.pem")).unwrap();
    let db_bytes = std::fs::read(&db).unwrap();
    assert!(
        !db_bytes
            .windows(40)
            .any(|w| key_text.as_bytes().windows(40).next() == Some(w)),
        "CA key never lands in a recording"
    );

    // Offline: the same calls through the replay, answered per host.
    let replay = start_mf(
        "replay",
        &ca_dir,
        &["replay", db.to_str().unwrap(), "--listen", "127.0.0.1:0"],
    );
    let replayed = calls(&replay.url());
    for (i, (a, b)) in recorded.iter().zip(&replayed).enumerate() {
        assert_eq!(a.body, b.body, "call {i}");
        assert_eq!(a.status(), b.status(), "call {i}");
    }
}

#[test]
fn grpc_over_tls_through_the_proxy_and_the_tls_replay() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("mfca");
    let (test_ca, cert, key) = make_test_pki(dir.path());
    let server = start_python(
        "grpc_server.py",
        &["--tls", cert.to_str().unwrap(), key.to_str().unwrap()],
    );
    let up = format!("https://localhost:{}", server.addr().port());
    let db = dir.path().join("grpc-tls.db");
    let mut recorder = start_tls_recorder(&ca_dir, &up, &test_ca, &db);
    let mf_ca = ca_dir.join("mf-ca.pem");
    let run = |addr: std::net::SocketAddr| -> Vec<serde_json::Value> {
        let out = Command::new("python3")
            .arg(tests_dir().join("servers").join("grpc_client.py"))
            .args([&addr.to_string(), "all", "--tls", mf_ca.to_str().unwrap()])
            .env("NO_PROXY", "*")
            .env_remove("https_proxy")
            .env_remove("grpc_proxy")
            .output()
            .unwrap();
        json_lines(out)
    };
    let recorded = run(recorder.addr());
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    drop(server);
    let unary = recorded.iter().find(|l| l["call"] == "unary").unwrap();
    assert_eq!(unary["code"], "OK", "{recorded:?}");
    let rows = ls_json(&db);
    assert!(
        rows.iter()
            .any(|r| r["protocol"] == "grpc" && r["url"].as_str().unwrap().starts_with("https://")),
        "{rows:?}"
    );

    let replay = start_mf(
        "replay",
        &ca_dir,
        &[
            "replay",
            db.to_str().unwrap(),
            "--tls",
            "--latency",
            "none",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let replayed = run(replay.addr());
    for name in [
        "unary",
        "unary_other",
        "not_found",
        "server_stream",
        "client_stream",
        "bidi",
    ] {
        let a = recorded.iter().find(|l| l["call"] == name).unwrap();
        let b = replayed.iter().find(|l| l["call"] == name).unwrap();
        assert_eq!(a["code"], b["code"], "{name}");
        assert_eq!(a["messages"], b["messages"], "{name}");
    }
}

#[test]
fn wss_through_a_tls_upstream_and_the_tls_replay() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("mfca");
    let (test_ca, cert, key) = make_test_pki(dir.path());
    let server = start_python(
        "ws_server.py",
        &["--tls", cert.to_str().unwrap(), key.to_str().unwrap()],
    );
    let up = format!("https://localhost:{}", server.addr().port());
    let db = dir.path().join("wss.db");
    let mut recorder = start_tls_recorder(&ca_dir, &up, &test_ca, &db);
    let mf_ca = ca_dir.join("mf-ca.pem");
    let ws = |addr: std::net::SocketAddr| -> Vec<serde_json::Value> {
        let out = Command::new("python3")
            .arg(tests_dir().join("servers").join("ws_client.py"))
            .args([
                &format!("wss://localhost:{}/chat", addr.port()),
                "normal",
                "--cafile",
                mf_ca.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        json_lines(out)
    };
    let recorded = ws(recorder.addr());
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    drop(server);
    assert_eq!(
        recorded[0],
        serde_json::json!({"text": "welcome"}),
        "{recorded:?}"
    );
    let rows = ls_json(&db);
    assert!(
        rows.iter()
            .any(|r| r["protocol"] == "websocket"
                && r["url"].as_str().unwrap().starts_with("https://")),
        "{rows:?}"
    );

    let replay = start_mf(
        "replay",
        &ca_dir,
        &[
            "replay",
            db.to_str().unwrap(),
            "--tls",
            "--latency",
            "none",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    assert_eq!(ws(replay.addr()), recorded);
}
