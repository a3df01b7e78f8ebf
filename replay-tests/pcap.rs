//! Passive capture: `mf import` of captures made at test time by tcpdump around real clients
//! and servers on loopback, and `mf record --interface lo`.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use mf::model::{Direction, Exchange, MessageKind};

use crate::common::capture::*;
use crate::common::*;

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
                .any(|h| h.name == "grpc-status" && h.value[..] == b"0"[..]),
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
