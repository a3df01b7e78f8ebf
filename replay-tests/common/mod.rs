//! Shared test harness: run the real `mf` binary and real peers (Python servers, curl) on
//! 127.0.0.1 with ephemeral ports. Every process is killed on drop, so a failing test leaves
//! nothing running.
#![allow(dead_code)]

pub mod capture;
pub mod judged;
pub mod postgres;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

/// Path of the mf binary under test.
pub fn mf_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_mf"))
}

/// Folder of this test suite (for the Python servers and fixtures).
pub fn tests_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("replay-tests")
}

/// A hermetic `mf` command: no proxies, no MF_* settings, no user config.
pub fn mf() -> Command {
    let mut cmd = Command::new(mf_bin());
    hermetic(&mut cmd);
    cmd
}

/// The one temporary folder of this test process: every helper-made file lives under it, and
/// it is removed when the process exits (see [`cleanup_at_exit`]).
pub fn temp_root() -> &'static Path {
    static_root().get_or_init(|| {
        let dir = tempfile::Builder::new()
            .prefix("mf-tests-")
            .tempdir()
            .expect("creating the test temp root")
            .keep();
        // SAFETY: registering a plain `extern "C" fn` with no captured state.
        unsafe {
            libc::atexit(cleanup_at_exit);
        }
        dir
    })
}

/// Folders under [`temp_root`] that the helpers make; anything else there was left behind by
/// a program under test.
const HELPER_DIRS: [&str; 2] = ["home-", "shared-"];

/// Removes [`temp_root`] at exit, and fails the run when a child process left files in it
/// (children get it as `TMPDIR`, so their temp files land there instead of in /tmp).
extern "C" fn cleanup_at_exit() {
    let Some(root) = temp_root_if_made() else {
        return;
    };
    let leftovers: Vec<String> = std::fs::read_dir(root)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|name| !HELPER_DIRS.iter().any(|p| name.starts_with(p)))
                .collect()
        })
        .unwrap_or_default();
    let _ = std::fs::remove_dir_all(root);
    if !leftovers.is_empty() {
        eprintln!("tests left temporary files behind (now removed): {leftovers:?}");
        // SAFETY: ends the process without running further exit handlers.
        unsafe { libc::_exit(101) }
    }
}

fn temp_root_if_made() -> Option<&'static Path> {
    static_root().get().map(PathBuf::as_path)
}

fn static_root() -> &'static OnceLock<PathBuf> {
    static ROOT: OnceLock<PathBuf> = OnceLock::new();
    &ROOT
}

/// The `HOME` of the current test: one folder per test (libtest names each test's thread
/// after it), so a CA written by one `mf` is found by the next of the same test and never
/// in the developer's `~/.config/mf`.
pub fn test_home() -> PathBuf {
    let name: String = std::thread::current()
        .name()
        .unwrap_or("main")
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    let home = temp_root().join(format!("home-{name}"));
    std::fs::create_dir_all(&home).expect("creating the test HOME");
    home
}

/// A folder under [`temp_root`] shared by the whole test process, for fixed inputs.
pub fn shared_dir(name: &str) -> PathBuf {
    let dir = temp_root().join(format!("shared-{name}"));
    std::fs::create_dir_all(&dir).expect("creating a shared test folder");
    dir
}

/// `data` as the file `name` in a folder shared by the test process, written atomically (to a
/// unique name, then renamed) so that a test reading an earlier copy never sees a partial one.
pub fn shared_file(name: &str, data: &[u8]) -> PathBuf {
    let dir = shared_dir("files");
    let path = dir.join(name);
    let mut tmp = tempfile::NamedTempFile::new_in(&dir).expect("creating a shared file");
    std::io::Write::write_all(&mut tmp, data).expect("writing a shared file");
    tmp.persist(&path).expect("publishing a shared file");
    path
}

fn hermetic(cmd: &mut Command) {
    for (key, _) in std::env::vars() {
        if key.starts_with("MF_")
            || key.starts_with("XDG_")
            || key.to_ascii_lowercase().ends_with("_proxy")
        {
            cmd.env_remove(&key);
        }
    }
    cmd.env("NO_PROXY", "*");
    cmd.env_remove("RUST_LOG");
    cmd.env("HOME", test_home());
    cmd.env("TMPDIR", temp_root());
}

/// Runs `mf ARGS` to completion.
pub fn mf_run(args: &[&str]) -> Output {
    mf().args(args).output().expect("running mf")
}

/// A long-running child process whose stderr is collected in the background.
pub struct Proc {
    child: Child,
    /// One message from each pipe's reader thread when it has read everything.
    drained: std::sync::mpsc::Receiver<()>,
    stderr: Arc<Mutex<String>>,
    stdout: Arc<Mutex<String>>,
    pub addr: Option<SocketAddr>,
    name: String,
}

impl Proc {
    /// Starts `cmd` and waits (up to 20 s) until it prints a line containing `marker`
    /// followed by an address (`listening on 127.0.0.1:PORT` or `PORT 1234`).
    pub fn start(name: &str, mut cmd: Command, marker: &str) -> Proc {
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name}: {e}"));
        let stderr = Arc::new(Mutex::new(String::new()));
        let stdout = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel::<String>();
        let (drained_tx, drained) = std::sync::mpsc::channel::<()>();
        for (pipe, buf) in [
            (
                Box::new(child.stderr.take().unwrap()) as Box<dyn Read + Send>,
                stderr.clone(),
            ),
            (
                Box::new(child.stdout.take().unwrap()) as Box<dyn Read + Send>,
                stdout.clone(),
            ),
        ] {
            let tx = tx.clone();
            let drained_tx = drained_tx.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    buf.lock().unwrap().push_str(&line);
                    buf.lock().unwrap().push('\n');
                    let _ = tx.send(line);
                }
                let _ = drained_tx.send(());
            });
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut addr = None;
        while Instant::now() < deadline {
            let Ok(line) = rx.recv_timeout(Duration::from_millis(100)) else {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{name} exited early with {status}:\n{}",
                        stderr.lock().unwrap()
                    );
                }
                continue;
            };
            if let Some(pos) = line.find(marker) {
                let rest = &line[pos + marker.len()..];
                let token: String = rest
                    .trim_start()
                    .chars()
                    .take_while(|c| !c.is_whitespace() && *c != ',')
                    .collect();
                // A sentence's full stop (`listening at 127.0.0.1:8080.`) is not the port's.
                let token = token.trim_end_matches('.');
                addr = token.parse::<SocketAddr>().ok().or_else(|| {
                    token
                        .parse::<u16>()
                        .ok()
                        .map(|p| SocketAddr::from(([127, 0, 0, 1], p)))
                });
                break;
            }
        }
        let addr = addr.unwrap_or_else(|| {
            panic!(
                "{name} never printed {marker:?}:\n{}",
                stderr.lock().unwrap()
            )
        });
        Proc {
            child,
            drained,
            stderr,
            stdout,
            addr: Some(addr),
            name: name.to_string(),
        }
    }

    /// The address the process listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr.expect("process has an address")
    }

    /// `http://ADDR`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr())
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Everything the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        self.stdout.lock().unwrap().clone()
    }

    /// Sends `signal` and waits (up to 20 s) for the exit.
    pub fn signal_and_wait(&mut self, signal: i32) -> ExitStatus {
        unsafe {
            libc::kill(self.child.id() as i32, signal);
        }
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // The last lines are read once both pipes are at their end (a grandchild
                // holding a pipe open must not hang the test, hence the bound).
                for _ in 0..2 {
                    let _ = self.drained.recv_timeout(Duration::from_secs(5));
                }
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!(
                    "{} did not exit after signal {signal}:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGINT, as Ctrl-C would.
    pub fn interrupt(&mut self) -> ExitStatus {
        self.signal_and_wait(libc::SIGINT)
    }

    /// SIGKILL: no chance to clean up.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `mf record --proxy --upstream UPSTREAM -o DB --listen 127.0.0.1:0 EXTRA...`
pub fn start_recorder(upstream: &str, db: &Path, extra: &[&str]) -> Proc {
    let mut cmd = mf();
    cmd.args([
        "record",
        "--proxy",
        "--upstream",
        upstream,
        "--listen",
        "127.0.0.1:0",
        "-o",
    ])
    .arg(db)
    .args(extra);
    Proc::start("mf record", cmd, "listening on")
}

/// `mf replay DB --listen 127.0.0.1:0 EXTRA...`
pub fn start_replay(db: &Path, extra: &[&str]) -> Proc {
    let mut cmd = mf();
    cmd.arg("replay")
        .arg(db)
        .args(["--listen", "127.0.0.1:0"])
        .args(extra);
    Proc::start("mf replay", cmd, "listening on")
}

/// Starts `replay-tests/servers/SCRIPT` with python3; the script prints `PORT n` when ready.
pub fn start_python(script: &str, args: &[&str]) -> Proc {
    let mut cmd = Command::new("python3");
    cmd.arg("-u")
        .arg(tests_dir().join("servers").join(script))
        .args(args);
    hermetic(&mut cmd);
    Proc::start(script, cmd, "PORT")
}

/// Fails loudly when a tool the suite needs is missing: `make test` installs them all.
pub fn require(tool: &str) {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        found,
        "{tool} is not installed: run the suite through `make test`, which installs it"
    );
}

/// What curl saw: status line, headers and body, separately.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurlResult {
    pub exit: i32,
    /// Raw header block(s) as curl dumped them (`-D`), interim responses included.
    pub headers: String,
    pub body: Vec<u8>,
}

impl CurlResult {
    /// Status code of the final response (trailers, which curl dumps too, are skipped).
    pub fn status(&self) -> u16 {
        self.headers
            .split("\r\n\r\n")
            .filter(|b| b.starts_with("HTTP/"))
            .last()
            .and_then(|b| b.split(' ').nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0)
    }
}

/// Runs curl with `args` and returns the dumped headers and body.
pub fn curl(args: &[&str]) -> CurlResult {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = dir.path().join("h");
    let b = dir.path().join("b");
    // `--noproxy *` keeps a developer's proxy settings out of the tests, except where the
    // test names a proxy itself with -x.
    let explicit_proxy = args.iter().any(|a| *a == "-x" || *a == "--proxy");
    let noproxy: &[&str] = if explicit_proxy {
        &[]
    } else {
        &["--noproxy", "*"]
    };
    let out = Command::new("curl")
        .args(["-sS"])
        .args(noproxy)
        .args(["--max-time", "30", "-D"])
        .arg(&h)
        .arg("-o")
        .arg(&b)
        .args(args)
        .output()
        .expect("running curl");
    CurlResult {
        exit: out.status.code().unwrap_or(-1),
        headers: std::fs::read_to_string(&h).unwrap_or_default(),
        body: std::fs::read(&b).unwrap_or_default(),
    }
}

/// Lines of `mf ls --json` parsed.
pub fn ls_json(db: &Path) -> Vec<serde_json::Value> {
    let out = mf()
        .arg("ls")
        .arg(db)
        .arg("--json")
        .output()
        .expect("mf ls");
    assert!(
        out.status.success(),
        "mf ls failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("ls --json line is JSON"))
        .collect()
}

/// Number of exchanges `mf ls` finds in `db` now; 0 while it cannot be read (not created yet,
/// or mid-write): for polling a recording a recorder is still writing.
pub fn ls_rows(db: &Path) -> usize {
    mf().arg("ls")
        .arg(db)
        .arg("--json")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or(0, |o| {
            o.stdout
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .count()
        })
}

/// Polls `f` until it returns true or `timeout` passes.
pub fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    false
}

/// A throwaway CA and a server certificate for 127.0.0.1/localhost, made with openssl.
/// Returns (ca.pem, server cert.pem, server key.pem).
pub fn make_test_pki(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    require("openssl");
    let ca_key = dir.join("test-ca-key.pem");
    let ca = dir.join("test-ca.pem");
    let key = dir.join("server-key.pem");
    let csr = dir.join("server.csr");
    let cert = dir.join("server.pem");
    let ext = dir.join("ext.cnf");
    std::fs::write(&ext, "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n").unwrap();
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let p = |p: &Path| p.to_str().unwrap().to_string();
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &p(&ca_key),
        "-out",
        &p(&ca),
        "-days",
        "2",
        "-subj",
        "/CN=mf test CA",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        &p(&key),
        "-out",
        &p(&csr),
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        &p(&csr),
        "-CA",
        &p(&ca),
        "-CAkey",
        &p(&ca_key),
        "-CAcreateserial",
        "-out",
        &p(&cert),
        "-days",
        "2",
        "-extfile",
        &p(&ext),
    ]);
    (ca, cert, key)
}

/// A loopback port that refuses connections for as long as this lives: bound but not
/// listening, so the kernel cannot hand it to another socket (a port merely closed again
/// could be given to the very proxy under test, which then forwarded to itself).
pub struct RefusedPort {
    _socket: socket2::Socket,
    pub port: u16,
}

/// See [`RefusedPort`].
pub fn refused_port() -> RefusedPort {
    let socket =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    let addr: SocketAddr = "127.0.0.1:0".parse().expect("address");
    socket.bind(&addr.into()).expect("bind");
    let port = socket
        .local_addr()
        .ok()
        .and_then(|a| a.as_socket())
        .map(|a| a.port())
        .expect("bound port");
    RefusedPort {
        _socket: socket,
        port,
    }
}
