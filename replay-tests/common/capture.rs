//! Helpers for passive-capture tests: tcpdump around real traffic, scripts that pair a server
//! and a client around it, `mf import`, loading what a recording holds.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mf::model::Exchange;

use super::*;

/// A network namespace of the test's own with its loopback up at MTU 1500 (so that messages
/// span many segments); deleted on drop, pass or fail.
pub struct Netns {
    pub name: String,
}

impl Netns {
    /// `None` (with the reason printed) when namespaces cannot be made here.
    pub fn new(tag: &str) -> Option<Netns> {
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
        ns.ip(&["link", "set", "lo", "up", "mtu", "1500"]);
        Some(ns)
    }

    /// `program` run inside the namespace.
    pub fn cmd(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]);
        c
    }

    /// A script of `servers/` run by python inside the namespace.
    pub fn python(&self, script: &str) -> Command {
        let mut c = self.cmd("python3");
        c.arg("-u").arg(tests_dir().join("servers").join(script));
        c
    }

    /// A hermetic `mf` command run inside the namespace.
    pub fn mf(&self) -> Command {
        let mut c = self.cmd(&mf_bin().to_string_lossy());
        super::hermetic(&mut c);
        c
    }

    /// `ip ARGS` inside the namespace; panics with ip's message when it fails.
    pub fn ip(&self, args: &[&str]) {
        let out = self.cmd("ip").args(args).output().expect("ip");
        assert!(
            out.status.success(),
            "ip {} in {}: {}",
            args.join(" "),
            self.name,
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// curl inside the namespace; returns its exit code and stdout.
    pub fn curl(&self, args: &[&str]) -> (i32, Vec<u8>) {
        require("curl");
        let out = self
            .cmd("curl")
            .args(["-sS", "--max-time", "20"])
            .args(args)
            .output()
            .expect("curl");
        (out.status.code().unwrap_or(-1), out.stdout)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// A veth pair from `a` (end `a_end`, address `a_addr/24`) to `b` (`b_end`, `b_addr/24`),
/// both ends up.
pub fn veth(a: &Netns, a_end: &str, a_addr: &str, b: &Netns, b_end: &str, b_addr: &str) {
    a.ip(&[
        "link", "add", a_end, "type", "veth", "peer", "name", b_end, "netns", &b.name,
    ]);
    for (ns, end, addr) in [(a, a_end, a_addr), (b, b_end, b_addr)] {
        ns.ip(&["addr", "add", &format!("{addr}/24"), "dev", end]);
        ns.ip(&["link", "set", end, "up"]);
    }
}

/// tcpdump writing a capture file; stopped with SIGINT so that the file is complete.
pub struct Tcpdump {
    child: Child,
    path: PathBuf,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Tcpdump {
    /// tcpdump on `iface` of this host's namespace.
    pub fn start(iface: &str, filter: &str, path: &Path) -> Tcpdump {
        Tcpdump::start_in(None, iface, filter, path, &[])
    }

    /// tcpdump on `iface` of `ns` (this host's namespace for `None`), with `extra` options
    /// (`-y LINUX_SLL`…).
    pub fn start_in(
        ns: Option<&Netns>,
        iface: &str,
        filter: &str,
        path: &Path,
        extra: &[&str],
    ) -> Tcpdump {
        require("tcpdump");
        let mut cmd = match ns {
            Some(ns) => ns.cmd("tcpdump"),
            None => Command::new("tcpdump"),
        };
        let mut child = cmd
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
            ])
            .args(extra)
            .arg("-w")
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

    /// Stops once the file has stopped growing for 150 ms (loopback delivery is synchronous
    /// and `-U --immediate-mode` writes each packet as it arrives), warning when tcpdump
    /// says it dropped packets.
    pub fn stop(self) -> PathBuf {
        let (path, dropped) = self.stop_after(Duration::from_millis(150));
        if dropped != 0 {
            // Not fatal by itself: the assertions on the import say whether it mattered.
            eprintln!("tcpdump may have dropped {dropped} packets");
        }
        path
    }

    /// Stops once the file has stopped growing for `quiet`; returns the file and how many
    /// packets the kernel dropped (loss a test did not choose).
    pub fn stop_after(mut self, quiet: Duration) -> (PathBuf, u64) {
        let size = || std::fs::metadata(&self.path).map_or(0, |m| m.len());
        let mut last = (size(), Instant::now());
        wait_until(Duration::from_secs(15), || {
            let now = size();
            if now != last.0 {
                last = (now, Instant::now());
            }
            last.1.elapsed() >= quiet
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
        let dropped = log
            .lines()
            .find_map(|l| l.trim().strip_suffix(" packets dropped by kernel"))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or(u64::MAX);
        (self.path.clone(), dropped)
    }
}

impl Drop for Tcpdump {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn import(files: &[&Path], db: &Path, extra: &[&str]) -> std::process::Output {
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

pub fn load(db: &Path) -> Vec<Exchange> {
    let mut all = mf::store::Reader::open(db)
        .expect("open")
        .load_all()
        .expect("load");
    all.sort_by_key(|e| (e.started_at_ns, e.connection_id, e.seq));
    all
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

/// Starts a `servers/pcap_*.py` script that runs its own server and client: it prints
/// `PORT n`, then waits for a line on stdin (the test starts tcpdump in between).
pub fn paired_script(
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
