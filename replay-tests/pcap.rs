//! Passive capture: `mf import` of captures made at test time by tcpdump around real clients
//! and servers on loopback, hand-made nasty captures, and `mf record --interface lo`.

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mf::capture::packet::build_frame;
use mf::capture::pcap::PcapWriter;
use mf::model::{Direction, Exchange, MessageKind};

use crate::common::*;

/// tcpdump writing a capture file; stopped with SIGINT so that the file is complete.
struct Tcpdump {
    child: Child,
    path: PathBuf,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Tcpdump {
    fn start(iface: &str, filter: &str, path: &Path) -> Tcpdump {
        require("tcpdump");
        let mut child = Command::new("tcpdump")
            .args([
                "-i",
                iface,
                "-s",
                "0",
                "-U",
                "--immediate-mode",
                "-B",
                "131072",
                "-Z",
                "root",
                "-w",
            ])
            .arg(path)
            .arg(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tcpdump");
        // tcpdump says "listening on IF" once the capture is active.
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
        let log2 = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                log2.lock().unwrap().push_str(&line);
                log2.lock().unwrap().push('\n');
                let _ = tx.send(line);
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match rx.recv_timeout(Duration::from_millis(100)) {
                Ok(line) if line.contains("listening on") => break,
                _ if Instant::now() > deadline => {
                    panic!("tcpdump did not start: {}", log.lock().unwrap())
                }
                _ => {}
            }
        }
        Tcpdump {
            child,
            path: path.to_path_buf(),
            log,
        }
    }

    fn stop(mut self) -> PathBuf {
        // Loopback delivery is synchronous and `-U --immediate-mode` writes each packet as it
        // arrives: stop once the file has stopped growing, so the last packets are in it.
        let size = || std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let mut last = (size(), Instant::now());
        wait_until(Duration::from_secs(5), || {
            let now = size();
            if now != last.0 {
                last = (now, Instant::now());
            }
            last.1.elapsed() >= Duration::from_millis(150)
        });
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let _ = self.child.wait();
        // tcpdump prints its statistics last; the reader thread may still be copying them.
        wait_until(Duration::from_secs(5), || {
            self.log.lock().unwrap().contains("dropped by kernel")
        });
        let log = self.log.lock().unwrap().clone();
        if !log
            .lines()
            .any(|l| l.trim() == "0 packets dropped by kernel")
        {
            // Not fatal by itself: the assertions on the import say whether it mattered.
            eprintln!("tcpdump may have dropped packets:\n{log}");
        }
        self.path.clone()
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn import(files: &[&Path], db: &Path, extra: &[&str]) -> std::process::Output {
    let mut cmd = mf();
    cmd.arg("import").args(files).arg("-o").arg(db).args(extra);
    let out = cmd.output().expect("mf import");
    assert!(
        out.status.success(),
        "mf import failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty(), "nothing on stdout when piped");
    out
}

fn load(db: &Path) -> Vec<Exchange> {
    let mut all = mf::store::Reader::open(db)
        .expect("open")
        .load_all()
        .expect("load");
    all.sort_by_key(|e| (e.started_at_ns, e.connection_id, e.seq));
    all
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn http1_keepalive_chunked_and_20mib_body_rebuilt_then_replayed() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let up = start_python("http_upstream.py", &[]);
    let port = up.addr().port();
    let big: Vec<u8> = (0..20 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let big_file = dir.path().join("big.bin");
    std::fs::write(&big_file, &big).unwrap();
    let pcap = dir.path().join("h1.pcap");
    let dump = Tcpdump::start("lo", &format!("tcp port {port}"), &pcap);
    let base = up.url();
    // One connection, three requests (keep-alive), then a 20 MiB echo.
    let ka = curl(&[
        &format!("{base}/json"),
        &format!("{base}/chunked"),
        &format!("{base}/counter"),
    ]);
    assert_eq!(ka.exit, 0);
    let echo = curl(&[
        "--data-binary",
        &format!("@{}", big_file.display()),
        "-H",
        "Content-Type: application/octet-stream",
        &format!("{base}/echo"),
    ]);
    assert_eq!(echo.body.len(), big.len());
    let pcap = dump.stop();
    let db = dir.path().join("h1.db");
    let out = import(&[&pcap], &db, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("mf: 4 exchanges (0 incomplete)"),
        "{stderr}"
    );

    let ex = load(&db);
    assert_eq!(ex.len(), 4);
    let got: Vec<(&str, &str, u16)> = ex
        .iter()
        .map(|e| {
            (
                e.request.method.as_str(),
                e.request.target.as_str(),
                e.response.as_ref().map_or(0, |r| r.status),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("GET", "/json", 200),
            ("GET", "/chunked", 200),
            ("GET", "/counter", 200),
            ("POST", "/echo", 200)
        ]
    );
    assert_eq!(
        ex[0].connection_id, ex[2].connection_id,
        "keep-alive: one connection"
    );
    assert_eq!((ex[0].seq, ex[1].seq, ex[2].seq), (0, 1, 2));
    assert_ne!(ex[0].connection_id, ex[3].connection_id);
    let chunked = ex[1].response.as_ref().unwrap();
    assert!(
        chunked.body.data.starts_with(b"first chunk\n") && chunked.body.data.ends_with(b"last\n")
    );
    assert_eq!(chunked.trailers[0].name, "X-Checksum");
    let echo_ex = &ex[3];
    assert_eq!(echo_ex.request.body.data.len(), big.len());
    assert!(
        echo_ex.request.body.data == big[..],
        "20 MiB request body byte-exact"
    );
    assert!(
        echo_ex.response.as_ref().unwrap().body.data == big[..],
        "20 MiB response body byte-exact"
    );
    // Timestamps come from the packets: after the test started, ordered within the exchange.
    assert!(ex
        .iter()
        .all(|e| e.started_at_ns > 1_600_000_000_000_000_000));
    let t = echo_ex.timings;
    assert!(t.request_end_ns.unwrap() <= t.response_first_byte_ns.unwrap());
    assert!(t.response_first_byte_ns.unwrap() <= t.response_end_ns.unwrap());
    assert_eq!(ls_json(&db).len(), 4);

    // The imported recording replays like a proxied one.
    drop(up);
    let replay = start_replay(&db, &[]);
    let r = curl(&[&format!("{}/json", replay.url())]);
    assert_eq!(r.status(), 200);
    assert_eq!(r.body, ex[0].response.as_ref().unwrap().body.data.to_vec());
    let r = curl(&[&format!("{}/chunked", replay.url())]);
    assert_eq!(r.body, chunked.body.data.to_vec());
}

#[test]
fn h2c_prior_knowledge_from_nghttpd() {
    require("curl");
    require("nghttpd");
    let dir = tempfile::tempdir().unwrap();
    let docroot = dir.path().join("www");
    std::fs::create_dir(&docroot).unwrap();
    let page: Vec<u8> = (0..100_000u32).map(|i| b'a' + (i % 26) as u8).collect();
    std::fs::write(docroot.join("page.txt"), &page).unwrap();
    std::fs::write(docroot.join("small.json"), br#"{"ok":true}"#).unwrap();
    let port = free_port();
    let mut server = Command::new("nghttpd")
        .args(["--no-tls", "-d"])
        .arg(&docroot)
        .arg(port.to_string())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nghttpd");
    assert!(wait_until(Duration::from_secs(10), || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    }));
    let pcap = dir.path().join("h2.pcap");
    let dump = Tcpdump::start("lo", &format!("tcp port {port}"), &pcap);
    let base = format!("http://127.0.0.1:{port}");
    let r = curl(&["--http2-prior-knowledge", &format!("{base}/page.txt")]);
    assert_eq!((r.exit, r.body.len()), (0, page.len()));
    // Two streams on one connection (curl 7.88 and nghttpd disagree on reuse; nghttp does it).
    require("nghttp");
    let out = Command::new("nghttp")
        .args([
            "-n",
            &format!("{base}/small.json"),
            &format!("{base}/missing"),
        ])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pcap = dump.stop();
    let _ = server.kill();
    let _ = server.wait();
    let db = dir.path().join("h2.db");
    import(&[&pcap], &db, &[]);
    let ex = load(&db);
    let got: Vec<(&str, &str, u16)> = ex
        .iter()
        .map(|e| {
            (
                e.request.method.as_str(),
                e.request.target.as_str(),
                e.response.as_ref().map_or(0, |r| r.status),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("GET", "/page.txt", 200),
            ("GET", "/small.json", 200),
            ("GET", "/missing", 404)
        ]
    );
    assert!(ex
        .iter()
        .all(|e| e.protocol.map(|p| p.as_str()) == Some("h2") && e.error.is_none()));
    assert_eq!(ex[0].authority, format!("127.0.0.1:{port}"));
    assert!(ex[0].response.as_ref().unwrap().body.data == page[..]);
    assert_eq!(
        &ex[1].response.as_ref().unwrap().body.data[..],
        br#"{"ok":true}"#
    );
    assert_eq!(ex[1].connection_id, ex[2].connection_id);
    assert_ne!(ex[0].connection_id, ex[1].connection_id);
}

#[test]
fn websocket_session_with_fragments_and_close() {
    let dir = tempfile::tempdir().unwrap();
    let (mut py, lines, port) = paired_script("pcap_ws.py");
    let pcap = dir.path().join("ws.pcap");
    let dump = Tcpdump::start("lo", &format!("tcp port {port}"), &pcap);
    py.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = py.wait();
    assert_eq!(rest.last().map(String::as_str), Some("DONE"), "{rest:?}");
    let pcap = dump.stop();
    let db = dir.path().join("ws.db");
    import(&[&pcap], &db, &[]);
    let ex = load(&db);
    assert_eq!(ex.len(), 1, "{ex:?}");
    let ws = &ex[0];
    assert_eq!(ws.protocol.map(|p| p.as_str()), Some("websocket"));
    assert_eq!(
        (
            ws.request.target.as_str(),
            ws.response.as_ref().unwrap().status
        ),
        ("/chat?room=1", 101)
    );
    let data: Vec<(Direction, u8, bool, &[u8])> = ws
        .messages
        .iter()
        .filter_map(|m| match m.kind {
            MessageKind::WebSocket { opcode, fin, .. } if opcode != 8 => {
                Some((m.direction, opcode, fin, &m.data[..]))
            }
            _ => None,
        })
        .collect();
    let c = Direction::ClientToServer;
    let s = Direction::ServerToClient;
    assert_eq!(
        data,
        vec![
            (c, 1, true, &b"hello"[..]),
            (s, 1, true, &b"hello"[..]),
            (c, 2, true, &b"\x00\x01binary\xff"[..]),
            (s, 2, true, &b"\x00\x01binary\xff"[..]),
            (c, 1, false, &b"frag-"[..]),
            // websockets ends a fragmented message with an empty final continuation frame.
            (c, 0, false, &b"mented"[..]),
            (c, 0, true, &b""[..]),
            (s, 1, true, &b"frag-mented"[..]),
        ]
    );
    let closes = ws
        .messages
        .iter()
        .filter(|m| matches!(m.kind, MessageKind::WebSocket { opcode: 8, .. }))
        .count();
    assert_eq!(closes, 2, "close both ways");
    assert!(ws
        .messages
        .windows(2)
        .all(|w| w[0].offset_ns <= w[1].offset_ns));
    // The imported session replays to the same client, the server gone.
    let replay = start_replay(&db, &["--latency", "none"]);
    let out = Command::new("python3")
        .arg(tests_dir().join("servers").join("pcap_ws.py"))
        .args(["--client", &replay.addr().to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let replayed: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(replayed, rest);
}

#[test]
fn live_sniffing_on_loopback() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let up = start_python("http_upstream.py", &[]);
    let port = up.addr().port();
    let db = dir.path().join("live.db");
    let mut cmd = mf();
    cmd.args([
        "record",
        "--interface",
        "lo",
        "--port",
        &port.to_string(),
        "-o",
    ])
    .arg(&db);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
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
    let base = up.url();
    assert_eq!(
        curl(&[&format!("{base}/json"), &format!("{base}/empty")]).exit,
        0
    );
    assert_eq!(curl(&["-d", "x=1", &format!("{base}/echo")]).exit, 0);
    // Stop once the sniffer has seen all three exchanges through to the recording.
    assert!(
        wait_until(Duration::from_secs(20), || ls_rows(&db) == 3),
        "the sniffer never recorded the three exchanges"
    );
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().unwrap();
    // Everything up to the end of stderr: the summary is the last thing mf prints.
    let mut rest = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        rest.push(line);
    }
    let text = rest.join("\n");
    assert!(status.success(), "{text}");
    assert!(text.contains("3 exchanges"), "{text}");
    assert!(text.contains("libpcap dropped 0 packets"), "{text}");
    let ex = load(&db);
    let got: Vec<(&str, &str, u16)> = ex
        .iter()
        .map(|e| {
            (
                e.request.method.as_str(),
                e.request.target.as_str(),
                e.response.as_ref().map_or(0, |r| r.status),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("GET", "/json", 200),
            ("GET", "/empty", 204),
            ("POST", "/echo", 200)
        ]
    );
    assert_eq!(&ex[2].response.as_ref().unwrap().body.data[..], b"x=1");
}

#[test]
fn sll2_capture_from_tcpdump_any() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let up = start_python("http_upstream.py", &[]);
    let port = up.addr().port();
    let pcap = dir.path().join("any.pcap");
    let dump = Tcpdump::start("any", &format!("tcp port {port}"), &pcap);
    assert_eq!(curl(&[&format!("{}/counter", up.url())]).exit, 0);
    let pcap = dump.stop();
    // tcpdump -i any writes LINKTYPE_LINUX_SLL2 (276) since libpcap 1.10.
    let bytes = std::fs::read(&pcap).unwrap();
    let linktype = u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
    assert!(linktype == 276 || linktype == 113, "link type {linktype}");
    let db = dir.path().join("any.db");
    let out = import(&[&pcap], &db, &[]);
    let ex = load(&db);
    assert_eq!(ex.len(), 1, "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        (
            ex[0].request.target.as_str(),
            ex[0].response.as_ref().unwrap().status
        ),
        ("/counter", 200)
    );
}

// ---- hand-made captures ----

const CLIENT: &str = "10.1.1.1:40000";
const SERVER: &str = "10.1.1.2:8080";

/// Segments of one HTTP/1.1 connection: (from_client, seq offset, payload), plus handshake.
fn conversation() -> Vec<(bool, u32, Vec<u8>)> {
    let req1 = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let resp1 = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789".to_vec();
    let req2 = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".to_vec();
    let resp2 = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok".to_vec();
    let mut segs = Vec::new();
    let (mut c, mut s) = (0u32, 0u32);
    for (from_client, data) in [(true, req1), (false, resp1), (true, req2), (false, resp2)] {
        // Each message in two segments so that reordering has something to do.
        let mid = data.len() / 2;
        for part in [&data[..mid], &data[mid..]] {
            let off = if from_client { &mut c } else { &mut s };
            segs.push((from_client, *off, part.to_vec()));
            *off += part.len() as u32;
        }
    }
    segs
}

fn write_pcap(path: &Path, segs: &[(bool, u32, Vec<u8>)]) {
    let (c, s): (SocketAddr, SocketAddr) = (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
    let (cisn, sisn) = (1000u32, 900_000u32);
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap(), 1).unwrap();
    let mut t = 1_700_000_000_000_000_000i64;
    let mut put = |frame: Vec<u8>| {
        t += 1_000_000;
        w.packet(t, &frame).unwrap();
    };
    put(build_frame(c, s, cisn, 0, true, false, false, b""));
    put(build_frame(s, c, sisn, cisn + 1, true, false, false, b""));
    for (from_client, off, data) in segs {
        if *from_client {
            put(build_frame(
                c,
                s,
                cisn + 1 + off,
                sisn + 1,
                false,
                false,
                false,
                data,
            ));
        } else {
            put(build_frame(
                s,
                c,
                sisn + 1 + off,
                cisn + 1,
                false,
                false,
                false,
                data,
            ));
        }
    }
}

fn summary(ex: &[Exchange]) -> Vec<(String, String, u16, Vec<u8>, bool)> {
    ex.iter()
        .map(|e| {
            let r = e.response.as_ref();
            (
                e.request.method.clone(),
                e.request.target.clone(),
                r.map_or(0, |r| r.status),
                r.map_or(Vec::new(), |r| r.body.data.to_vec()),
                e.error.is_some(),
            )
        })
        .collect()
}

#[test]
fn reordered_and_duplicated_segments_rebuild_the_same_exchanges() {
    let dir = tempfile::tempdir().unwrap();
    let segs = conversation();
    let clean = dir.path().join("clean.pcap");
    write_pcap(&clean, &segs);
    // Swap each message's halves and retransmit some segments (one overlapping).
    let mut nasty = Vec::new();
    for pair in segs.chunks(2) {
        nasty.push(pair[1].clone());
        nasty.push(pair[0].clone());
        nasty.push(pair[1].clone());
    }
    let (fc, off, data) = segs[0].clone();
    nasty.push((fc, off + 2, data[2..].to_vec()));
    let messy = dir.path().join("messy.pcap");
    write_pcap(&messy, &nasty);
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    import(&[&clean], &a, &[]);
    import(&[&messy], &b, &[]);
    let want = vec![
        (
            "GET".to_string(),
            "/a".to_string(),
            200,
            b"0123456789".to_vec(),
            false,
        ),
        (
            "POST".to_string(),
            "/b".to_string(),
            201,
            b"ok".to_vec(),
            false,
        ),
    ];
    assert_eq!(summary(&load(&a)), want);
    assert_eq!(summary(&load(&b)), want);
}

#[test]
fn missing_segment_keeps_the_exchange_flagged_and_resynchronises() {
    let dir = tempfile::tempdir().unwrap();
    let mut segs = conversation();
    // Drop the second half of the first response: its body is lost.
    segs.remove(3);
    let path = dir.path().join("hole.pcap");
    write_pcap(&path, &segs);
    let db = dir.path().join("hole.db");
    let out = import(&[&path], &db, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 holes"), "{stderr}");
    let ex = load(&db);
    assert_eq!(ex.len(), 2, "{ex:?}");
    assert_eq!(ex[0].request.target, "/a");
    assert!(
        ex[0]
            .error
            .as_ref()
            .is_some_and(|e| e.message.contains("capture hole")
                && e.kind == mf::model::ErrorKind::CaptureHole),
        "{:?}",
        ex[0].error
    );
    assert_eq!(
        (
            ex[1].request.target.as_str(),
            ex[1].response.as_ref().map(|r| r.status)
        ),
        ("/b", Some(201))
    );
    assert!(ex[1].error.is_none());
}

#[test]
fn truncated_file_imports_what_precedes_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.pcap");
    write_pcap(&path, &conversation());
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 30]).unwrap();
    let db = dir.path().join("cut.db");
    let out = import(&[&cut], &db, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is truncated: imported everything before the cut"),
        "{stderr}"
    );
    let ex = load(&db);
    assert_eq!(ex.len(), 2);
    assert!(ex[0].error.is_none());
    assert!(ex[1].error.is_some(), "the cut response is flagged");
}

#[test]
fn random_bytes_are_a_clear_error_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("random.pcap");
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    std::fs::write(&path, junk).unwrap();
    let db = dir.path().join("r.db");
    let out = mf()
        .arg("import")
        .arg(&path)
        .arg("-o")
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a pcap or pcapng capture"), "{stderr}");
    assert!(
        !db.exists(),
        "no recording created for a file that is not a capture"
    );
}

/// A pcapng block: type, length, body (padded), length.
fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    while !body.len().is_multiple_of(4) {
        body.push(0);
    }
    let len = (body.len() + 12) as u32;
    let mut out = kind.to_le_bytes().to_vec();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&len.to_le_bytes());
    out
}

#[test]
fn pcapng_with_two_interfaces_of_different_link_types() {
    let dir = tempfile::tempdir().unwrap();
    let (c, s): (SocketAddr, SocketAddr) = (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
    let mut file = Vec::new();
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&u64::MAX.to_le_bytes());
    file.extend(block(0x0a0d_0d0a, &shb));
    // Interface 0: Ethernet, µs. Interface 1: raw IPv4, ns (if_tsresol = 9), with a comment.
    let mut idb0 = 1u16.to_le_bytes().to_vec();
    idb0.extend_from_slice(&[0, 0, 0, 0, 4, 0]);
    file.extend(block(1, &idb0));
    let mut idb1 = 228u16.to_le_bytes().to_vec();
    idb1.extend_from_slice(&[0, 0, 0, 0, 4, 0]);
    idb1.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0]);
    idb1.extend_from_slice(&[1, 0, 4, 0, b'l', b'o', b'o', b'p']);
    idb1.extend_from_slice(&[0, 0, 0, 0]);
    file.extend(block(1, &idb1));
    let req = b"GET /ng HTTP/1.1\r\nHost: x\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nng";
    let frames = [
        (0u32, build_frame(c, s, 10, 0, true, false, false, b"")),
        (
            1,
            build_frame(s, c, 50, 11, true, false, false, b"")[14..].to_vec(),
        ),
        (0, build_frame(c, s, 11, 51, false, false, false, req)),
        (
            1,
            build_frame(s, c, 51, 11 + req.len() as u32, false, false, false, resp)[14..].to_vec(),
        ),
    ];
    for (i, (iface, frame)) in frames.iter().enumerate() {
        let ts: u64 = if *iface == 0 {
            1_700_000_000_000_000 + i as u64
        } else {
            1_700_000_000_000_000_000 + i as u64 * 1000
        };
        let mut epb = iface.to_le_bytes().to_vec();
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(frame);
        file.extend(block(6, &epb));
    }
    let path = dir.path().join("two.pcapng");
    std::fs::write(&path, file).unwrap();
    let db = dir.path().join("two.db");
    import(&[&path], &db, &[]);
    let ex = load(&db);
    assert_eq!(
        summary(&ex),
        vec![(
            "GET".to_string(),
            "/ng".to_string(),
            200,
            b"ng".to_vec(),
            false
        )]
    );
    assert_eq!(ex[0].started_at_ns / 1_000_000_000, 1_700_000_000);
}

#[test]
fn filter_and_port_select_flows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.pcap");
    write_pcap(&path, &conversation());
    let db = dir.path().join("f.db");
    import(&[&path], &db, &["--port", "9999"]);
    assert_eq!(load(&db).len(), 0);
    let db2 = dir.path().join("f2.db");
    import(&[&path], &db2, &["--filter", "tcp", "--port", "8080"]);
    assert_eq!(load(&db2).len(), 2);
    let out = mf()
        .arg("import")
        .arg(&path)
        .args(["-o"])
        .arg(dir.path().join("x.db"))
        .args(["--filter", "tcp port nonsense("])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid filter"));
}

#[test]
fn grpc_unary_and_bidi_streaming_from_grpcio() {
    let dir = tempfile::tempdir().unwrap();
    let (mut py, lines, port) = paired_script("pcap_grpc.py");
    let pcap = dir.path().join("grpc.pcap");
    let dump = Tcpdump::start("lo", &format!("tcp port {port}"), &pcap);
    py.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = py.wait();
    assert_eq!(
        rest,
        vec!["UNARY hello ada", "STREAM echo a,echo bb,echo ccc", "DONE"]
    );
    let pcap = dump.stop();
    let db = dir.path().join("grpc.db");
    import(&[&pcap], &db, &[]);
    let ex = load(&db);
    assert_eq!(ex.len(), 2, "{ex:?}");
    assert!(ex
        .iter()
        .all(|e| e.protocol.map(|p| p.as_str()) == Some("grpc") && e.error.is_none()));
    assert_eq!(
        (ex[0].request.method.as_str(), ex[0].request.target.as_str()),
        ("POST", "/demo.Greeter/Say")
    );
    assert_eq!(ex[1].request.target, "/demo.Greeter/Chat");
    let msgs = |e: &Exchange| -> Vec<(Direction, Vec<u8>)> {
        e.messages
            .iter()
            .map(|m| (m.direction, m.data.to_vec()))
            .collect()
    };
    let (c, s) = (Direction::ClientToServer, Direction::ServerToClient);
    assert_eq!(
        msgs(&ex[0]),
        vec![(c, b"ada".to_vec()), (s, b"hello ada".to_vec())]
    );
    let chat = msgs(&ex[1]);
    let client: Vec<&[u8]> = chat.iter().filter(|m| m.0 == c).map(|m| &m.1[..]).collect();
    let server: Vec<&[u8]> = chat.iter().filter(|m| m.0 == s).map(|m| &m.1[..]).collect();
    assert_eq!(client, vec![&b"a"[..], b"bb", b"ccc"]);
    assert_eq!(server, vec![&b"echo a"[..], b"echo bb", b"echo ccc"]);
    for e in &ex {
        let trailers = &e.response.as_ref().unwrap().trailers;
        assert!(
            trailers
                .iter()
                .any(|h| h.name == "grpc-status" && h.value == b"0"),
            "{trailers:?}"
        );
    }
    assert_eq!(
        ex[0].connection_id, ex[1].connection_id,
        "one channel, one connection"
    );
    // The imported recording replays to the same client, the server gone.
    let replay = start_replay(&db, &["--latency", "none"]);
    let out = Command::new("python3")
        .arg(tests_dir().join("servers").join("pcap_grpc.py"))
        .args(["--client", &replay.addr().to_string()])
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .collect::<Vec<_>>(),
        vec!["UNARY hello ada", "STREAM echo a,echo bb,echo ccc", "DONE"]
    );
}

/// Starts a `servers/pcap_*.py` script that runs its own server and client: it prints
/// `PORT n`, then waits for a line on stdin (the test starts tcpdump in between).
fn paired_script(
    name: &str,
) -> (
    std::process::Child,
    std::io::Lines<BufReader<std::process::ChildStdout>>,
    u16,
) {
    let mut py = Command::new("python3")
        .arg("-u")
        .arg(tests_dir().join("servers").join(name))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("python3");
    let mut lines = BufReader::new(py.stdout.take().unwrap()).lines();
    let first = lines.next().expect("PORT line").expect("utf8");
    let port: u16 = first
        .trim_start_matches("PORT ")
        .trim()
        .parse()
        .expect("port");
    (py, lines, port)
}

// ---- One recording layer: the proxy and passive capture record the same way ----

/// Serves `n` connections on 127.0.0.1:0, answering each one request (read up to the end
/// of its head) with `response`, then closing. Returns the port.
fn fixed_response_server(n: usize, response: &'static [u8]) -> u16 {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(n) {
            let Ok(mut stream) = stream else { return };
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                match stream.read(&mut byte) {
                    Ok(1) => head.push(byte[0]),
                    _ => break,
                }
            }
            let _ = stream.write_all(response);
        }
    });
    port
}

/// Sends `request` on a new connection to `addr` and reads until the peer closes.
fn raw_exchange(addr: &str, request: &[u8]) -> Vec<u8> {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.write_all(request).expect("write");
    let mut out = Vec::new();
    let _ = stream.read_to_end(&mut out);
    out
}

const HOP_REQUEST: &[u8] = b"GET /hop?x=1 HTTP/1.1\r\nHost: api.test\r\nConnection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nX-Hop: 1\r\nTE: trailers\r\nAccept: */*\r\n\r\n";
const HOP_RESPONSE: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close, X-Served-Hop\r\nKeep-Alive: timeout=5, max=100\r\nX-Served-Hop: 1\r\nContent-Length: 2\r\n\r\nok";

/// Issue 10: "The recording proxy strips hop-by-hop headers from what it stores; passive
/// capture stores them." The same exchange, recorded by the proxy and imported from a
/// tcpdump capture, stores the same request and response header lists — as on the wire.
#[test]
fn recording_proxy_and_passive_capture_store_the_same_hop_by_hop_headers() {
    let dir = tempfile::tempdir().unwrap();
    let port = fixed_response_server(2, HOP_RESPONSE);
    let upstream = format!("127.0.0.1:{port}");

    // Passive: the client talks to the server directly while tcpdump listens.
    let pcap = dir.path().join("hop.pcap");
    let dump = Tcpdump::start("lo", &format!("tcp port {port}"), &pcap);
    let direct = raw_exchange(&upstream, HOP_REQUEST);
    assert!(direct.ends_with(b"\r\n\r\nok"), "{direct:?}");
    let pcap = dump.stop();
    let imported_db = dir.path().join("imported.db");
    import(&[&pcap], &imported_db, &[]);

    // Proxy: the same request through `mf record --proxy`.
    let proxied_db = dir.path().join("proxied.db");
    let mut recorder = start_recorder(&format!("http://{upstream}"), &proxied_db, &[]);
    let through = raw_exchange(&recorder.addr().to_string(), HOP_REQUEST);
    assert!(through.ends_with(b"\r\n\r\nok"), "{through:?}");
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());

    let imported = load(&imported_db);
    let proxied = load(&proxied_db);
    assert_eq!(imported.len(), 1, "{imported:?}");
    assert_eq!(proxied.len(), 1, "{proxied:?}");
    let (a, b) = (&imported[0], &proxied[0]);
    assert_eq!(a.request.headers, b.request.headers);
    let names: Vec<&str> = a.request.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        ["Host", "Connection", "Keep-Alive", "X-Hop", "TE", "Accept"],
        "stored as sent"
    );
    let (ra, rb) = (a.response.as_ref().unwrap(), b.response.as_ref().unwrap());
    assert_eq!(ra.headers, rb.headers);
    assert!(ra
        .headers
        .iter()
        .any(|h| h.name == "Keep-Alive" && h.value == b"timeout=5, max=100"));
    assert_eq!(
        (&ra.body.data[..], &rb.body.data[..]),
        (&b"ok"[..], &b"ok"[..])
    );
}

/// The WebSocket frames of a session as (direction, opcode, fin, payload).
fn ws_frames(ex: &Exchange) -> Vec<(Direction, u8, bool, Vec<u8>)> {
    ex.messages
        .iter()
        .filter_map(|m| match m.kind {
            MessageKind::WebSocket { opcode, fin, .. } => {
                Some((m.direction, opcode, fin, m.data.to_vec()))
            }
            MessageKind::Grpc { .. } => None,
        })
        .collect()
}

/// Issue 10: "The proxy caps WebSocket and gRPC messages by `--max-body`; passive capture
/// keeps every message." The same session imported with `--max-body 12` and recorded by
/// the proxy with `--max-body 12` keeps the same frames and counts the same drops.
#[test]
fn passive_capture_caps_websocket_messages_by_max_body_like_the_proxy() {
    let dir = tempfile::tempdir().unwrap();
    // Capture: the script's own client against its own server.
    let (mut py, lines, port) = paired_script("pcap_ws.py");
    let pcap = dir.path().join("ws.pcap");
    let dump = Tcpdump::start("lo", &format!("tcp port {port}"), &pcap);
    py.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = py.wait();
    assert_eq!(rest.last().map(String::as_str), Some("DONE"), "{rest:?}");
    let pcap = dump.stop();
    let imported_db = dir.path().join("imported.db");
    import(&[&pcap], &imported_db, &["--max-body", "12"]);

    // Proxy: another instance's server behind `mf record --proxy --max-body 12`, driven by
    // the same client.
    let (mut py, lines, port) = paired_script("pcap_ws.py");
    let proxied_db = dir.path().join("proxied.db");
    let mut recorder = start_recorder(
        &format!("http://127.0.0.1:{port}"),
        &proxied_db,
        &["--max-body", "12"],
    );
    let out = Command::new("python3")
        .arg(tests_dir().join("servers").join("pcap_ws.py"))
        .args(["--client", &recorder.addr().to_string()])
        .env("NO_PROXY", "*")
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    py.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let _: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = py.wait();
    assert!(recorder.interrupt().success(), "{}", recorder.stderr());

    let imported = load(&imported_db);
    let proxied = load(&proxied_db);
    assert_eq!(
        (imported.len(), proxied.len()),
        (1, 1),
        "{imported:?} {proxied:?}"
    );
    let (a, b) = (&imported[0], &proxied[0]);
    let (c, s) = (Direction::ClientToServer, Direction::ServerToClient);
    // Per direction, payloads are kept while they fit 12 bytes; close frames always are.
    let data: Vec<(Direction, u8, Vec<u8>)> = ws_frames(a)
        .into_iter()
        .filter(|f| f.1 != 8)
        .map(|(d, op, _, p)| (d, op, p))
        .collect();
    assert_eq!(
        data,
        vec![
            (c, 1, b"hello".to_vec()),
            (s, 1, b"hello".to_vec()),
            (c, 1, b"frag-".to_vec()),
            (c, 0, b"".to_vec()),
        ]
    );
    assert_eq!(
        ws_frames(a).iter().filter(|f| f.1 == 8).count(),
        2,
        "close both ways"
    );
    assert_eq!(ws_frames(a), ws_frames(b));
    assert_eq!(
        a.tags.get("messages_dropped").map(String::as_str),
        Some("4")
    );
    assert_eq!(
        a.tags.get("messages_dropped"),
        b.tags.get("messages_dropped")
    );
}

/// Issue 10: "`mf import` shows a CONNECT exchange's URL as
/// `http://127.0.0.1:6233127.0.0.1:6233`." A CONNECT through the forward proxy
/// (`--passthrough`), captured by tcpdump and imported, lists as its authority once.
#[test]
fn mf_import_shows_a_connect_exchange_url_with_the_authority_once() {
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    // The tunnel's far end: echoes one read back and closes.
    let echo = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let target = echo.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = echo.accept() {
            let mut buf = [0u8; 64];
            if let Ok(n) = s.read(&mut buf) {
                let _ = s.write_all(&buf[..n]);
            }
        }
    });
    let proxied_db = dir.path().join("proxied.db");
    let mut cmd = mf();
    cmd.args([
        "record",
        "--proxy",
        "--listen",
        "127.0.0.1:0",
        "--passthrough",
    ])
    .arg("127.0.0.1")
    .arg("-o")
    .arg(&proxied_db)
    // Forward mode loads (or creates) the mf CA: keep it inside the test's folder.
    .env("MF_CA_DIR", dir.path().join("ca"));
    let mut proxy = Proc::start("mf record", cmd, "listening on");
    let proxy_addr = proxy.addr().to_string();
    let pcap = dir.path().join("connect.pcap");
    let dump = Tcpdump::start("lo", &format!("tcp port {}", proxy.addr().port()), &pcap);
    let mut stream = std::net::TcpStream::connect(&proxy_addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n"
    )
    .unwrap();
    let established = b"HTTP/1.1 200 Connection Established\r\n\r\n";
    let mut got = vec![0u8; established.len()];
    stream.read_exact(&mut got).unwrap();
    assert_eq!(got, established);
    stream.write_all(b"ping").unwrap();
    let mut echoed = [0u8; 4];
    stream.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed, b"ping");
    drop(stream);
    let pcap = dump.stop();
    assert!(proxy.interrupt().success(), "{}", proxy.stderr());

    let imported_db = dir.path().join("imported.db");
    import(&[&pcap], &imported_db, &[]);
    for db in [&imported_db, &proxied_db] {
        let rows = ls_json(db);
        let connect: Vec<&serde_json::Value> =
            rows.iter().filter(|r| r["method"] == "CONNECT").collect();
        assert_eq!(connect.len(), 1, "{}: {rows:?}", db.display());
        assert_eq!(connect[0]["url"], target.as_str(), "{}", db.display());
    }
}
