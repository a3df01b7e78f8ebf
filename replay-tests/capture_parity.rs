//! The recording proxy and passive capture record the same traffic the same way: one header
//! policy, one message budget, one URL for a CONNECT.

use std::io::Write;
use std::process::Command;
use std::time::Duration;

use mf::model::{Direction, Exchange, MessageKind};

use crate::common::capture::*;
use crate::common::*;

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
        .any(|h| h.name == "Keep-Alive" && h.value[..] == b"timeout=5, max=100"[..]));
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
