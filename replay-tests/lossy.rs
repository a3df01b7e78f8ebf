//! Passive capture of real traffic that lost packets, and of tunnels: captures made at test
//! time by tcpdump inside a network namespace of the test's own (loopback with a 1500-byte
//! MTU, so that messages span many segments), with segments then removed deterministically.
//! The pairing `mf import` finds is checked against what the clients really exchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use mf::model::{ErrorKind, Exchange, HeaderList};

use crate::common::capture::{self, load, Netns, Tcpdump};
use crate::common::*;

fn import(pcap: &Path, db: &Path) -> String {
    String::from_utf8_lossy(&capture::import(&[pcap], db, &[]).stderr).into_owned()
}

fn json_lines(out: &[u8]) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(out)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The request number in `/r/I?…`.
fn request_number(target: &str) -> Option<u64> {
    target.strip_prefix("/r/")?.split('?').next()?.parse().ok()
}

#[test]
fn lossy_keepalive_capture_pairs_what_survived() {
    let Some(ns) = Netns::new("lossy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = ns.python("lossy_http.py");
    cmd.arg("server");
    let server = Proc::start("lossy server", cmd, "PORT");
    let port = server.addr().port().to_string();
    let pcap = dir.path().join("clean.pcap");
    let dump = Tcpdump::start_in(Some(&ns), "lo", "tcp", &pcap, &[]);
    let n = 1500u64;
    let client = ns
        .python("lossy_http.py")
        .args(["client", &port, &n.to_string(), "11", "3"])
        .output()
        .expect("client");
    assert!(
        client.status.success(),
        "client failed: {}",
        String::from_utf8_lossy(&client.stderr)
    );
    let (pcap, kernel_drops) = dump.stop_after(Duration::from_secs(1));
    drop(server);
    assert_eq!(
        kernel_drops, 0,
        "tcpdump lost packets: the loss would not be ours"
    );
    let truth = json_lines(&client.stdout);
    assert_eq!(truth.len() as u64, n);

    // Every 97th segment with payload goes, as a busy capture host's kernel would drop them.
    let lossy = dir.path().join("lossy.pcap");
    let dropped = Command::new("python3")
        .arg(tests_dir().join("servers").join("pcap_drop.py"))
        .arg(&pcap)
        .arg(&lossy)
        .args(["97", "5"])
        .output()
        .expect("pcap_drop");
    assert!(
        dropped.status.success(),
        "{}",
        String::from_utf8_lossy(&dropped.stderr)
    );
    let dropped = &json_lines(&dropped.stdout)[0];
    let lost: BTreeSet<u64> = ["lost_request_heads", "lost_response_heads"]
        .iter()
        .flat_map(|k| dropped[k].as_array().cloned().unwrap_or_default())
        .filter_map(|v| v.as_u64())
        .collect();
    assert!(dropped["dropped"].as_u64().unwrap_or(0) > 50, "{dropped}");

    let db = dir.path().join("lossy.db");
    let summary = import(&lossy, &db);
    let ex = load(&db);

    let want: BTreeMap<u64, (String, u64)> = truth
        .iter()
        .map(|t| {
            assert_eq!(t["status"], 200);
            assert_eq!(t["x_req"], t["i"]);
            (
                t["i"].as_u64().unwrap(),
                (
                    t["method"].as_str().unwrap().to_string(),
                    t["len"].as_u64().unwrap(),
                ),
            )
        })
        .collect();
    let mut paired = BTreeSet::new();
    let mut wrong = Vec::new();
    for e in &ex {
        let (Some(i), Some(r)) = (request_number(&e.request.target), e.response.as_ref()) else {
            continue;
        };
        let answered: Option<u64> = r.headers.header_str("x-req").and_then(|v| v.parse().ok());
        if answered != Some(i) {
            wrong.push((i, answered));
            continue;
        }
        paired.insert(i);
        let (method, len) = &want[&i];
        assert_eq!(&e.request.method, method);
        // Never silently shortened: a body of the wrong size is flagged, a hole kept in place.
        assert!(
            r.body.size == *len || e.error.is_some(),
            "/r/{i}: body of {} bytes, {len} sent, unflagged",
            r.body.size
        );
        if e.tags.contains_key("capture_hole_offset") {
            assert_eq!(
                e.error.as_ref().map(|er| er.kind),
                Some(ErrorKind::CaptureHole)
            );
            assert!(e.tags.contains_key("capture_hole_bytes"));
            if e.tags.get("capture_hole_in").map(String::as_str) == Some("response") {
                assert_eq!(
                    r.body.size, *len,
                    "/r/{i}: a body hole keeps the body's size"
                );
            }
        }
    }
    let recoverable = want.keys().filter(|i| !lost.contains(i)).count();
    let ratio = paired.len() as f64 / recoverable as f64;
    eprintln!(
        "lossy capture: {} of {n} requests paired correctly, {recoverable} recoverable \
         ({:.2}%), {} mispaired, {} dropped segments\n{summary}",
        paired.len(),
        ratio * 100.0,
        wrong.len(),
        dropped["dropped"],
    );
    assert!(ratio >= 0.99, "only {:.2}% paired", ratio * 100.0);
    assert!(
        wrong.len() * 200 <= n as usize,
        "more than 0.5% mispaired: {wrong:?}"
    );
    assert!(
        ex.iter()
            .any(|e| e.tags.contains_key("capture_hole_offset")),
        "some holes fell inside bodies"
    );
    assert!(
        summary.contains(" holes (bytes missing from the capture)"),
        "{summary}"
    );
    assert!(summary.contains("bodies kept with a hole"), "{summary}");
}

#[test]
fn connect_tunnel_is_decoded_with_the_outer_authority() {
    let Some(ns) = Netns::new("tunnel") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = ns.python("lossy_http.py");
    cmd.arg("server");
    let upstream = Proc::start("upstream", cmd, "PORT");
    let proxy = Proc::start("proxy", ns.python("connect_proxy.py"), "PORT");
    let mut cmd = ns.python("connect_proxy.py");
    cmd.arg("silent");
    let silent = Proc::start("silent proxy", cmd, "PORT");
    let target = upstream.addr().to_string();
    let pcap = dir.path().join("tunnel.pcap");
    // The client's side of the proxies only: the proxy's own connection upstream would
    // show the inner requests a second time.
    let filter = format!(
        "tcp port {} or tcp port {}",
        proxy.addr().port(),
        silent.addr().port()
    );
    let dump = Tcpdump::start_in(Some(&ns), "lo", &filter, &pcap, &[]);
    // Two requests through one tunnel, with an inner Host unlike the tunnel's target.
    let (code, body) = ns.curl(&[
        "-p",
        "-x",
        &format!("http://{}", proxy.addr()),
        "-H",
        "Host: inner.test",
        &format!("http://{target}/r/1?size=100"),
        &format!("http://{target}/r/2?size=5000"),
    ]);
    assert_eq!((code, body.len()), (0, 5100));
    // A tunnel that is never answered: curl gives up.
    let (code, _) = ns.curl(&[
        "-p",
        "-x",
        &format!("http://{}", silent.addr()),
        "--max-time",
        "1",
        &format!("http://{target}/r/3"),
    ]);
    assert_ne!(code, 0);
    let (pcap, _) = dump.stop_after(Duration::from_secs(1));
    drop((upstream, proxy, silent));
    let db = dir.path().join("tunnel.db");
    let summary = import(&pcap, &db);
    let ex = load(&db);
    let connects: Vec<&Exchange> = ex
        .iter()
        .filter(|e| e.request.method == "CONNECT")
        .collect();
    assert_eq!(connects.len(), 2, "{ex:#?}");
    assert_eq!(connects[0].request.target, target);
    assert_eq!(connects[0].response.as_ref().map(|r| r.status), Some(200));
    assert!(connects[1].response.is_none() && connects[1].error.is_some());
    let inner: Vec<&Exchange> = ex.iter().filter(|e| e.request.method == "GET").collect();
    assert_eq!(inner.len(), 2, "{ex:#?}");
    for (e, (i, size)) in inner.iter().zip([(1u64, 100u64), (2, 5000)]) {
        assert_eq!(request_number(&e.request.target), Some(i));
        assert_eq!(e.authority, target, "the tunnel's target is the authority");
        assert_eq!(e.tags.get("tunnel"), Some(&target));
        assert_eq!(e.scheme, "http");
        let r = e.response.as_ref().expect("inner response");
        assert_eq!((r.status, r.body.size), (200, size));
        assert!(e.error.is_none(), "{:?}", e.error);
        assert_eq!(e.connection_id, connects[0].connection_id);
    }
    assert!(
        summary.contains("1 CONNECT requests never answered"),
        "{summary}"
    );
}

#[test]
fn h2c_upgrade_answered_101_is_decoded_as_http2() {
    let Some(ns) = Netns::new("h2c") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = Proc::start("h2c server", ns.python("h2c_upgrade.py"), "PORT");
    let pcap = dir.path().join("h2c.pcap");
    let dump = Tcpdump::start_in(Some(&ns), "lo", "tcp", &pcap, &[]);
    let (code, body) = ns.curl(&["--http2", &format!("http://{}/up?x=1", server.addr())]);
    assert_eq!((code, body.as_slice()), (0, &b"hello over h2c\n"[..]));
    let (pcap, _) = dump.stop_after(Duration::from_secs(1));
    drop(server);
    let db = dir.path().join("h2c.db");
    import(&pcap, &db);
    let ex = load(&db);
    assert_eq!(ex.len(), 1, "{ex:#?}");
    let e = &ex[0];
    assert_eq!(
        (e.request.method.as_str(), e.request.target.as_str()),
        ("GET", "/up?x=1")
    );
    assert!(e
        .request
        .headers
        .header_str("upgrade")
        .is_some_and(|u| u.contains("h2c")));
    assert_eq!(e.protocol, Some(mf::model::Protocol::H2));
    let r = e.response.as_ref().expect("the answer on stream 1");
    assert_eq!((r.status, r.version.as_str()), (200, "HTTP/2"));
    assert_eq!(
        r.headers.header_str("content-type").as_deref(),
        Some("text/plain")
    );
    assert_eq!(&r.body.data[..], b"hello over h2c\n");
    assert!(e.error.is_none(), "{:?}", e.error);
}

/// A WebSocket session captured with loss: each direction resumes at the next frame after
/// every hole, so the messages that were captured whole all come out, in order, exactly.
#[test]
fn lossy_websocket_session_resumes_after_each_hole() {
    let Some(ns) = Netns::new("wslossy") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let n = 300usize;
    let mut py = ns
        .python("ws_lossy.py")
        .arg(n.to_string())
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ws_lossy.py");
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(py.stdout.take().unwrap()));
    let port: u16 = lines
        .next()
        .and_then(Result::ok)
        .and_then(|l| l.strip_prefix("PORT ")?.trim().parse().ok())
        .expect("PORT line");
    let pcap = dir.path().join("ws.pcap");
    let dump = Tcpdump::start_in(Some(&ns), "lo", &format!("tcp port {port}"), &pcap, &[]);
    std::io::Write::write_all(&mut py.stdin.take().unwrap(), b"go\n").unwrap();
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = py.wait();
    assert_eq!(
        rest.last().map(String::as_str),
        Some(&*format!("DONE {n}")),
        "{rest:?}"
    );
    let sizes: Vec<usize> = rest[0]
        .strip_prefix("SIZES ")
        .expect("SIZES line")
        .split(',')
        .map(|s| s.parse().expect("size"))
        .collect();
    let (pcap, _) = dump.stop_after(Duration::from_secs(1));
    // An odd period: requests and echoes alternate, so both directions lose segments.
    let lossy = dir.path().join("lossy.pcap");
    let out = Command::new("python3")
        .arg(tests_dir().join("servers").join("pcap_drop.py"))
        .arg(&pcap)
        .arg(&lossy)
        .args(["37", "3"])
        .output()
        .expect("pcap_drop");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dropped = json_lines(&out.stdout)[0]["dropped"].as_u64().unwrap_or(0);
    assert!(dropped >= 10, "{dropped} segments dropped");

    let db = dir.path().join("ws.db");
    let summary = import(&lossy, &db);
    let ex = load(&db);
    let ws: Vec<&Exchange> = ex
        .iter()
        .filter(|e| e.protocol.map(|p| p.as_str()) == Some("websocket"))
        .collect();
    assert_eq!(ws.len(), 1, "{summary}");
    let ws = ws[0];
    assert_eq!(
        ws.error.as_ref().map(|e| e.kind),
        Some(ErrorKind::CaptureHole)
    );
    let holes: u64 = ws
        .tags
        .get("ws_holes")
        .and_then(|h| h.parse().ok())
        .unwrap_or(0);
    assert!(holes >= 1, "{:?}", ws.tags);
    for dir in [
        mf::model::Direction::ClientToServer,
        mf::model::Direction::ServerToClient,
    ] {
        let mut last = None;
        let mut count = 0;
        let texts = ws.messages.iter().filter(|m| {
            m.direction == dir
                && matches!(m.kind, mf::model::MessageKind::WebSocket { opcode: 1, .. })
        });
        for m in texts {
            let text = std::str::from_utf8(&m.data).expect("a whole text message");
            let i: usize = text
                .strip_prefix('m')
                .and_then(|t| t.split(':').next())
                .and_then(|t| t.parse().ok())
                .unwrap_or_else(|| panic!("not a message start: {:.40}", text));
            let fill = (b'a' + (i % 26) as u8) as char;
            let want =
                format!("m{i}:") + &fill.to_string().repeat(sizes[i] - format!("m{i}:").len());
            assert!(text == want, "{dir:?} message {i} is not what was sent");
            assert!(last < Some(i), "{dir:?}: message {i} out of order");
            last = Some(i);
            count += 1;
        }
        // Each hole costs the frame it hit (one message here: each is echoed before the
        // next is sent), two when it takes the end of one and the start of the next.
        eprintln!("{dir:?}: {count} of {n} messages recovered, {holes} holes in all");
        assert!(
            count as u64 + 2 * holes >= n as u64,
            "{dir:?}: only {count} of {n} messages"
        );
    }
    assert!(
        summary.contains("resynchronisations after a hole"),
        "{summary}"
    );
}
