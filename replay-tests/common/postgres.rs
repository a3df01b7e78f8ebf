//! A throwaway PostgreSQL cluster for the tests: `initdb` (as the `postgres` user: the server
//! refuses to run as root) into a fresh folder, `pg_ctl start` on a free port of 127.0.0.1,
//! one cluster per test process shared by its tests, a fresh database per test. The cluster
//! is stopped and its folder removed when the process exits.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The running cluster.
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    pub port: u16,
    /// The CA that signed the server's certificate (the server takes TLS and plain
    /// connections alike).
    pub ca: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();

/// The folder holding `initdb` and `pg_ctl` (the newest installed version).
fn bin_dir() -> PathBuf {
    let mut versions: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(Result::ok)
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versions.retain(|p| p.join("pg_ctl").exists());
    versions.sort();
    versions
        .pop()
        .expect("PostgreSQL is not installed: run the suite through `make test`, which installs it")
}

/// Runs `program ARGS` as the `postgres` user, failing the test with its output.
fn as_postgres(program: &Path, args: &[&str]) {
    let out = Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(program)
        .args(args)
        .output()
        .expect("running runuser");
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}{}",
        program.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

extern "C" fn stop_at_exit() {
    if let Some(c) = CLUSTER.get() {
        c.stop_now();
        let _ = std::fs::remove_dir_all(&c.dir);
    }
}

/// The shared cluster, started on first use.
pub fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let cluster = Cluster::launch();
        // SAFETY: registering a plain `extern "C" fn` with no captured state.
        unsafe {
            libc::atexit(stop_at_exit);
        }
        cluster
    })
}

/// A cluster of one test's own (for a test that stops and restarts the server, which the
/// shared one must not see), stopped and removed when dropped.
pub struct PrivateCluster(pub Cluster);

impl PrivateCluster {
    pub fn start() -> PrivateCluster {
        PrivateCluster(Cluster::launch())
    }
}

impl Drop for PrivateCluster {
    fn drop(&mut self) {
        self.0.stop_now();
        let _ = std::fs::remove_dir_all(&self.0.dir);
    }
}

impl Cluster {
    /// `initdb` into a fresh folder and start the server on a free port.
    fn launch() -> Cluster {
        let bin = bin_dir();
        // Outside the suite's temp root: the server's user must reach it, and the root is
        // private to this process's user.
        let dir = tempfile::Builder::new()
            .prefix("mf-pg-")
            .tempdir()
            .expect("creating the cluster folder")
            .keep();
        let tls = dir.join("tls");
        std::fs::create_dir(&tls).expect("creating the TLS folder");
        let (ca, _, _) = crate::common::make_test_pki(&tls);
        let chown = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(&dir)
            .status()
            .expect("running chown");
        assert!(chown.success(), "chown of the cluster folder failed");
        // The server refuses a key others can read.
        std::fs::set_permissions(
            tls.join("server-key.pem"),
            std::os::unix::fs::PermissionsExt::from_mode(0o600),
        )
        .expect("chmod of the server key");
        let data = dir.join("data");
        let data_s = data.to_str().expect("utf-8 path");
        as_postgres(
            &bin.join("initdb"),
            &["-D", data_s, "-A", "trust", "-U", "postgres", "--no-sync"],
        );
        let port = crate::common::capture::free_port();
        let cluster = Cluster { dir, bin, port, ca };
        cluster.start();
        cluster
    }

    fn data(&self) -> String {
        self.dir.join("data").to_string_lossy().into_owned()
    }

    /// Starts the server and waits until it accepts connections.
    pub fn start(&self) {
        let tls = self.dir.join("tls");
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100 \
             -c ssl=on -c ssl_cert_file={} -c ssl_key_file={}",
            self.port,
            self.dir.display(),
            tls.join("server.pem").display(),
            tls.join("server-key.pem").display(),
        );
        let log = self.dir.join("server.log");
        as_postgres(
            &self.bin.join("pg_ctl"),
            &[
                "-D",
                &self.data(),
                "-l",
                log.to_str().unwrap_or("server.log"),
                "-w",
                "-o",
                &options,
                "start",
            ],
        );
    }

    /// Stops the server (fast shutdown: connections are cut, committed data stays).
    pub fn stop(&self) {
        as_postgres(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data(), "-w", "-m", "fast", "stop"],
        );
    }

    fn stop_now(&self) {
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(self.bin.join("pg_ctl"))
            .args(["-D", &self.data(), "-m", "immediate", "stop"])
            .output();
    }

    /// A URL of database `db` (no recording parameter).
    pub fn db_url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// A client of database `db`, for checks the CLI does not make.
    pub fn client(&self, db: &str) -> ::postgres::Client {
        ::postgres::Client::connect(&self.db_url(db), ::postgres::NoTls)
            .expect("connecting to the test cluster")
    }

    /// Creates a fresh database for one test, named after it; returns its name.
    pub fn fresh_db(&self, name: &str) -> String {
        let mut admin = self.client("postgres");
        for sql in [
            format!("DROP DATABASE IF EXISTS {name}"),
            format!("CREATE DATABASE {name}"),
        ] {
            admin.batch_execute(&sql).expect("creating a test database");
        }
        name.to_string()
    }

    /// The recording URL of `recording` in database `db`.
    pub fn recording_url(&self, db: &str, recording: &str) -> String {
        format!("{}?recording={recording}&sslmode=disable", self.db_url(db))
    }
}
