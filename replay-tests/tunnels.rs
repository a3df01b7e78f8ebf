//! Passive capture of mirrored and encapsulated traffic: VXLAN and GENEVE (what cloud
//! traffic mirroring delivers), IPv6 fragments and Linux `any`-interface captures. Every
//! capture is made by tcpdump at test time, inside network namespaces of the test's own,
//! around curl talking to a Python server; what `mf import` finds is compared with what curl
//! saw.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use mf::model::{Exchange, HeaderList};

use crate::common::capture::{import, load, veth, Netns, Tcpdump};
use crate::common::*;

/// What one transfer of curl saw: the request number, method, status and body length.
type Transfer = (u64, String, u16, u64);

/// The requests every test makes: keep-alive GETs of several sizes (one chunked, one empty)
/// on one connection, then a POST on another.
const PATHS: [&str; 4] = [
    "/r/1?size=100",
    "/r/2?size=5000",
    "/r/3?size=12000&chunked=1",
    "/r/4?size=0",
];

/// Runs the requests with curl in `ns` against `base` (`http://HOST:PORT`); returns what
/// curl saw, from its `--write-out`.
fn run_curl(ns: &Netns, base: &str, extra: &[&str]) -> Vec<Transfer> {
    let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
    args.extend(["-w".into(), "%{http_code} %{size_download}\\n".into()]);
    for p in PATHS {
        args.extend(["-o".into(), "/dev/null".into(), format!("{base}{p}")]);
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let (code, out) = ns.curl(&argv);
    assert_eq!(code, 0, "curl failed");
    let mut post_args: Vec<&str> = extra.to_vec();
    let post_body = "p".repeat(3000);
    let url = format!("{base}/r/5?size=300");
    post_args.extend([
        "--data-binary",
        &post_body,
        "-w",
        "%{http_code} %{size_download}\\n",
        "-o",
        "/dev/null",
        &url,
    ]);
    let (code, post) = ns.curl(&post_args);
    assert_eq!(code, 0, "curl POST failed");
    let lines = String::from_utf8_lossy(&out).into_owned() + &String::from_utf8_lossy(&post);
    let seen: Vec<Transfer> = lines
        .lines()
        .zip(1u64..)
        .map(|(l, i)| {
            let (status, size) = l.split_once(' ').expect("status and size");
            let method = if i == 5 { "POST" } else { "GET" };
            (
                i,
                method.to_string(),
                status.parse().expect("status"),
                size.parse().expect("size"),
            )
        })
        .collect();
    assert_eq!(seen.len(), 5, "{lines}");
    assert!(seen.iter().all(|t| t.2 == 200), "{seen:?}");
    seen
}

/// What the recording holds, in the same shape, checking each exchange is whole and
/// answered by its own request's response.
fn imported(ex: &[Exchange]) -> Vec<Transfer> {
    let mut got: Vec<Transfer> = ex
        .iter()
        .map(|e| {
            assert!(e.error.is_none(), "{:?}: {:?}", e.request.target, e.error);
            let r = e.response.as_ref().expect("a response");
            let i: u64 = e
                .request
                .target
                .strip_prefix("/r/")
                .and_then(|t| t.split('?').next())
                .and_then(|n| n.parse().ok())
                .expect("a /r/I target");
            assert_eq!(r.headers.header_str("x-req"), Some(i.to_string()));
            (i, e.request.method.to_string(), r.status, r.body.size)
        })
        .collect();
    got.sort();
    got
}

fn import_stderr(pcap: &Path, db: &Path) -> String {
    String::from_utf8_lossy(&import(&[pcap], db, &[]).stderr).into_owned()
}

/// Two namespaces joined by an underlay veth (10.200.0.0/24), each with the other as the
/// kernel's VXLAN remote (VNI 42, 192.168.42.0/24 inside): the underlay carries only
/// encapsulated packets.
fn vxlan_pair(tag: &str) -> Option<(Netns, Netns)> {
    let (Some(a), Some(b)) = (
        Netns::new(&format!("{tag}a")),
        Netns::new(&format!("{tag}b")),
    ) else {
        return None;
    };
    veth(&a, "mfu0", "10.200.0.1", &b, "mfu1", "10.200.0.2");
    for (ns, dev, remote, inner) in [
        (&a, "mfu0", "10.200.0.2", "192.168.42.1"),
        (&b, "mfu1", "10.200.0.1", "192.168.42.2"),
    ] {
        ns.ip(&[
            "link", "add", "vx0", "type", "vxlan", "id", "42", "remote", remote, "dstport", "4789",
            "dev", dev,
        ]);
        ns.ip(&["addr", "add", &format!("{inner}/24"), "dev", "vx0"]);
        ns.ip(&["link", "set", "vx0", "up"]);
    }
    Some((a, b))
}

/// tcpdump on the underlay, then `mf import`.
#[test]
fn vxlan_capture_of_the_underlay_gives_the_inner_exchanges() {
    let Some((a, b)) = vxlan_pair("vx") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = b.python("lossy_http.py");
    cmd.args(["server", "192.168.42.2"]);
    let server = Proc::start("server behind vxlan", cmd, "PORT");
    let pcap = dir.path().join("vxlan.pcap");
    let dump = Tcpdump::start_in(Some(&a), "mfu0", "udp port 4789", &pcap, &[]);
    let inner_server = format!("192.168.42.2:{}", server.addr().port());
    let seen = run_curl(&a, &format!("http://{inner_server}"), &[]);
    let pcap = dump.stop();
    drop(server);
    let db = dir.path().join("vxlan.db");
    let summary = import_stderr(&pcap, &db);
    let ex = load(&db);
    assert_eq!(imported(&ex), seen, "{summary}");
    for e in &ex {
        assert_eq!(
            e.server_addr.as_deref(),
            Some(inner_server.as_str()),
            "the inner addresses, not the underlay's"
        );
    }
    assert!(
        summary.contains("packets taken out of VXLAN/GENEVE encapsulation"),
        "{summary}"
    );
}

/// `mf record --interface` on the underlay, live, with `--port` naming the inner port: the
/// sniffer opens the same tunnels as the import.
#[test]
fn live_sniffing_of_a_vxlan_underlay() {
    let Some((a, b)) = vxlan_pair("lv") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = b.python("lossy_http.py");
    cmd.args(["server", "192.168.42.2"]);
    let server = Proc::start("server behind vxlan", cmd, "PORT");
    let port = server.addr().port().to_string();
    let db = dir.path().join("live.db");
    let mut cmd = a.mf();
    cmd.args(["record", "--interface", "mfu0", "--port", &port, "-o"])
        .arg(&db)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("mf record");
    let stderr = child.stderr.take().expect("stderr");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut log = Vec::new();
    let started = wait_until(Duration::from_secs(20), || {
        while let Ok(l) = rx.try_recv() {
            log.push(l);
        }
        log.iter().any(|l| l.contains("capturing on mfu0"))
    });
    assert!(started, "mf record --interface did not start: {log:?}");
    let seen = run_curl(&a, &format!("http://192.168.42.2:{port}"), &[]);
    let recorded = wait_until(Duration::from_secs(20), || ls_rows(&db) == seen.len());
    unsafe {
        libc::kill(child.id() as i32, libc::SIGINT);
    }
    let status = child.wait().expect("mf record");
    while let Ok(l) = rx.recv_timeout(Duration::from_secs(5)) {
        log.push(l);
    }
    assert!(recorded && status.success(), "{log:#?}");
    assert_eq!(imported(&load(&db)), seen, "{log:#?}");
}

/// GENEVE as a packet mirror sends it: this kernel may have no `geneve` link type, and a
/// kernel GENEVE device sends no options anyway, so `geneve_mirror.py` copies every frame of
/// the client's interface (both directions) into GENEVE with 12 bytes of options and sends
/// it over UDP to a collector address across a second veth, the underlay tcpdump captures.
/// The inner veth's GSO size is capped so that each copy fits one UDP datagram; datagrams
/// above the underlay's MTU are fragmented by the kernel, so the import also reassembles
/// IPv4 fragments of the tunnel.
#[test]
fn geneve_mirror_with_options_gives_the_inner_exchanges() {
    let (Some(a), Some(b)) = (Netns::new("gna"), Netns::new("gnb")) else {
        return;
    };
    veth(&a, "mfi0", "10.201.0.1", &b, "mfi1", "10.201.0.2");
    a.ip(&["link", "set", "mfi0", "gso_max_size", "16000"]);
    b.ip(&["link", "set", "mfi1", "gso_max_size", "16000"]);
    veth(&a, "mfm0", "10.202.0.1", &b, "mfm1", "10.202.0.2");
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = b.python("lossy_http.py");
    cmd.args(["server", "10.201.0.2"]);
    let server = Proc::start("server", cmd, "PORT");
    let pcap = dir.path().join("geneve.pcap");
    let dump = Tcpdump::start_in(
        Some(&a),
        "mfm0",
        "udp port 6081 or ip[6:2] & 0x1fff != 0",
        &pcap,
        &[],
    );
    let mut cmd = a.python("geneve_mirror.py");
    cmd.args(["mfi0", "10.202.0.2", "7"]);
    let mirror = Proc::start("geneve mirror", cmd, "MIRRORING");
    let base = format!("http://10.201.0.2:{}", server.addr().port());
    let seen = run_curl(&a, &base, &[]);
    let pcap = dump.stop();
    drop((mirror, server));
    let db = dir.path().join("geneve.db");
    let summary = import_stderr(&pcap, &db);
    let ex = load(&db);
    assert_eq!(imported(&ex), seen, "{summary}");
    assert!(
        summary.contains("packets taken out of VXLAN/GENEVE encapsulation"),
        "{summary}"
    );
    assert!(!summary.contains("datagrams incomplete"), "{summary}");
}

/// Linux TCP never fragments its own segments (it sizes them to the path MTU), so the
/// fragments are made from a real capture: curl over IPv6 on the namespace's loopback,
/// captured by tcpdump, then every packet with more than 1232 bytes of TCP cut into IPv6
/// fragments by `ipv6_fragment.py` (every other datagram written last fragment first). A
/// second copy loses one fragment: that datagram is a hole, counted, the rest imported.
#[test]
fn ipv6_fragments_are_reassembled() {
    let Some(ns) = Netns::new("v6frag") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = ns.python("lossy_http.py");
    cmd.args(["server", "::1"]);
    let server = Proc::start("server on ::1", cmd, "PORT");
    let pcap = dir.path().join("v6.pcap");
    let dump = Tcpdump::start_in(Some(&ns), "lo", "ip6 and tcp", &pcap, &[]);
    let seen = run_curl(&ns, &format!("http://[::1]:{}", server.addr().port()), &[]);
    let pcap = dump.stop();
    drop(server);
    let fragment = |out: &Path, drop: &str| -> serde_json::Value {
        let o = Command::new("python3")
            .arg(tests_dir().join("servers").join("ipv6_fragment.py"))
            .arg(&pcap)
            .arg(out)
            .args(["1232", drop])
            .output()
            .expect("ipv6_fragment.py");
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).expect("json")
    };
    let whole = dir.path().join("frag.pcap");
    let made = fragment(&whole, "0");
    assert!(made["fragmented"].as_u64().unwrap_or(0) >= 2, "{made}");
    let db = dir.path().join("frag.db");
    let summary = import_stderr(&whole, &db);
    assert_eq!(imported(&load(&db)), seen, "{summary}");
    assert!(!summary.contains("datagrams incomplete"), "{summary}");

    let lossy = dir.path().join("lost.pcap");
    fragment(&lossy, "1");
    let db = dir.path().join("lost.db");
    let summary = import_stderr(&lossy, &db);
    assert!(
        summary.contains("1 fragmented IP datagrams incomplete"),
        "{summary}"
    );
    assert!(summary.contains("holes (bytes missing"), "{summary}");
    let ex = load(&db);
    assert!(!ex.is_empty() && ex.len() <= 5, "{ex:#?}");
}

/// `tcpdump -i any` writes LINKTYPE_LINUX_SLL2 (tested in `pcap`); `-y LINUX_SLL` the older
/// cooked header, which tools and older libpcaps still write.
#[test]
fn linux_sll_capture_of_the_any_interface() {
    let Some(ns) = Netns::new("sll") else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = ns.python("lossy_http.py");
    cmd.arg("server");
    let server = Proc::start("server", cmd, "PORT");
    let pcap = dir.path().join("sll.pcap");
    let dump = Tcpdump::start_in(Some(&ns), "any", "tcp", &pcap, &["-y", "LINUX_SLL"]);
    let seen = run_curl(&ns, &format!("http://{}", server.addr()), &[]);
    let pcap = dump.stop();
    drop(server);
    let bytes = std::fs::read(&pcap).unwrap();
    assert_eq!(
        u32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]),
        113
    );
    let db = dir.path().join("sll.db");
    let summary = import_stderr(&pcap, &db);
    assert_eq!(imported(&load(&db)), seen, "{summary}");
}
