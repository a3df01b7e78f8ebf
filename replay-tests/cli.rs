//! Command-line behaviour: errors on bad input, man pages kept current.

use std::io::Write;

use crate::common::*;

fn assert_clean_error(args: &[&str], needle: &str) {
    let out = mf_run(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(
        stderr.contains(needle),
        "{args:?}: expected {needle:?} in {stderr}"
    );
    assert!(!stderr.contains("panicked"), "{args:?} panicked: {stderr}");
}

#[test]
fn corrupt_or_foreign_files_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::File::create(&garbage)
        .unwrap()
        .write_all(&[0x5a; 10_000])
        .unwrap();
    let empty = dir.path().join("empty.db");
    std::fs::File::create(&empty).unwrap();
    let foreign = dir.path().join("foreign.db");
    let status = std::process::Command::new("python3")
        .args(["-c", &format!("import sqlite3; c=sqlite3.connect('{}'); c.execute('create table t(x)'); c.commit()", foreign.display())])
        .status()
        .unwrap();
    assert!(status.success());
    for f in [&garbage, &empty, &foreign] {
        let f = f.to_str().unwrap();
        assert_clean_error(&["ls", f], "not an mf recording");
        assert_clean_error(
            &["replay", f, "--listen", "127.0.0.1:0"],
            "not an mf recording",
        );
        assert_clean_error(&["show", f, "1"], "not an mf recording");
    }
    assert_clean_error(
        &["ls", dir.path().join("missing.db").to_str().unwrap()],
        "no such recording",
    );
}

#[test]
fn truncated_recording_is_a_clear_error() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    let upstream = start_python("http_upstream.py", &[]);
    let mut recorder = start_recorder(&upstream.url(), &db, &[]);
    for _ in 0..5 {
        curl(&[&format!("{}/binary", recorder.url())]);
    }
    assert!(recorder.interrupt().success());
    let data = std::fs::read(&db).unwrap();
    let cut = dir.path().join("cut.db");
    std::fs::write(&cut, &data[..data.len() / 3]).unwrap();
    let out = mf_run(&["replay", cut.to_str().unwrap(), "--listen", "127.0.0.1:0"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
}

#[test]
fn bad_arguments_exit_2_with_advice() {
    assert_clean_error(&["record"], "--proxy");
    assert_clean_error(
        &["record", "--proxy", "--upstream", "ftp://x"],
        "unsupported scheme",
    );
    assert_clean_error(
        &[
            "record",
            "--proxy",
            "--upstream",
            "http://127.0.0.1:1",
            "--max-body",
            "lots",
        ],
        "not a size",
    );
    let out = mf_run(&["show", "x.db"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn man_pages_are_current() {
    let dir = tempfile::tempdir().unwrap();
    let out = mf_run(&["generate", "man", dir.path().to_str().unwrap()]);
    assert!(out.status.success());
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("man");
    let mut names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    names.sort();
    for name in names {
        let fresh = std::fs::read(dir.path().join(&name)).unwrap();
        let old = std::fs::read(committed.join(&name)).unwrap_or_default();
        assert!(
            fresh == old,
            "man/{} is out of date: run `cargo run -- generate man man`",
            name.to_string_lossy()
        );
    }
}

/// Recordings made by older mf versions keep working: one small recording per schema
/// version lives in fixtures/recordings/ and must open, list and replay. The loop runs to the
/// schema version this mf writes (`mf ls` of a fresh recording says which), so a new version
/// cannot be added without its fixture.
#[test]
fn recordings_from_every_schema_version_open() {
    require("curl");
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/recordings");
    let current = mf::store::SCHEMA_VERSION;
    assert!(current >= 2);
    for version in 1..=current {
        let src = fixtures.join(format!("v{version}.db"));
        assert!(
            src.exists(),
            "schema v{version} has no fixture at {}",
            src.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join(format!("v{version}.db"));
        std::fs::copy(&src, &db).unwrap();
        let rows = ls_json(&db);
        let paths: Vec<String> = rows
            .iter()
            .map(|r| {
                r["url"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string()
            })
            .collect();
        assert_eq!(paths[..3], ["json", "echo", "chunked"], "v{version}");
        let replay = start_replay(&db, &[]);
        let r = curl(&[&format!("{}/chunked", replay.url())]);
        assert_eq!(r.status(), 200, "v{version}");
        assert!(r.headers.contains("X-Checksum: 42") || r.body.starts_with(b"first chunk"));
        if version >= 2 {
            // The refused upstream in the v2 fixture keeps its kind and replays as a 502.
            let failed = rows
                .iter()
                .find(|r| r["url"].as_str().unwrap().ends_with("/down"));
            let failed = failed.expect("v2 fixture has a failed exchange");
            assert_eq!(failed["error_kind"], "upstream_refused");
            let r = curl(&[&format!("{}/down", replay.url())]);
            assert_eq!(r.status(), 502, "v{version}");
        }
    }
}

/// Runs `mf ARGS` with stdout a pipe that is closed after one line, as `| head -1` does.
fn first_line_then_close(args: &[&std::ffi::OsStr]) -> (String, std::process::Output) {
    use std::io::BufRead;
    let mut child = mf()
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starting mf");
    let mut line = String::new();
    {
        let mut stdout = std::io::BufReader::new(child.stdout.take().expect("stdout"));
        stdout.read_line(&mut line).expect("reading one line");
    }
    (line, child.wait_with_output().expect("waiting for mf"))
}

#[test]
fn ls_json_piped_into_head_is_not_a_broken_pipe_error() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("big.db");
    // Far more output than a pipe buffers, so mf is still writing when the reader leaves.
    let out = mf()
        .args([
            "generate",
            "synthetic-recording",
            "--exchanges",
            "3000",
            "-o",
        ])
        .arg(&db)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = mf()
        .arg("infer")
        .arg(&db)
        .arg("-o")
        .arg(dir.path().join("fx"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let db = db.as_os_str();
    for args in [
        vec![std::ffi::OsStr::new("ls"), db, "--json".as_ref()],
        vec!["ls".as_ref(), db],
        vec!["export".as_ref(), db],
        vec!["patterns".as_ref(), db, "--json".as_ref()],
        vec!["generate".as_ref(), "completions".as_ref(), "bash".as_ref()],
    ] {
        let (line, out) = first_line_then_close(&args);
        assert!(!line.is_empty(), "{args:?} printed nothing");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr),
            "",
            "{args:?} complained about the closed pipe"
        );
        assert_eq!(out.status.code(), Some(0), "{args:?}");
    }
}

/// `mf ca init` keeps its folder owner-only and its key private whatever the umask.
#[test]
fn ca_init_ignores_a_permissive_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("ca");
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg("umask 000; exec \"$0\" ca init")
        .arg(env!("CARGO_BIN_EXE_mf"))
        .env("MF_CA_DIR", &ca)
        .env("HOME", dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&ca), 0o700);
    for entry in std::fs::read_dir(&ca).unwrap() {
        let path = entry.unwrap().path();
        let m = mode(&path);
        let name = path.file_name().unwrap().to_string_lossy().to_string();
        if name.contains("key") {
            assert_eq!(m, 0o600, "{name}");
        } else {
            assert_eq!(m & 0o022, 0, "{name} is writable by others: {m:o}");
        }
    }
}

/// Bad places and values get an error that says what is wrong, not SQLite's internals.
#[test]
fn directories_read_only_folders_and_zero_bandwidth_get_clear_errors() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = mf().arg("ls").arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("it is a directory"), "{err}");
    assert!(!err.contains("disk I/O"), "{err}");

    let out = mf()
        .args(["replay", "x.db", "--bandwidth", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("at least 1 byte"));

    // A recording in a folder the user may not write to.
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    let db = ro.join("r.db");
    std::fs::copy(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/recordings/v1.db"),
        &db,
    )
    .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Root ignores permission bits: run mf as an unprivileged user then.
    let root = unsafe { libc::geteuid() } == 0;
    let mut cmd = if root {
        let mut c = std::process::Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(env!("CARGO_BIN_EXE_mf"));
        c
    } else {
        std::process::Command::new(env!("CARGO_BIN_EXE_mf"))
    };
    let out = cmd
        .arg("ls")
        .arg(&db)
        .env("HOME", dir.path())
        .output()
        .unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("read-only"), "{err}");
    assert!(!err.contains("not an mf recording"), "{err}");
}

/// The inherited soft open-file limit (often 1024) let ~1,000 slow clients stop mf from
/// accepting anyone: mf raises it to the hard limit at start.
#[test]
fn the_open_file_limit_is_raised_to_the_hard_limit() {
    let db = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/recordings/v1.db");
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("r.db");
    std::fs::copy(db, &copy).unwrap();
    let mut child = std::process::Command::new("sh")
        .arg("-c")
        .arg("ulimit -Sn 256; exec \"$0\" replay \"$1\" --listen 127.0.0.1:0")
        .arg(env!("CARGO_BIN_EXE_mf"))
        .arg(&copy)
        .env("HOME", dir.path())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stderr, &mut line).unwrap();
    assert!(line.contains("listening on"), "{line}");
    let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
    let _ = child.kill();
    let _ = child.wait();
    let row = limits
        .lines()
        .find(|l| l.starts_with("Max open files"))
        .unwrap()
        .split_whitespace()
        .skip(3)
        .take(2)
        .collect::<Vec<_>>();
    assert_eq!(row[0], row[1], "soft limit raised to the hard one: {row:?}");
    assert_ne!(row[0], "256");
}
