//! One replay pipeline for every protocol: the same request gets the same answer over
//! HTTP/1.1 and HTTP/2, from a recording or a fixtures folder, faults included, and every
//! protocol is counted in `/metrics`. Each test is named after the bug it guards against.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::*;

fn h2(args: &[&str]) -> CurlResult {
    let mut all = vec!["--http2-prior-knowledge"];
    all.extend_from_slice(args);
    curl(&all)
}

/// The value of header `name` in curl's dump (case-insensitive), from the last response.
fn header(r: &CurlResult, name: &str) -> Option<String> {
    let block = r
        .headers
        .split("\r\n\r\n")
        .filter(|b| b.starts_with("HTTP/"))
        .last()?;
    block.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_string())
    })
}

/// Records `paths` (each `[curl args..., url path]`) from the Python HTTP upstream.
fn record_http(db: &Path, requests: &[&[&str]]) {
    require("curl");
    let upstream = start_python("http_upstream.py", &[]);
    let mut recorder = start_recorder(&upstream.url(), db, &[]);
    for req in requests {
        let (path, args) = req.split_last().unwrap();
        let mut all: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        all.push(format!("{}{path}", recorder.url()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        assert_eq!(curl(&refs).exit, 0, "recording {req:?}");
    }
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
}

/// The admin address a replay started with `--admin 127.0.0.1:0` printed.
fn admin_of(replay: &Proc) -> String {
    let mut admin = String::new();
    assert!(
        wait_until(Duration::from_secs(10), || {
            match replay.stderr().split("admin API at ").nth(1) {
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
    admin
}

/// Sum of `mf_requests_total` samples whose labels include every one of `labels`.
fn requests_counted(admin: &str, labels: &[(&str, &str)]) -> f64 {
    let metrics = curl(&[&format!("http://{admin}/metrics")]);
    assert_eq!(metrics.status(), 200);
    String::from_utf8_lossy(&metrics.body)
        .lines()
        .filter(|l| l.starts_with("mf_requests_total{"))
        .filter(|l| {
            labels
                .iter()
                .all(|(k, v)| l.contains(&format!("{k}=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn python_client(script: &str, args: &[&str]) -> Vec<serde_json::Value> {
    let out = Command::new("python3")
        .arg(tests_dir().join("servers").join(script))
        .args(args)
        .env("NO_PROXY", "*")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env_remove("all_proxy")
        .env_remove("grpc_proxy")
        .stdin(Stdio::null())
        .output()
        .expect("running a python client");
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("client prints JSON"))
        .collect()
}

/// A fixtures folder as `mf infer` writes it, with one endpoint: `GET /users/{id}`,
/// answering `{"id":1,"name":"ada"}`.
fn write_fixtures(dir: &Path) {
    use mf::store::fixtures::*;
    let mut set = FixtureSet {
        index: Index {
            format: FORMAT,
            exchanges: 1,
            endpoints: vec![IndexEntry {
                name: "get-users-id".into(),
                method: "GET".into(),
                template: "/users/{id}".into(),
                count: 1,
                file: "endpoints/get-users-id.yaml".into(),
            }],
            ..Default::default()
        },
        ..Default::default()
    };
    set.endpoints.push(Endpoint {
        format: FORMAT,
        name: "get-users-id".into(),
        method: "GET".into(),
        template: "/users/{id}".into(),
        params: [("id".to_string(), "int".to_string())].into(),
        examples: vec![Example {
            name: "200".into(),
            request: ExampleRequest {
                path: "/users/1".into(),
                ..Default::default()
            },
            response: ExampleResponse {
                status: 200,
                headers: vec!["Content-Type: application/json".into()],
                body: Some("bodies/get-users-id/200.json".into()),
            },
        }],
        ..Default::default()
    });
    set.bodies.insert(
        "bodies/get-users-id/200.json".into(),
        br#"{"id":1,"name":"ada"}"#.to_vec(),
    );
    set.sequences.format = FORMAT;
    write_dir(dir, &render(&set).unwrap()).unwrap();
}

#[test]
fn fixtures_replay_answers_http2_as_it_answers_http1() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let fx = dir.path().join("fx");
    write_fixtures(&fx);
    let replay = start_replay(&fx, &[]);
    for path in ["/users/1", "/users/7"] {
        let url = format!("{}{path}", replay.url());
        let one = curl(&[&url]);
        let two = h2(&[&url]);
        assert_eq!(one.status(), 200, "{path} over HTTP/1.1: {one:?}");
        assert!(two.headers.starts_with("HTTP/2 200"), "{path}: {two:?}");
        assert_eq!(one.body, two.body, "{path}: same answer over both");
        assert_eq!(header(&one, "content-type"), header(&two, "content-type"));
    }
    let missing = h2(&[&format!("{}/nothing/here", replay.url())]);
    assert_eq!(missing.status(), 404);
    assert_eq!(header(&missing, "x-mf-match").as_deref(), Some("none"));
}

#[test]
fn metrics_count_every_protocol_and_fixture_replays() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();

    // HTTP/1.1 and HTTP/2 against one recording.
    let db = dir.path().join("http.db");
    record_http(&db, &[&["/json"]]);
    let replay = start_replay(&db, &["--admin", "127.0.0.1:0"]);
    let admin = admin_of(&replay);
    assert_eq!(curl(&[&format!("{}/json", replay.url())]).status(), 200);
    for _ in 0..2 {
        assert_eq!(h2(&[&format!("{}/json", replay.url())]).status(), 200);
    }
    assert_eq!(h2(&[&format!("{}/missing", replay.url())]).status(), 404);
    let json = [("route", "/json"), ("status", "200"), ("match", "matched")];
    assert_eq!(
        requests_counted(&admin, &[&json[..], &[("protocol", "http/1.1")]].concat()),
        1.0
    );
    assert_eq!(
        requests_counted(&admin, &[&json[..], &[("protocol", "h2")]].concat()),
        2.0
    );
    assert_eq!(
        requests_counted(
            &admin,
            &[
                ("protocol", "h2"),
                ("status", "404"),
                ("match", "unmatched")
            ]
        ),
        1.0
    );
    drop(replay);

    // A fixtures folder, over both protocols.
    let fx = dir.path().join("fx");
    write_fixtures(&fx);
    let replay = start_replay(&fx, &["--admin", "127.0.0.1:0"]);
    let admin = admin_of(&replay);
    assert_eq!(curl(&[&format!("{}/users/1", replay.url())]).status(), 200);
    assert_eq!(h2(&[&format!("{}/users/2", replay.url())]).status(), 200);
    assert_eq!(
        requests_counted(&admin, &[("protocol", "http/1.1"), ("status", "200")]),
        1.0
    );
    assert_eq!(
        requests_counted(&admin, &[("protocol", "h2"), ("status", "200")]),
        1.0
    );
    drop(replay);

    // gRPC.
    let db = dir.path().join("grpc.db");
    let server = start_python("grpc_server.py", &[]);
    let mut recorder = start_recorder(&server.url(), &db, &[]);
    let recorded = python_client("grpc_client.py", &[&recorder.addr().to_string(), "all"]);
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    drop(server);
    let replay = start_replay(&db, &["--admin", "127.0.0.1:0", "--latency", "none"]);
    let admin = admin_of(&replay);
    let replayed = python_client("grpc_client.py", &[&replay.addr().to_string(), "all"]);
    assert_eq!(replayed.len(), recorded.len());
    assert_eq!(
        requests_counted(&admin, &[("protocol", "grpc"), ("match", "matched")]),
        recorded.len() as f64,
        "one count per gRPC call"
    );
    drop(replay);

    // WebSocket.
    let db = dir.path().join("ws.db");
    let server = start_python("ws_server.py", &[]);
    let mut recorder = start_recorder(&server.url(), &db, &[]);
    python_client(
        "ws_client.py",
        &[&format!("ws://{}/chat", recorder.addr()), "normal"],
    );
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
    drop(server);
    let replay = start_replay(&db, &["--admin", "127.0.0.1:0"]);
    let admin = admin_of(&replay);
    python_client(
        "ws_client.py",
        &[&format!("ws://{}/chat", replay.addr()), "normal"],
    );
    assert_eq!(
        requests_counted(
            &admin,
            &[
                ("protocol", "websocket"),
                ("status", "101"),
                ("route", "/chat")
            ]
        ),
        1.0
    );
}

#[test]
fn status_fault_answers_http2_as_it_answers_http1() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    record_http(&db, &[&["/json"], &["/binary"]]);
    let config = dir.path().join("mf.yaml");
    std::fs::write(
        &config,
        "rules:\n  - {match: {path: /json}, fault: {status: {code: 503}}}\n  - {match: {path: /binary}, fault: reset}\n",
    )
    .unwrap();
    let replay = start_replay(&db, &["--config", config.to_str().unwrap()]);
    let url = format!("{}/json", replay.url());
    let one = curl(&[&url]);
    let two = h2(&[&url]);
    assert_eq!(one.status(), 503, "{one:?}");
    assert!(two.headers.starts_with("HTTP/2 503"), "{two:?}");
    assert!(!one.body.is_empty());
    assert_eq!(one.body, two.body, "the recorded body over both");
    assert_eq!(header(&two, "content-type"), header(&one, "content-type"));
    assert_eq!(header(&one, "x-mf-fault").as_deref(), Some("status"));
    assert_eq!(header(&two, "x-mf-fault").as_deref(), Some("status"));
    // A reset is a TCP RST over HTTP/1.1 (curl 56) and RST_STREAM over HTTP/2 (curl 92).
    let binary = format!("{}/binary", replay.url());
    assert_eq!(curl(&[&binary]).exit, 56);
    assert_eq!(h2(&[&binary]).exit, 92);
}

#[test]
fn head_over_http2_keeps_the_recorded_content_length() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    record_http(&db, &[&["-I", "/json"]]);
    let replay = start_replay(&db, &[]);
    let url = format!("{}/json", replay.url());
    let one = curl(&["-I", &url]);
    let two = h2(&["-I", &url]);
    assert_eq!(one.status(), 200, "{one:?}");
    assert!(two.headers.starts_with("HTTP/2 200"), "{two:?}");
    let recorded = header(&one, "content-length").expect("HTTP/1.1 content-length");
    assert_ne!(recorded, "0");
    assert_eq!(header(&two, "content-length"), Some(recorded));
}

/// Reads one response with a `Content-Length` body from `s`; returns head and body.
fn read_response(s: &mut TcpStream) -> (String, Vec<u8>) {
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..end]).into_owned();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (n, v) = l.split_once(':')?;
                    n.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if raw.len() >= end + 4 + len {
                return (head, raw[end + 4..end + 4 + len].to_vec());
            }
        }
        let n = s.read(&mut buf).expect("reading a response (timed out?)");
        assert!(n > 0, "connection closed after {raw:?}");
        raw.extend_from_slice(&buf[..n]);
    }
}

#[test]
fn h2c_upgrade_offer_then_next_request_on_the_same_connection() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    record_http(&db, &[&["/json"], &["/binary"]]);
    let replay = start_replay(&db, &[]);
    let mut s = TcpStream::connect(replay.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let host = replay.addr();
    write!(
        s,
        "GET /json HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n"
    )
    .unwrap();
    let (head, first) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!first.is_empty());
    write!(s, "GET /json HTTP/1.1\r\nHost: {host}\r\n\r\n").unwrap();
    let (head, second) = read_response(&mut s);
    assert!(head.starts_with("HTTP/1.1 200"), "second answer: {head}");
    assert_eq!(first, second);
    // And curl's own h2c offer, followed by a second URL on the same connection.
    let url = format!("{}/json", replay.url());
    let out = Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "10",
            "--http2",
            "-o",
            "/dev/null",
        ])
        .args([
            "-w",
            "%{http_code} %{num_connects}\\n",
            &url,
            "-o",
            "/dev/null",
            &url,
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        text.lines().collect::<Vec<_>>(),
        ["200 1", "200 0"],
        "{text}"
    );
}

#[test]
fn gateway_errors_replay_as_504_for_a_silent_upstream_and_502_for_a_refused_port() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    // An upstream that accepts and never answers.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let holder = std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in silent.incoming() {
            match conn {
                Ok(c) => held.push(c),
                Err(_) => break,
            }
            if held.len() >= 4 {
                break;
            }
        }
    });
    // A port nobody listens on, held for the whole test.
    let refused = refused_port();
    let refused_addr: std::net::SocketAddr = format!("127.0.0.1:{}", refused.port).parse().unwrap();

    let cases = [
        (silent_addr, 504, "timeout.db"),
        (refused_addr, 502, "refused.db"),
    ];
    for (upstream, status, name) in cases {
        let db = dir.path().join(name);
        let mut recorder = start_recorder(
            &format!("http://{upstream}"),
            &db,
            &["--upstream-timeout", "300ms", "--connect-timeout", "2s"],
        );
        let live = curl(&[&format!("{}/slow", recorder.url())]);
        assert_eq!(live.status(), status, "through the proxy: {live:?}");
        assert!(recorder.interrupt().success(), "{}", recorder.stderr());
        let replay = start_replay(&db, &[]);
        let url = format!("{}/slow", replay.url());
        let again = curl(&[&url]);
        assert_eq!(
            again.status(),
            status,
            "{name} replayed over HTTP/1.1: {again:?}"
        );
        assert_eq!(h2(&[&url]).status(), status, "{name} replayed over HTTP/2");
    }
    // Unblock the holder thread: one more connection makes it return.
    for _ in 0..4 {
        let _ = TcpStream::connect(silent_addr);
    }
    let _ = holder.join();
}

#[test]
fn replay_loads_the_ca_only_when_it_intercepts_a_connect() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    record_http(&db, &[&["/json"]]);
    let ca_dir = dir.path().join("ca");
    let mut cmd = mf();
    cmd.env("MF_CA_DIR", &ca_dir)
        .arg("replay")
        .arg(&db)
        .args(["--listen", "127.0.0.1:0"]);
    let replay = Proc::start("mf replay", cmd, "listening on");
    assert_eq!(curl(&[&format!("{}/json", replay.url())]).status(), 200);
    assert!(
        !ca_dir.exists(),
        "a plain replay wrote a CA: {}",
        replay.stderr()
    );
    // The first CONNECT is intercepted: now the CA is created.
    let tunnelled = curl(&["-k", "-x", &replay.url(), "https://localhost/json"]);
    assert_eq!(tunnelled.exit, 0, "{tunnelled:?} {}", replay.stderr());
    assert!(ca_dir.read_dir().is_ok_and(|mut d| d.next().is_some()));
    assert!(
        replay.stderr().contains("created the mf CA"),
        "{}",
        replay.stderr()
    );
}

/// Seconds curl took for the whole answer.
fn seconds(args: &[&str]) -> f64 {
    let out = Command::new("curl")
        .args([
            "-sS",
            "--noproxy",
            "*",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
        ])
        .args(["-w", "%{http_code} %{time_total}"])
        .args(args)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (code, secs) = text.split_once(' ').unwrap_or(("", ""));
    assert_eq!(code, "200", "{text}");
    secs.parse().unwrap()
}

#[test]
fn bandwidth_paces_http2_as_it_paces_http1() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    record_http(&db, &[&["/json"]]);
    // The recorded /json body is about 80 bytes: at 400 B/s, four 50 ms ticks or more.
    let replay = start_replay(&db, &["--bandwidth", "400"]);
    let url = format!("{}/json", replay.url());
    assert!(seconds(&[&url]) >= 0.1);
    assert!(seconds(&["--http2-prior-knowledge", &url]) >= 0.1);
}

/// The near-miss 404 to a `HEAD` has headers only (RFC 9110 §9.3.2): a body sent anyway was
/// read as the start of the next answer on a keep-alive connection.
#[test]
fn unmatched_head_gets_a_404_without_a_body_and_the_connection_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    record_http(&db, &[&["/json"]]);
    let replay = start_replay(&db, &[]);
    let mut s = TcpStream::connect(replay.addr()).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let host = replay.addr();
    write!(
        s,
        "HEAD /nothing-here HTTP/1.1\r\nHost: {host}\r\n\r\nGET /json HTTP/1.1\r\nHost: {host}\r\n\r\n"
    )
    .unwrap();
    // The HEAD answer: a head announcing a body length, and no body.
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let end = loop {
        if let Some(end) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..end]).to_string();
    assert!(head.starts_with("HTTP/1.1 404"), "{head}");
    assert!(head.to_ascii_lowercase().contains("x-mf-match: none"));
    // What follows at once is the next answer, not a JSON body.
    let mut rest = raw[end..].to_vec();
    while !rest.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0);
        rest.extend_from_slice(&buf[..n]);
    }
    assert!(
        rest.starts_with(b"HTTP/1.1 200"),
        "{}",
        String::from_utf8_lossy(&rest)
    );
    // Over HTTP/2 too: no body bytes.
    let two = h2(&["-I", &format!("{}/nothing-here", replay.url())]);
    assert!(two.headers.starts_with("HTTP/2 404"), "{two:?}");
    assert_eq!(two.exit, 0, "no DATA on a HEAD stream: {two:?}");
    assert!(!String::from_utf8_lossy(&two.body).contains("closest"));
}
