//! Helpers for passive-capture tests: tcpdump around real traffic, scripts that pair a server
//! and a client around it, `mf import`, loading what a recording holds.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use mf::model::Exchange;

use super::*;

/// tcpdump writing a capture file; stopped with SIGINT so that the file is complete.
pub struct Tcpdump {
    child: Child,
    path: PathBuf,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Tcpdump {
    pub fn start(iface: &str, filter: &str, path: &Path) -> Tcpdump {
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

    pub fn stop(mut self) -> PathBuf {
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
