//! The recording proxy and the replay share one front door: the same client bytes — a
//! malformed request, an HTTP/2 preface over a TLS listener that chose h2 by ALPN, a CONNECT
//! to intercept — get the same framing and the same error answers from `mf record --proxy`
//! and from `mf replay`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use crate::common::*;

/// A request whose head the decoder refuses (a header line without a colon).
const MALFORMED: &[u8] = b"GET /json HTTP/1.1\r\nHost: x\r\nthis is not a header\r\n\r\n";

/// The client half of an HTTP/2 connection's start: the preface and an empty SETTINGS frame.
const H2_START: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// An `mf` command using the private CA directory `ca_dir`.
fn start_with_ca(name: &str, ca_dir: &Path, args: &[&str]) -> Proc {
    let mut cmd = mf();
    cmd.env("MF_CA_DIR", ca_dir).args(args);
    Proc::start(name, cmd, "listening on")
}

/// A recording of one HTTP/1 exchange, for a replay to serve.
fn small_recording(dir: &Path) -> std::path::PathBuf {
    let db = dir.join("small.db");
    let upstream = start_python("http_upstream.py", &[]);
    let mut recorder = start_recorder(&upstream.url(), &db, &[]);
    assert_eq!(curl(&[&format!("{}/json", recorder.url())]).status(), 200);
    assert!(recorder.interrupt().success());
    db
}

/// A TCP connection with a read timeout, so that a server that does not answer fails the
/// test instead of hanging it.
fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Everything a reader yields until it closes (or fails: a close without TLS close_notify).
fn read_all(r: &mut impl Read) -> String {
    let mut out = Vec::new();
    let _ = r.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// A TLS client over `tcp` that trusts the mf CA in `ca_dir` and offers `alpn`.
fn tls_client(
    ca_dir: &Path,
    alpn: &[&[u8]],
    tcp: TcpStream,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let trust = mf::tls::UpstreamTls {
        extra_ca: Some(ca_dir.join("mf-ca.pem")),
        insecure: false,
    };
    let config = mf::tls::client_config(&trust, alpn).unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let conn = rustls::ClientConnection::new(config, name).unwrap();
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // Completes the handshake (which verifies the certificate) before anything is sent.
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock).unwrap();
    }
    tls
}

/// Sends `CONNECT localhost:443` and returns the answer head, read byte by byte so that
/// nothing of what follows it is consumed.
fn connect_head(tcp: &mut TcpStream) -> String {
    tcp.write_all(b"CONNECT localhost:443 HTTP/1.1\r\nHost: localhost:443\r\n\r\n")
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(tcp.read(&mut byte).unwrap(), 1, "closed after {head:?}");
        head.push(byte[0]);
    }
    String::from_utf8_lossy(&head).into_owned()
}

#[test]
fn a_malformed_request_gets_the_same_400_from_the_proxy_and_the_replay() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = small_recording(dir.path());
    let upstream = start_python("http_upstream.py", &[]);
    let recorder = start_recorder(&upstream.url(), &dir.path().join("again.db"), &[]);
    let replay = start_replay(&db, &[]);

    let answers: Vec<String> = [recorder.addr(), replay.addr()]
        .into_iter()
        .map(|addr| {
            let mut s = connect(addr);
            s.write_all(MALFORMED).unwrap();
            read_all(&mut s)
        })
        .collect();
    assert!(
        answers[0].starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answers:?}"
    );
    assert!(answers[0].contains("Connection: close\r\n"), "{answers:?}");
    assert_eq!(answers[0], answers[1], "one error writer");
}

#[test]
fn a_connect_is_intercepted_alike_by_the_forward_proxy_and_the_replay() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("mfca");
    let db = small_recording(dir.path());
    // The forward proxy creates the CA at start; the replay then loads the same one.
    let mut forward = start_with_ca(
        "forward",
        &ca_dir,
        &[
            "record",
            "--proxy",
            "--listen",
            "127.0.0.1:0",
            "-o",
            dir.path().join("fwd.db").to_str().unwrap(),
        ],
    );
    let replay = start_with_ca(
        "replay",
        &ca_dir,
        &["replay", db.to_str().unwrap(), "--listen", "127.0.0.1:0"],
    );

    let mut answers = Vec::new();
    for addr in [forward.addr(), replay.addr()] {
        let mut tcp = connect(addr);
        let head = connect_head(&mut tcp);
        assert_eq!(head, "HTTP/1.1 200 Connection Established\r\n\r\n");
        // The handshake succeeds only with a certificate that chains to the mf CA.
        let mut tls = tls_client(&ca_dir, &[b"http/1.1"], tcp);
        assert_eq!(tls.conn.alpn_protocol(), Some(&b"http/1.1"[..]));
        // Inside the tunnel the same service, and so the same error writer, answers.
        tls.write_all(MALFORMED).unwrap();
        answers.push(read_all(&mut tls));
    }
    assert!(
        answers[0].starts_with("HTTP/1.1 400 Bad Request\r\n"),
        "{answers:?}"
    );
    assert_eq!(answers[0], answers[1]);

    assert!(forward.interrupt().success(), "{}", forward.stderr());
    assert!(
        ls_json(&dir.path().join("fwd.db")).is_empty(),
        "an intercepted CONNECT and a malformed request are no exchanges"
    );
}

#[test]
fn an_h2_preface_over_tls_gets_the_same_settings_from_the_proxy_and_the_replay() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let ca_dir = dir.path().join("mfca");
    // An upstream that speaks HTTP/2 (so the TLS recorder offers h2): a replay.
    let h2_upstream = start_replay(&small_recording(dir.path()), &[]);
    let h2_db = dir.path().join("h2.db");
    let mut recorder = start_with_ca(
        "record",
        &ca_dir,
        &[
            "record",
            "--proxy",
            "--upstream",
            &h2_upstream.url(),
            "--tls",
            "--listen",
            "127.0.0.1:0",
            "-o",
            h2_db.to_str().unwrap(),
        ],
    );
    // A recording that spoke h2, so that the TLS replay offers it too.
    let h2_copy = dir.path().join("h2-copy.db");
    let mut copier = start_with_ca(
        "record",
        &ca_dir,
        &[
            "record",
            "--proxy",
            "--upstream",
            &h2_upstream.url(),
            "--listen",
            "127.0.0.1:0",
            "-o",
            h2_copy.to_str().unwrap(),
        ],
    );
    let copied = curl(&["--http2-prior-knowledge", &format!("{}/json", copier.url())]);
    assert_eq!(copied.status(), 200);
    assert!(copier.interrupt().success());
    let replay = start_with_ca(
        "replay",
        &ca_dir,
        &[
            "replay",
            h2_copy.to_str().unwrap(),
            "--tls",
            "--listen",
            "127.0.0.1:0",
        ],
    );

    let mut first_frames = Vec::new();
    for addr in [recorder.addr(), replay.addr()] {
        let mut tls = tls_client(&ca_dir, &[b"h2", b"http/1.1"], connect(addr));
        assert_eq!(tls.conn.alpn_protocol(), Some(&b"h2"[..]), "{addr}");
        tls.write_all(H2_START).unwrap();
        let mut header = [0u8; 9];
        tls.read_exact(&mut header).unwrap();
        let len =
            usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
        assert_eq!(header[3], 0x4, "the server speaks first with SETTINGS");
        assert_eq!(&header[5..9], &[0, 0, 0, 0], "on stream 0");
        let mut payload = vec![0u8; len];
        tls.read_exact(&mut payload).unwrap();
        first_frames.push((header, payload));
    }
    assert_eq!(first_frames[0], first_frames[1], "the same HTTP/2 settings");
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());
}

/// Slow clients (a head trickled a byte at a time, or nothing at all) against `addr`: each is
/// closed by the server within its timeout — the trickling ones with a 408 — while a normal
/// client is still served. Returns how many got the 408.
fn slowloris(addr: SocketAddr, url: &str) -> usize {
    const SILENT: usize = 60;
    const TRICKLING: usize = 60;
    let mut silent: Vec<TcpStream> = (0..SILENT).map(|_| connect(addr)).collect();
    let mut trickling: Vec<TcpStream> = (0..TRICKLING).map(|_| connect(addr)).collect();
    for s in &mut trickling {
        s.write_all(b"GET /json HTTP/1.1\r\nHost: x\r\n").unwrap();
        s.set_nonblocking(true).unwrap();
    }
    // A normal client is served while the slow ones hold their connections.
    assert_eq!(curl(&[url]).status(), 200);
    // Trickle one header byte per connection every 100 ms until the server gives up on it.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let mut answered = vec![Vec::new(); TRICKLING];
    let mut closed = [false; TRICKLING];
    while closed.iter().any(|c| !c) {
        assert!(
            std::time::Instant::now() < deadline,
            "slow clients still open after 15 s"
        );
        for (i, s) in trickling.iter_mut().enumerate() {
            if closed[i] {
                continue;
            }
            let _ = s.write_all(b"X");
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                Ok(0) => closed[i] = true,
                Ok(n) => answered[i].extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(_) => closed[i] = true,
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    // The silent ones are closed too (read returns end of stream, within the read timeout).
    for s in &mut silent {
        let mut buf = [0u8; 64];
        assert!(matches!(s.read(&mut buf), Ok(0) | Err(_)));
    }
    answered
        .iter()
        .filter(|a| a.starts_with(b"HTTP/1.1 408"))
        .count()
}

#[test]
fn slow_clients_are_closed_at_their_timeouts_by_the_proxy_and_the_replay() {
    let dir = tempfile::tempdir().unwrap();
    let db = small_recording(dir.path());
    let timeouts = ["--header-timeout", "1s", "--idle-timeout", "2s"];
    let replay = start_replay(&db, &timeouts);
    let got = slowloris(replay.addr(), &format!("{}/json", replay.url()));
    assert_eq!(got, 60, "every trickling client got a 408 from the replay");

    let upstream = start_python("http_upstream.py", &[]);
    let recorder = start_recorder(&upstream.url(), &dir.path().join("slow.db"), &timeouts);
    let got = slowloris(recorder.addr(), &format!("{}/json", recorder.url()));
    assert_eq!(got, 60, "every trickling client got a 408 from the proxy");
}

#[test]
fn out_of_descriptors_is_reported_once_a_second_and_recovers() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    let db = small_recording(dir.path());
    let mut cmd = mf();
    cmd.arg("replay").arg(&db).args(["--listen", "127.0.0.1:0"]);
    // A hard limit of 32 descriptors: mf cannot raise it, and a few dozen connections
    // exhaust it.
    // SAFETY: setrlimit is async-signal-safe and touches no state of the parent.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 32,
                rlim_max: 32,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error())
            }
        });
    }
    let replay = Proc::start("mf replay", cmd, "listening on");
    let started = std::time::Instant::now();
    let held: Vec<TcpStream> = (0..60).map(|_| connect(replay.addr())).collect();
    let failures = || replay.stderr().matches("accept failed").count();
    assert!(
        wait_until(Duration::from_secs(10), || failures() >= 3),
        "accept failures were not reported:\n{}",
        replay.stderr()
    );
    let lines = failures();
    let seconds = started.elapsed().as_secs() + 1;
    assert!(
        lines as u64 <= seconds + 1,
        "{lines} accept-failure lines in about {seconds} s (one a second expected):\n{}",
        replay.stderr()
    );
    assert!(replay.stderr().contains("failures="), "{}", replay.stderr());
    // Descriptors come back: the server accepts again and answers.
    drop(held);
    let url = format!("{}/json", replay.url());
    assert!(
        wait_until(Duration::from_secs(10), || curl(&[&url]).status() == 200),
        "the replay did not recover after descriptors were freed:\n{}",
        replay.stderr()
    );
}
