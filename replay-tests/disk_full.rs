//! A recording proxy whose disk fills up: the failure is reported once with its cause and
//! path, every request is still answered, storing resumes when space comes back, and the
//! exit code (3) says that exchanges were lost.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::{curl, ls_json, start_python, start_recorder, wait_until};

/// A small tmpfs mounted on a folder, unmounted when dropped (even when the test fails).
struct Tmpfs(PathBuf);

impl Tmpfs {
    /// Mounts a `size` tmpfs on `dir`; `Err` says why it could not (not root, no mount
    /// namespace rights…).
    fn mount(dir: &Path, size: &str) -> Result<Tmpfs, String> {
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .map_err(|e| format!("running mount: {e}"))?;
        if !out.status.success() {
            return Err(String::from_utf8_lossy(&out.stderr).trim().to_string());
        }
        Ok(Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process still holding a file there must not keep the mount alive.
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// `n` bytes no compressor can shrink, different for every `seed` (so that the recording's
/// content-addressed blobs cannot share them).
fn noise(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn count(haystack: &str, needle: &str) -> usize {
    haystack.matches(needle).count()
}

#[test]
fn a_full_disk_is_reported_once_forwarding_goes_on_and_storing_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let mnt = dir.path().join("mnt");
    std::fs::create_dir(&mnt).unwrap();
    let _mount = match Tmpfs::mount(&mnt, "2m") {
        Ok(m) => m,
        Err(why) => {
            eprintln!("skipping: cannot mount a tmpfs ({why})");
            return;
        }
    };
    // Most of the 2 MiB is taken by a file the test frees later.
    let filler = mnt.join("filler");
    std::fs::write(&filler, vec![0u8; 1300 << 10]).unwrap();
    let db = mnt.join("rec.db");
    let body_file = dir.path().join("body");

    let upstream = start_python("http_upstream.py", &[]);
    let mut rec = start_recorder(&upstream.url(), &db, &[]);
    let upload = |seed: u64| {
        std::fs::write(&body_file, noise(seed, 64 << 10)).unwrap();
        let r = curl(&[
            "--data-binary",
            &format!("@{}", body_file.display()),
            &format!("{}/upload", rec.url()),
        ]);
        assert_eq!(r.status(), 201, "upload {seed} was not answered: {r:?}");
    };

    // Upload until the recording cannot be written; every upload is answered meanwhile.
    let report = "cannot write to the recording";
    let mut sent = 0u64;
    while count(&rec.stderr(), report) == 0 {
        sent += 1;
        assert!(
            sent < 200,
            "no disk-full report after {sent} uploads:\n{}",
            rec.stderr()
        );
        upload(sent);
        std::thread::sleep(Duration::from_millis(20));
    }
    // More traffic while the disk is full: still answered, still one report.
    for i in 0..20 {
        upload(1000 + i);
    }
    let stderr = rec.stderr();
    assert_eq!(count(&stderr, report), 1, "{stderr}");
    assert_eq!(count(&stderr, "recording already closed"), 0, "{stderr}");
    let line = stderr.lines().find(|l| l.contains(report)).unwrap();
    assert!(line.contains("full"), "the cause is named: {line}");
    assert!(
        line.contains(&db.display().to_string()),
        "the path is named: {line}"
    );

    // Space comes back: storing resumes, and says so.
    std::fs::remove_file(&filler).unwrap();
    let resumed = wait_until(Duration::from_secs(20), || {
        let r = curl(&[&format!("{}/json?probe=1", rec.url())]);
        assert_eq!(r.status(), 200);
        rec.stderr().contains("resumed after")
    });
    assert!(resumed, "storing never resumed:\n{}", rec.stderr());
    for i in 0..3 {
        let r = curl(&[&format!("{}/json?after={i}", rec.url())]);
        assert_eq!(r.status(), 200);
    }

    let status = rec.interrupt();
    let stderr = rec.stderr();
    assert_eq!(
        status.code(),
        Some(3),
        "exit code 3 when exchanges were lost:\n{stderr}"
    );
    assert!(stderr.contains("were not stored"), "{stderr}");
    assert_eq!(count(&stderr, report), 1, "{stderr}");

    let targets: Vec<String> = ls_json(&db)
        .iter()
        .filter_map(|row| row["url"].as_str().map(str::to_string))
        .collect();
    for i in 0..3 {
        let t = format!("/json?after={i}");
        assert!(
            targets.iter().any(|u| u.ends_with(&t)),
            "{t} stored after recovery: {targets:?}"
        );
    }
    assert!(
        (targets.len() as u64) < sent + 20,
        "uploads during the outage were lost, not stored: {}",
        targets.len()
    );
}
