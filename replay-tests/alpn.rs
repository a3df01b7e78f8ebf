//! Which protocol each side speaks: HTTP/2 inside intercepted CONNECT tunnels (curl, grpcio
//! and a bare TLS client offering only `h2`), upstream ALPN chosen independently of the
//! client (nghttpd speaks only h2), HTTP/2 clients in front of an HTTP/1.1-only upstream,
//! error answers to HEAD, and TLS failures logged with their real cause.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

fn start_mf(name: &str, ca_dir: &Path, args: &[&str]) -> Proc {
    let mut cmd = mf();
    cmd.env("MF_CA_DIR", ca_dir).args(args);
    Proc::start(name, cmd, "listening on")
}

/// `mf record --proxy` as a forward proxy trusting `test_ca` for upstreams.
fn forward_proxy(ca_dir: &Path, test_ca: &Path, db: &Path) -> Proc {
    start_mf(
        "forward proxy",
        ca_dir,
        &[
            "record",
            "--proxy",
            "--upstream-ca",
            test_ca.to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
            "-o",
            db.to_str().unwrap(),
        ],
    )
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// nghttpd over TLS (it speaks only h2) serving `docroot`; killed on drop.
struct Nghttpd(std::process::Child, u16);

impl Nghttpd {
    fn start(docroot: &Path, cert: &Path, key: &Path) -> Nghttpd {
        require("nghttpd");
        let port = free_port();
        let child = Command::new("nghttpd")
            .args(["-a", "127.0.0.1", "-d"])
            .arg(docroot)
            .arg(port.to_string())
            .arg(key)
            .arg(cert)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nghttpd");
        assert!(wait_until(Duration::from_secs(10), || {
            std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
        }));
        Nghttpd(child, port)
    }
}

impl Drop for Nghttpd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `mf show DB ID --json` for every exchange of `db`.
fn exchanges(db: &Path) -> Vec<serde_json::Value> {
    ls_json(db)
        .iter()
        .map(|row| {
            let id = row["id"].as_i64().unwrap().to_string();
            let out = mf()
                .args(["show", db.to_str().unwrap(), &id, "--json"])
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
            serde_json::from_slice(&out.stdout).unwrap()
        })
        .collect()
}

/// The status line of the last response curl dumped (after a proxy's CONNECT answer).
fn final_status_line(r: &CurlResult) -> String {
    r.headers
        .split("\r\n\r\n")
        .filter(|b| b.starts_with("HTTP/"))
        .last()
        .and_then(|b| b.lines().next())
        .unwrap_or_default()
        .to_string()
}

fn docroot(dir: &Path) -> PathBuf {
    let root = dir.join("www");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("hello.json"), br#"{"hello":"h2"}"#).unwrap();
    root
}

#[test]
fn curl_http2_through_the_forward_proxy_speaks_h2_to_an_h2_upstream_and_replays_over_h2() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("mfca");
    let (test_ca, cert, key) = make_test_pki(dir.path());
    let server = Nghttpd::start(&docroot(dir.path()), &cert, &key);
    let url = format!("https://localhost:{}/hello.json", server.1);
    let db = dir.path().join("h2.db");
    let mut proxy = forward_proxy(&ca_dir, &test_ca, &db);
    let mf_ca = ca_dir.join("mf-ca.pem");
    let cacert = mf_ca.to_str().unwrap();
    let via = proxy.url();
    let recorded = curl(&["--http2", "-x", &via, "--cacert", cacert, &url]);
    assert_eq!(
        final_status_line(&recorded).trim(),
        "HTTP/2 200",
        "{recorded:?}"
    );
    assert_eq!(recorded.body, br#"{"hello":"h2"}"#);
    // An HTTP/1.1 client is spoken to in HTTP/1.1, and only offers that upstream too.
    let h1 = curl(&["--http1.1", "-x", &via, "--cacert", cacert, &url]);
    assert!(final_status_line(&h1).starts_with("HTTP/1.1 "), "{h1:?}");
    assert!(proxy.interrupt().success(), "{}", proxy.stderr());
    drop(server);

    let all = exchanges(&db);
    let h2 = all
        .iter()
        .find(|e| e["request"]["version"] == "HTTP/2")
        .unwrap_or_else(|| panic!("{all:?}"));
    assert_eq!(h2["protocol"], "h2");
    assert_eq!(h2["response"]["version"], "HTTP/2", "both sides spoke h2");
    assert_eq!(h2["response"]["status"], 200);
    assert!(h2["tags"].get("upstream_version").is_none());
    assert_eq!(h2["url"], url);

    let replay = start_mf(
        "replay",
        &ca_dir,
        &["replay", db.to_str().unwrap(), "--listen", "127.0.0.1:0"],
    );
    let replayed = curl(&["--http2", "-x", &replay.url(), "--cacert", cacert, &url]);
    assert_eq!(
        final_status_line(&replayed).trim(),
        "HTTP/2 200",
        "{replayed:?}"
    );
    assert_eq!(replayed.body, recorded.body);
}

/// Runs grpc_client.py against `target` through the proxy at `proxy`, trusting `ca`.
fn grpc_via_proxy(target: &str, proxy: &str, ca: &Path) -> Vec<serde_json::Value> {
    let out = Command::new("python3")
        .arg(tests_dir().join("servers").join("grpc_client.py"))
        .args([target, "all", "--tls", ca.to_str().unwrap()])
        .env_remove("NO_PROXY")
        .env_remove("no_proxy")
        .env_remove("no_grpc_proxy")
        .env("https_proxy", proxy)
        .env("grpc_proxy", proxy)
        .output()
        .unwrap();
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

#[test]
fn grpc_through_https_proxy_is_recorded_and_replayed_with_the_same_answers() {
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("mfca");
    let (test_ca, cert, key) = make_test_pki(dir.path());
    let server = start_python(
        "grpc_server.py",
        &["--tls", cert.to_str().unwrap(), key.to_str().unwrap()],
    );
    let target = format!("localhost:{}", server.addr().port());
    let db = dir.path().join("grpc.db");
    let mut proxy = forward_proxy(&ca_dir, &test_ca, &db);
    // The proxy makes the CA on its first CONNECT; grpcio must trust it before that.
    let mf_ca = {
        let out = mf()
            .env("MF_CA_DIR", &ca_dir)
            .args(["ca", "init"])
            .output()
            .unwrap();
        assert!(out.status.success());
        ca_dir.join("mf-ca.pem")
    };
    let recorded = grpc_via_proxy(&target, &proxy.url(), &mf_ca);
    assert!(proxy.interrupt().success(), "{}", proxy.stderr());
    drop(server);
    let unary = recorded.iter().find(|l| l["call"] == "unary").unwrap();
    assert_eq!(unary["code"], "OK", "{recorded:?}");
    let rows = ls_json(&db);
    assert!(
        rows.iter().any(|r| r["protocol"] == "grpc"
            && r["url"]
                .as_str()
                .unwrap()
                .starts_with(&format!("https://{target}/"))),
        "{rows:?}"
    );

    let replay = start_mf(
        "replay",
        &ca_dir,
        &[
            "replay",
            db.to_str().unwrap(),
            "--latency",
            "none",
            "--listen",
            "127.0.0.1:0",
        ],
    );
    let replayed = grpc_via_proxy(&target, &replay.url(), &mf_ca);
    for name in [
        "unary",
        "unary_other",
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
fn an_h2c_client_in_front_of_an_http1_upstream_gets_the_upstreams_answer() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let upstream = start_python("http_upstream.py", &[]);
    let db = dir.path().join("h2c.db");
    let mut recorder = start_recorder(&upstream.url(), &db, &[]);
    let direct = curl(&[&format!("{}/json", upstream.url())]);
    let r = curl(&[
        "--http2-prior-knowledge",
        &format!("{}/json", recorder.url()),
    ]);
    assert_eq!(final_status_line(&r).trim(), "HTTP/2 200", "{r:?}");
    assert_eq!(r.body, direct.body);
    // Concurrent streams of one connection (nghttp; curl 7.88 cannot reuse an h2c
    // connection) each get an HTTP/1.1 exchange.
    require("nghttp");
    let streams = Command::new("nghttp")
        .args(["-n", "--stat"])
        .arg(format!("{}/json", recorder.url()))
        .arg(format!("{}/counter", recorder.url()))
        .output()
        .unwrap();
    let stat = String::from_utf8_lossy(&streams.stdout);
    assert!(streams.status.success(), "{stat}");
    assert_eq!(stat.matches("  200  ").count(), 2, "{stat}");
    // An HTTP/1.1 client keeps HTTP/1.1 on both sides.
    assert_eq!(curl(&[&format!("{}/json", recorder.url())]).status(), 200);
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    // `--upstream-http2 always` insists on h2c, which this upstream cannot speak.
    let forced = start_recorder(
        &upstream.url(),
        &dir.path().join("forced.db"),
        &["--upstream-http2", "always"],
    );
    let refused = curl(&["--http2-prior-knowledge", &format!("{}/json", forced.url())]);
    assert_eq!(refused.status(), 502, "{refused:?}");

    let all = exchanges(&db);
    let h2 = all
        .iter()
        .find(|e| e["request"]["version"] == "HTTP/2")
        .unwrap_or_else(|| panic!("{all:?}"));
    assert_eq!(h2["response"]["status"], 200, "{h2}");
    assert_eq!(h2["response"]["version"], "HTTP/1.1", "{h2}");
    assert_eq!(h2["tags"]["upstream_version"], "HTTP/1.1", "{h2}");
    assert_eq!(all.len(), 4, "{all:?}");
    assert!(all
        .iter()
        .all(|e| e["response"]["status"] == 200 && e["error"].is_null()));
    assert!(all
        .iter()
        .any(|e| e["request"]["version"] == "HTTP/1.1" && e["response"]["version"] == "HTTP/1.1"));
}

/// Sends `request` on a plain connection and returns every byte of the answer.
fn raw_exchange(addr: std::net::SocketAddr, request: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    out
}

#[test]
fn a_head_answered_with_an_error_carries_no_body_over_http1_and_h2() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens there: every request is answered with the proxy's 502.
    let refused = refused_port();
    let dead = format!("http://127.0.0.1:{}", refused.port);
    let db = dir.path().join("head.db");
    let recorder = start_recorder(&dead, &db, &[]);
    let head = raw_exchange(recorder.addr(), b"HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n");
    let text = String::from_utf8_lossy(&head);
    assert!(text.starts_with("HTTP/1.1 502 "), "{text}");
    assert!(
        text.ends_with("\r\n\r\n"),
        "no body after the head: {text:?}"
    );
    let get = raw_exchange(recorder.addr(), b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n");
    assert!(String::from_utf8_lossy(&get).contains("\r\n\r\nmf: upstream"));

    let h2_head = curl(&[
        "--http2-prior-knowledge",
        "-I",
        &format!("{}/x", recorder.url()),
    ]);
    assert_eq!((h2_head.exit, h2_head.status()), (0, 502), "{h2_head:?}");
    // (curl -I writes the head where the body would go: no body text may follow it.)
    assert!(
        !String::from_utf8_lossy(&h2_head.body).contains("mf: "),
        "{h2_head:?}"
    );
    let h2_get = curl(&["--http2-prior-knowledge", &format!("{}/x", recorder.url())]);
    assert_eq!(h2_get.status(), 502);
    assert!(String::from_utf8_lossy(&h2_get.body).starts_with("mf: upstream"));
}

/// tunnel_alpn.py through `proxy` to `target`: the protocol chosen, or the error.
fn tunnel_alpn(
    proxy: std::net::SocketAddr,
    target: &str,
    ca: &Path,
    protos: &str,
) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(tests_dir().join("servers").join("tunnel_alpn.py"))
        .args([&proxy.to_string(), target, ca.to_str().unwrap(), protos])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn a_client_offering_only_h2_is_intercepted_and_failed_handshakes_are_logged_with_their_cause() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("mfca");
    let (test_ca, cert, key) = make_test_pki(dir.path());
    let server = Nghttpd::start(&docroot(dir.path()), &cert, &key);
    let target = format!("localhost:{}", server.1);
    let db = dir.path().join("alpn.db");
    assert!(mf()
        .env("MF_CA_DIR", &ca_dir)
        .args(["ca", "init"])
        .output()
        .unwrap()
        .status
        .success());
    let mf_ca = ca_dir.join("mf-ca.pem");
    for proxy in [
        forward_proxy(&ca_dir, &test_ca, &db),
        start_mf(
            "replay",
            &ca_dir,
            &["replay", db.to_str().unwrap(), "--listen", "127.0.0.1:0"],
        ),
    ] {
        // What a gRPC client does: h2 only (it used to get TLS alert 120).
        let only_h2 = tunnel_alpn(proxy.addr(), &target, &mf_ca, "h2");
        assert_eq!(only_h2["alpn"], "h2", "{only_h2}");
        let only_h1 = tunnel_alpn(proxy.addr(), &target, &mf_ca, "http/1.1");
        assert_eq!(only_h1["alpn"], "http/1.1", "{only_h1}");
        // Nothing in common: refused, and logged as that, not as a trust problem.
        let none = tunnel_alpn(proxy.addr(), &target, &mf_ca, "spdy/3.1");
        assert!(none.get("error").is_some(), "{none}");
        assert!(
            wait_until(Duration::from_secs(10), || proxy
                .stderr()
                .contains("no application protocol in common")),
            "{}",
            proxy.stderr()
        );
        // A client that does not trust the mf CA says so, and the log names it.
        let distrust = curl(&["-x", &proxy.url(), &format!("https://{target}/hello.json")]);
        assert_eq!(distrust.exit, 60, "{distrust:?}");
        assert!(
            wait_until(Duration::from_secs(10), || proxy
                .stderr()
                .contains("unknown CA")),
            "{}",
            proxy.stderr()
        );
        assert!(!proxy
            .stderr()
            .lines()
            .any(|l| l.contains("no application protocol") && l.contains("mf ca path")));
    }
}
