//! TLS decryption from key logs: real TLS 1.2 and 1.3 connections (AES-GCM and
//! ChaCha20-Poly1305, HTTP/1.1 and h2) from curl and Python to nginx, captured by tcpdump
//! with the clients' `SSLKEYLOGFILE` secrets, imported and checked against what the
//! clients saw, then replayed over `mf replay --tls`.

use std::io::{BufRead, BufReader};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use mf::model::{Exchange, HeaderList, Protocol};

use crate::common::capture::Tcpdump;
use crate::common::*;

/// nginx serving TLS 1.2 and 1.3 with HTTP/1.1 and h2 from a prefix of its own; stopped on
/// drop.
struct Nginx {
    child: Child,
    port: u16,
}

impl Nginx {
    fn start(dir: &Path, cert: &Path, key: &Path) -> Nginx {
        require("nginx");
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let prefix = dir.join("nginx");
        std::fs::create_dir_all(&prefix).unwrap();
        let p = prefix.display();
        let conf = format!(
            "daemon off;\nmaster_process off;\nerror_log {p}/error.log;\npid {p}/nginx.pid;\n\
             events {{ worker_connections 64; }}\n\
             http {{\n access_log off;\n client_body_temp_path {p}/body;\n proxy_temp_path {p}/proxy;\n\
             fastcgi_temp_path {p}/fastcgi;\n uwsgi_temp_path {p}/uwsgi;\n scgi_temp_path {p}/scgi;\n\
             server {{\n  listen 127.0.0.1:{port} ssl http2;\n  ssl_certificate {cert};\n\
             ssl_certificate_key {key};\n  ssl_protocols TLSv1.2 TLSv1.3;\n\
             ssl_ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305;\n\
             ssl_session_tickets off;\n  location / {{\n   default_type text/plain;\n\
             add_header X-Served-By nginx-keylog-test;\n   return 200 \"hello $request_uri over $ssl_protocol\\n\";\n  }}\n }}\n}}\n",
            cert = cert.display(),
            key = key.display(),
        );
        let conf_path = prefix.join("nginx.conf");
        std::fs::write(&conf_path, conf).unwrap();
        let child = Command::new("nginx")
            .arg("-e")
            .arg(prefix.join("error.log"))
            .arg("-p")
            .arg(&prefix)
            .arg("-c")
            .arg(&conf_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting nginx");
        let mut nginx = Nginx { child, port };
        let up = wait_until(Duration::from_secs(20), || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        if !up {
            let log = std::fs::read_to_string(prefix.join("error.log")).unwrap_or_default();
            let _ = nginx.child.kill();
            panic!("nginx did not start: {log}");
        }
        nginx
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What one client saw.
#[derive(Debug)]
struct Seen {
    path: String,
    status: u16,
    /// Response headers (lowercased names), as the client printed them.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    protocol: Protocol,
    tls: &'static str,
}

/// curl with its secrets logged to `keylog` (none when `None`).
fn curl_tls(keylog: Option<&Path>, args: &[&str]) -> CurlResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let (h, b) = (dir.path().join("h"), dir.path().join("b"));
    let mut cmd = Command::new("curl");
    cmd.env_remove("SSLKEYLOGFILE");
    if let Some(k) = keylog {
        cmd.env("SSLKEYLOGFILE", k);
    }
    let out = cmd
        .args(["-sS", "--noproxy", "*", "--max-time", "30", "-D"])
        .arg(&h)
        .arg("-o")
        .arg(&b)
        .args(args)
        .output()
        .expect("running curl");
    assert!(
        out.status.success(),
        "curl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    CurlResult {
        exit: out.status.code().unwrap_or(-1),
        headers: std::fs::read_to_string(&h).unwrap_or_default(),
        body: std::fs::read(&b).unwrap_or_default(),
    }
}

fn header_lines(dump: &str) -> Vec<(String, String)> {
    dump.lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect()
}

fn python_tls(port: u16, path: &str, ca: &Path, keylog: &Path, max: &str) -> Seen {
    let out: Output = Command::new("python3")
        .arg("-u")
        .arg(tests_dir().join("servers").join("tls_keylog_client.py"))
        .args(["localhost", &port.to_string(), path])
        .arg(ca)
        .arg(keylog)
        .arg(max)
        .env_remove("SSLKEYLOGFILE")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "python: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("a JSON line");
    let tls = if max == "1.2" { "1.2" } else { "1.3" };
    assert_eq!(v["tls"], format!("TLSv{tls}"));
    Seen {
        path: path.into(),
        status: v["status"].as_u64().unwrap() as u16,
        headers: v["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| (h[0].as_str().unwrap().into(), h[1].as_str().unwrap().into()))
            .collect(),
        body: v["body"].as_str().unwrap().as_bytes().to_vec(),
        protocol: Protocol::Http11,
        tls,
    }
}

fn import(capture: &Path, db: &Path, keylog: Option<&Path>) -> String {
    let mut cmd = mf();
    cmd.arg("import").arg(capture).arg("-o").arg(db);
    if let Some(k) = keylog {
        cmd.arg("--keylog").arg(k);
    }
    let out = cmd.output().expect("mf import");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "mf import failed: {stderr}");
    stderr
}

fn load(db: &Path) -> Vec<Exchange> {
    mf::store::Reader::open(db)
        .expect("open")
        .load_all()
        .expect("load")
}

/// The pcap at `pcap` rewritten as a pcapng with `keys` in a Decryption Secrets Block
/// before the packets (what `editcap --inject-secrets tls,…` makes).
fn pcapng_with_secrets(pcap: &[u8], keys: &[u8]) -> Vec<u8> {
    fn block(out: &mut Vec<u8>, kind: u32, body: &[u8]) {
        let padded = (body.len() + 3) & !3;
        let total = (12 + padded) as u32;
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&total.to_le_bytes());
        out.extend_from_slice(body);
        out.resize(out.len() + padded - body.len(), 0);
        out.extend_from_slice(&total.to_le_bytes());
    }
    let u32le = |b: &[u8], at: usize| u32::from_le_bytes(b[at..at + 4].try_into().unwrap());
    assert_eq!(
        &pcap[..4],
        &[0xd4, 0xc3, 0xb2, 0xa1],
        "a little-endian microsecond pcap"
    );
    let linktype = u32le(pcap, 20);
    let mut out = Vec::new();
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&u64::MAX.to_le_bytes());
    block(&mut out, 0x0a0d_0d0a, &shb);
    let mut idb = (linktype as u16).to_le_bytes().to_vec();
    idb.extend_from_slice(&[0, 0]);
    idb.extend_from_slice(&262_144u32.to_le_bytes());
    block(&mut out, 1, &idb);
    let mut dsb = 0x544c_534bu32.to_le_bytes().to_vec();
    dsb.extend_from_slice(&(keys.len() as u32).to_le_bytes());
    dsb.extend_from_slice(keys);
    block(&mut out, 0x0a, &dsb);
    let mut at = 24;
    while at + 16 <= pcap.len() {
        let (sec, usec, incl, orig) = (
            u64::from(u32le(pcap, at)),
            u64::from(u32le(pcap, at + 4)),
            u32le(pcap, at + 8),
            u32le(pcap, at + 12),
        );
        let data = &pcap[at + 16..at + 16 + incl as usize];
        let ts = sec * 1_000_000 + usec;
        let mut epb = 0u32.to_le_bytes().to_vec();
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&incl.to_le_bytes());
        epb.extend_from_slice(&orig.to_le_bytes());
        epb.extend_from_slice(data);
        block(&mut out, 6, &epb);
        at += 16 + incl as usize;
    }
    out
}

/// Checks that every client's exchange was imported as it saw it.
fn assert_imported(exchanges: &[Exchange], seen: &[Seen], port: u16) {
    for s in seen {
        let ex = exchanges
            .iter()
            .find(|e| e.request.target == s.path)
            .unwrap_or_else(|| panic!("{} not imported: {exchanges:#?}", s.path));
        assert_eq!(ex.error, None, "{}", s.path);
        assert_eq!(ex.scheme, "https", "{}", s.path);
        assert_eq!(ex.authority, format!("localhost:{port}"), "{}", s.path);
        assert_eq!(ex.protocol, Some(s.protocol), "{}", s.path);
        assert_eq!(
            ex.tags.get("tls").map(String::as_str),
            Some(s.tls),
            "{}",
            s.path
        );
        assert_eq!(ex.tags.get("sni").map(String::as_str), Some("localhost"));
        let resp = ex.response.as_ref().expect("a response");
        assert_eq!(resp.status, s.status, "{}", s.path);
        assert_eq!(&resp.body.data[..], &s.body[..], "{}", s.path);
        for (name, value) in &s.headers {
            assert_eq!(
                resp.headers.header_str(name).as_deref(),
                Some(value.as_str()),
                "{}: header {name}",
                s.path
            );
        }
    }
}

#[test]
fn tls_12_and_13_captures_decrypt_with_key_logs_and_replay_over_tls() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_test_pki(dir.path());
    let nginx = Nginx::start(dir.path(), &cert, &key);
    let port = nginx.port;
    let keys = dir.path().join("keys.log");
    let pcap = dir.path().join("tls.pcap");
    let dump = Tcpdump::start("lo", &format!("tcp port {port}"), &pcap);

    let cacert = ca.to_str().unwrap();
    let url = |p: &str| format!("https://localhost:{port}{p}");
    let runs: [(&str, &[&str], Protocol, &str); 4] = [
        (
            "/t13-gcm-h1",
            &["--tlsv1.3", "--http1.1"],
            Protocol::Http11,
            "1.3",
        ),
        (
            "/t13-chacha-h2",
            &[
                "--tlsv1.3",
                "--tls13-ciphers",
                "TLS_CHACHA20_POLY1305_SHA256",
                "--http2",
            ],
            Protocol::H2,
            "1.3",
        ),
        (
            "/t12-gcm-h2",
            &[
                "--tlsv1.2",
                "--tls-max",
                "1.2",
                "--ciphers",
                "ECDHE-ECDSA-AES128-GCM-SHA256",
                "--http2",
            ],
            Protocol::H2,
            "1.2",
        ),
        (
            "/t12-chacha-h1",
            &[
                "--tlsv1.2",
                "--tls-max",
                "1.2",
                "--ciphers",
                "ECDHE-ECDSA-CHACHA20-POLY1305",
                "--http1.1",
            ],
            Protocol::Http11,
            "1.2",
        ),
    ];
    let mut seen = Vec::new();
    for (path, flags, protocol, tls) in runs {
        let mut args: Vec<String> = flags.iter().map(|s| s.to_string()).collect();
        args.extend(["--cacert".into(), cacert.into(), url(path)]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = curl_tls(Some(&keys), &args);
        assert_eq!(r.status(), 200, "{path}");
        let body = String::from_utf8_lossy(&r.body).into_owned();
        assert!(body.contains(&format!("over TLSv{tls}")), "{path}: {body}");
        seen.push(Seen {
            path: path.into(),
            status: r.status(),
            headers: header_lines(&r.headers),
            body: r.body,
            protocol,
            tls,
        });
    }
    seen.push(python_tls(port, "/py13", &ca, &keys, "1.3"));
    seen.push(python_tls(port, "/py12", &ca, &keys, "1.2"));
    // A connection whose secrets nobody logged, to another name.
    let other = format!("other.test:{port}:127.0.0.1");
    let r = curl_tls(
        None,
        &[
            "-k",
            "--resolve",
            &other,
            &format!("https://other.test:{port}/nokeys"),
        ],
    );
    assert_eq!(r.status(), 200);
    let (pcap, _) = dump.stop_after(Duration::from_secs(1));
    drop(nginx);

    // Without keys: every connection listed as TLS by its SNI, nothing decoded.
    let db = dir.path().join("nokeys.db");
    let stderr = import(&pcap, &db, None);
    assert!(
        stderr.contains(
            "TLS: 7 connections, 0 decrypted, 7 without keys (SNI: localhost ×6, other.test)"
        ),
        "{stderr}"
    );
    assert!(load(&db).is_empty());

    // A key log with garbage lines and other sessions' keys around the real ones.
    let mut log = b"# made by the test\nthis is not a key line\nCLIENT_RANDOM 00ff zz\n".to_vec();
    for i in 0..2u8 {
        log.extend(format!("CLIENT_RANDOM {} {}\n", hex(&[i; 32]), hex(&[7; 48])).as_bytes());
    }
    log.extend(std::fs::read(&keys).unwrap());
    log.extend(b"\x00\xff garbage\n");
    let noisy = dir.path().join("noisy.log");
    std::fs::write(&noisy, &log).unwrap();
    let db = dir.path().join("tls.db");
    let stderr = import(&pcap, &db, Some(&noisy));
    assert!(
        stderr.contains("TLS: 7 connections, 6 decrypted, 1 without keys (SNI: other.test)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("8 sessions, 6 matched, 2 other sessions' keys, 3 garbage lines"),
        "{stderr}"
    );
    let exchanges = load(&db);
    assert_eq!(exchanges.len(), seen.len(), "{exchanges:#?}");
    assert_imported(&exchanges, &seen, port);
    assert!(
        !std::fs::read(&db).unwrap().windows(16).any(|w| log
            .windows(16)
            .any(|k| k == w && w.iter().all(u8::is_ascii_hexdigit))),
        "no key log text in the recording"
    );

    // The same secrets embedded in the capture (a pcapng Decryption Secrets Block).
    let ng = dir.path().join("tls.pcapng");
    std::fs::write(
        &ng,
        pcapng_with_secrets(
            &std::fs::read(&pcap).unwrap(),
            &std::fs::read(&keys).unwrap(),
        ),
    )
    .unwrap();
    let db_ng = dir.path().join("dsb.db");
    let stderr = import(&ng, &db_ng, None);
    assert!(stderr.contains("7 connections, 6 decrypted"), "{stderr}");
    assert_imported(&load(&db_ng), &seen, port);

    // Replayed over TLS (certificates from the mf CA), to curl over HTTP/1.1 and h2.
    let ca_dir = dir.path().join("mfca");
    let mut cmd = mf();
    cmd.env("MF_CA_DIR", &ca_dir)
        .arg("replay")
        .arg(&db)
        .args(["--tls", "--listen", "127.0.0.1:0"]);
    let replay = Proc::start("mf replay", cmd, "listening on");
    let mf_ca = ca_dir.join("mf-ca.pem");
    for s in &seen {
        let proto = if s.protocol == Protocol::H2 {
            "--http2"
        } else {
            "--http1.1"
        };
        let r = curl(&[
            "--cacert",
            mf_ca.to_str().unwrap(),
            proto,
            &format!("https://127.0.0.1:{}{}", replay.addr().port(), s.path),
        ]);
        assert_eq!(r.status(), s.status, "replayed {}", s.path);
        assert_eq!(r.body, s.body, "replayed {}", s.path);
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn live_sniffing_follows_a_growing_key_log() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = make_test_pki(dir.path());
    let nginx = Nginx::start(dir.path(), &cert, &key);
    let port = nginx.port;
    // The key log does not exist yet: the clients create it while mf captures.
    let keys = dir.path().join("live-keys.log");
    let db = dir.path().join("live.db");
    let mut cmd = mf();
    cmd.args([
        "record",
        "--interface",
        "lo",
        "--port",
        &port.to_string(),
        "--keylog",
    ])
    .arg(&keys)
    .arg("-o")
    .arg(&db)
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("mf record");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match rx.recv_timeout(Duration::from_millis(100)) {
            Ok(l) if l.contains("capturing on lo") => break,
            Ok(_) => {}
            Err(_) if Instant::now() > deadline => panic!("mf record --interface did not start"),
            Err(_) => {}
        }
    }
    let cacert = ca.to_str().unwrap();
    let a = curl_tls(
        Some(&keys),
        &[
            "--tlsv1.3",
            "--http2",
            "--cacert",
            cacert,
            &format!("https://localhost:{port}/live13"),
        ],
    );
    let b = curl_tls(
        Some(&keys),
        &[
            "--tls-max",
            "1.2",
            "--http1.1",
            "--cacert",
            cacert,
            &format!("https://localhost:{port}/live12"),
        ],
    );
    let recorded = wait_until(Duration::from_secs(20), || ls_rows(&db) == 2);
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    let mut rest = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        rest.push(line);
    }
    let text = rest.join("\n");
    assert!(status.success(), "{text}");
    assert!(
        recorded,
        "the sniffer never recorded the two exchanges: {text}"
    );
    assert!(
        text.contains("TLS: 2 connections, 2 decrypted, 0 without keys"),
        "{text}"
    );
    drop(nginx);
    let mut ex = load(&db);
    ex.sort_by(|x, y| x.request.target.cmp(&y.request.target));
    let got: Vec<(&str, &str, Vec<u8>)> = ex
        .iter()
        .map(|e| {
            (
                e.scheme.as_str(),
                e.request.target.as_str(),
                e.response
                    .as_ref()
                    .map(|r| r.body.data.to_vec())
                    .unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [("https", "/live12", b.body), ("https", "/live13", a.body)]
    );
}
