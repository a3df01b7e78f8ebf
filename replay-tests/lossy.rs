//! Passive capture of real traffic that lost packets, and of tunnels: captures made at test
//! time by tcpdump inside a network namespace of the test's own (loopback with a 1500-byte
//! MTU, so that messages span many segments), with segments then removed deterministically.
//! The pairing `mf import` finds is checked against what the clients really exchanged.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mf::model::{ErrorKind, Exchange, HeaderList};

use crate::common::*;

/// A network namespace with its loopback up at MTU 1500; deleted on drop, pass or fail.
struct Netns {
    name: String,
}

impl Netns {
    /// `None` (with the reason printed) when namespaces cannot be made here.
    fn new(tag: &str) -> Option<Netns> {
        let name = format!("mf-test-{}-{tag}", std::process::id());
        let made = Command::new("ip")
            .args(["netns", "add", &name])
            .output()
            .map(|o| {
                (
                    o.status.success(),
                    String::from_utf8_lossy(&o.stderr).into_owned(),
                )
            });
        match made {
            Ok((true, _)) => {}
            Ok((false, why)) => {
                eprintln!("skipped: `ip netns add` failed: {why}");
                return None;
            }
            Err(e) => {
                eprintln!("skipped: `ip` is not available: {e}");
                return None;
            }
        }
        let ns = Netns { name };
        let up = ns
            .cmd("ip")
            .args(["link", "set", "lo", "up", "mtu", "1500"])
            .status()
            .expect("ip link");
        assert!(up.success(), "could not bring lo up in {}", ns.name);
        Some(ns)
    }

    /// `program` run inside the namespace.
    fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    fn python(&self, script: &str) -> Command {
        let mut c = self.cmd("python3");
        c.arg("-u").arg(tests_dir().join("servers").join(script));
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// tcpdump inside a namespace, writing every TCP packet of its loopback to a file.
struct Capture {
    child: Child,
    path: PathBuf,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Capture {
    fn start(ns: &Netns, path: &Path, filter: &str) -> Capture {
        require("tcpdump");
        let mut child = ns
            .cmd("tcpdump")
            .args([
                "-i", "lo", "-s", "0", "-U", "-B", "65536", "-Z", "root", "-w",
            ])
            .arg(path)
            .arg(filter)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("starting tcpdump");
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
        Capture {
            child,
            path: path.to_path_buf(),
            log,
        }
    }

    /// Waits until the file stops growing, then stops tcpdump; returns the file and how
    /// many packets the kernel dropped (which would be loss the test did not choose).
    fn stop(mut self) -> (PathBuf, u64) {
        let size = || std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let mut last = (size(), Instant::now());
        wait_until(Duration::from_secs(15), || {
            let now = size();
            if now != last.0 {
                last = (now, Instant::now());
            }
            last.1.elapsed() > Duration::from_secs(1)
        });
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGINT);
        }
        let _ = self.child.wait();
        let log = self.log.lock().unwrap().clone();
        let dropped = log
            .lines()
            .find_map(|l| l.trim().strip_suffix(" packets dropped by kernel"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(0);
        (self.path.clone(), dropped)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn import(pcap: &Path, db: &Path) -> String {
    let out = mf()
        .arg("import")
        .arg(pcap)
        .arg("-o")
        .arg(db)
        .output()
        .expect("mf import");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "mf import failed: {stderr}");
    stderr
}

fn load(db: &Path) -> Vec<Exchange> {
    let mut all = mf::store::Reader::open(db)
        .expect("open")
        .load_all()
        .expect("load");
    all.sort_by_key(|e| (e.started_at_ns, e.connection_id, e.seq));
    all
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
    let dump = Capture::start(&ns, &pcap, "tcp");
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
    let (pcap, kernel_drops) = dump.stop();
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

/// Runs curl inside the namespace; returns its exit code and body.
fn ns_curl(ns: &Netns, args: &[&str]) -> (i32, Vec<u8>) {
    require("curl");
    let out = ns
        .cmd("curl")
        .args(["-sS", "--max-time", "20"])
        .args(args)
        .output()
        .expect("curl");
    (out.status.code().unwrap_or(-1), out.stdout)
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
    let dump = Capture::start(&ns, &pcap, &filter);
    // Two requests through one tunnel, with an inner Host unlike the tunnel's target.
    let (code, body) = ns_curl(
        &ns,
        &[
            "-p",
            "-x",
            &format!("http://{}", proxy.addr()),
            "-H",
            "Host: inner.test",
            &format!("http://{target}/r/1?size=100"),
            &format!("http://{target}/r/2?size=5000"),
        ],
    );
    assert_eq!((code, body.len()), (0, 5100));
    // A tunnel that is never answered: curl gives up.
    let (code, _) = ns_curl(
        &ns,
        &[
            "-p",
            "-x",
            &format!("http://{}", silent.addr()),
            "--max-time",
            "1",
            &format!("http://{target}/r/3"),
        ],
    );
    assert_ne!(code, 0);
    let (pcap, _) = dump.stop();
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
    let dump = Capture::start(&ns, &pcap, "tcp");
    let (code, body) = ns_curl(
        &ns,
        &["--http2", &format!("http://{}/up?x=1", server.addr())],
    );
    assert_eq!((code, body.as_slice()), (0, &b"hello over h2c\n"[..]));
    let (pcap, _) = dump.stop();
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
