//! Streamed bodies keep their timing: Server-Sent Events and slow chunked downloads recorded
//! through `mf record --proxy` reach a replay's client at the recorded offsets.
//!
//! Every comparison is against the offsets the recording holds (`mf show --json`), measured
//! by the client from the moment it has the response head, never against the servers' sleeps.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::common::*;

/// How far a replayed piece may arrive from its recorded offset (the bound).
const TOLERANCE_MS: f64 = 50.0;

/// Records `paths` of the Python server `script` through the proxy, each read as a stream
/// by `stream_client.py` in `mode`.
fn record(script: &str, paths: &[&str], mode: &str) -> (tempfile::TempDir, PathBuf) {
    let upstream = start_python(script, &[]);
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    let mut rec = start_recorder(&upstream.url(), &db, &[]);
    for path in paths {
        let got = stream_client(&format!("{}{path}", rec.url()), mode);
        assert_eq!(got["status"], 200, "{path} through the proxy: {got}");
    }
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    (dir, db)
}

/// `stream_client.py URL MODE`'s JSON line.
fn stream_client(url: &str, mode: &str) -> serde_json::Value {
    let out = Command::new("python3")
        .arg(tests_dir().join("servers").join("stream_client.py"))
        .args([url, mode])
        .env("NO_PROXY", "*")
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .stdin(Stdio::null())
        .output()
        .expect("running stream_client.py");
    assert!(
        out.status.success(),
        "stream_client.py {url}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("stream_client.py prints JSON")
}

/// `mf show DB ID --json` of the exchange whose URL ends with `suffix`.
fn show(db: &Path, suffix: &str) -> serde_json::Value {
    let rows = ls_json(db);
    let id = rows
        .iter()
        .find(|r| r["url"].as_str().is_some_and(|u| u.ends_with(suffix)))
        .unwrap_or_else(|| panic!("no exchange for {suffix} in {rows:?}"))["id"]
        .to_string();
    let out = mf_run(&["show", db.to_str().unwrap(), &id, "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("mf show --json")
}

fn first_byte_ns(ex: &serde_json::Value) -> f64 {
    ex["timings"]["response_first_byte_ns"]
        .as_f64()
        .expect("a recorded first byte")
}

/// Recorded offsets of the events of an SSE exchange, in ms after its first response byte.
fn recorded_events(ex: &serde_json::Value) -> Vec<f64> {
    let base = first_byte_ns(ex);
    ex["response"]["body"]["events"]
        .as_array()
        .expect("an event stream lists its events")
        .iter()
        .map(|e| (e["offset_ns"].as_f64().unwrap() - base) / 1e6)
        .collect()
}

/// Recorded chunks of a body: (ms after the first response byte, bytes up to its end).
fn recorded_chunks(ex: &serde_json::Value) -> Vec<(f64, u64)> {
    let base = first_byte_ns(ex);
    let mut total = 0;
    ex["response"]["body"]["chunks"]
        .as_array()
        .expect("a chunk table")
        .iter()
        .map(|c| {
            total += c["len"].as_u64().unwrap();
            ((c["offset_ns"].as_f64().unwrap() - base) / 1e6, total)
        })
        .collect()
}

/// When each recorded chunk was complete at the client: the first read that had its bytes.
fn arrivals(reads: &[(f64, u64)], chunks: &[(f64, u64)]) -> Vec<f64> {
    chunks
        .iter()
        .map(|(_, end)| {
            reads
                .iter()
                .find(|(_, total)| total >= end)
                .unwrap_or_else(|| panic!("the client never got {end} bytes: {reads:?}"))
                .0
        })
        .collect()
}

/// When each event of a `stream_client.py … sse` run was complete.
fn event_times(got: &serde_json::Value) -> Vec<f64> {
    got["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| e["at_ms"].as_f64().unwrap())
        .collect()
}

fn reads_of(got: &serde_json::Value) -> Vec<(f64, u64)> {
    got["reads"]
        .as_array()
        .expect("reads")
        .iter()
        .map(|r| (r[0].as_f64().unwrap(), r[1].as_u64().unwrap()))
        .collect()
}

/// Attempts at a timing comparison: the machine running the suite is shared, and one
/// scheduling stall of a client or the replay can exceed the bound on its own. A real pacing
/// bug misses on every attempt.
const ATTEMPTS: usize = 3;

/// Asserts that the offsets `measure` gets from a fresh request to the replay are all within
/// [`TOLERANCE_MS`] of the `recorded` ones, in one of [`ATTEMPTS`]; returns the largest error
/// of the attempt that passed.
fn assert_close(what: &str, recorded: &[f64], mut measure: impl FnMut() -> Vec<f64>) -> f64 {
    let mut misses = Vec::new();
    for _ in 0..ATTEMPTS {
        let replayed = measure();
        assert_eq!(
            recorded.len(),
            replayed.len(),
            "{what}: {recorded:?} vs {replayed:?}"
        );
        let worst = recorded
            .iter()
            .zip(&replayed)
            .map(|(r, p)| (r - p).abs())
            .fold(0.0, f64::max);
        if worst <= TOLERANCE_MS {
            eprintln!("{what}: worst offset error {worst:.2} ms ({replayed:?} vs {recorded:?})");
            return worst;
        }
        misses.push(format!("{replayed:?} (worst {worst:.1} ms)"));
    }
    panic!("{what}: recorded at {recorded:?} ms, replayed at {misses:?}");
}

/// Five events 200 ms apart keep their spacing in a default replay, and arrive at once with
/// `--latency none`.
#[test]
fn sse_events_replay_at_their_recorded_offsets() {
    require("python3");
    let (_dir, db) = record("sse_server.py", &["/events?n=5&interval_ms=200"], "sse");
    let ex = show(&db, "/events?n=5&interval_ms=200");
    let recorded = recorded_events(&ex);
    assert_eq!(recorded.len(), 5, "{ex}");
    assert!(
        recorded[4] >= 700.0,
        "the recording kept the spacing: {recorded:?}"
    );

    // `mf show` prints one line per event, after its offset.
    let text = mf_run(&["show", db.to_str().unwrap(), &ex["id"].to_string()]);
    let text = String::from_utf8_lossy(&text.stdout);
    let lines: Vec<&str> = text.lines().filter(|l| l.contains("| data: ")).collect();
    assert_eq!(lines.len(), 5, "{text}");
    for (i, line) in lines.iter().enumerate() {
        let offset = line
            .trim_start()
            .strip_prefix('+')
            .and_then(|l| l.split("ms").next());
        assert!(offset.is_some_and(|o| o.parse::<f64>().is_ok()), "{line}");
        assert!(
            line.ends_with(&format!("id: {i} | event: tick | data: {{\"n\": {i}}}")),
            "{line}"
        );
    }

    let replay = start_replay(&db, &[]);
    let url = format!("{}/events?n=5&interval_ms=200", replay.url());
    assert_close("SSE, default latency", &recorded, || {
        let got = stream_client(&url, "sse");
        let events = got["events"].as_array().expect("events");
        let texts: Vec<&str> = events.iter().map(|e| e["text"].as_str().unwrap()).collect();
        assert_eq!(texts[4], "id: 4\nevent: tick\ndata: {\"n\": 4}");
        event_times(&got)
    });

    // The same stream to an HTTP/2 client: one DATA frame per event, at the same offsets.
    require("curl");
    let chunks = recorded_chunks(&ex);
    let recorded_chunk_offsets: Vec<f64> = chunks.iter().map(|c| c.0).collect();
    assert_close(
        "SSE over HTTP/2, default latency",
        &recorded_chunk_offsets,
        || arrivals(&curl_h2_reads(&url), &chunks),
    );

    let fast = start_replay(&db, &["--latency", "none"]);
    let at = event_times(&stream_client(
        &format!("{}/events?n=5&interval_ms=200", fast.url()),
        "sse",
    ));
    assert_eq!(at.len(), 5);
    assert!(
        at[4] < recorded[4] / 4.0,
        "--latency none sends every event at once: {at:?}"
    );
}

/// A chunked download (and one with a Content-Length) with pieces 100 ms apart, replayed
/// with `--latency recorded` over HTTP/1.1, keeps its pace; without it, it is sent at once.
#[test]
fn slow_downloads_replay_at_their_recorded_pace_over_http1() {
    require("python3");
    let chunked = "/download?chunks=5&interval_ms=100&size=1000";
    let sized = "/download?chunks=5&interval_ms=100&size=1000&length=1";
    let (_dir, db) = record("slow_download.py", &[chunked, sized], "bytes");
    let replay = start_replay(&db, &["--latency", "recorded"]);
    for path in [chunked, sized] {
        let chunks = recorded_chunks(&show(&db, path));
        assert_eq!(chunks.len(), 5, "{path}: {chunks:?}");
        assert!(chunks[4].0 >= 350.0, "{path}: {chunks:?}");
        let recorded: Vec<f64> = chunks.iter().map(|c| c.0).collect();
        assert_close(&format!("HTTP/1.1 {path}"), &recorded, || {
            let reads = reads_of(&stream_client(&format!("{}{path}", replay.url()), "bytes"));
            assert_eq!(reads.last().map(|r| r.1), Some(5000), "{path}: {reads:?}");
            arrivals(&reads, &chunks)
        });
    }
    // The default replays a download (not an event stream) at once.
    let default = start_replay(&db, &[]);
    let reads = reads_of(&stream_client(
        &format!("{}{chunked}", default.url()),
        "bytes",
    ));
    assert!(reads.last().is_some_and(|r| r.0 < 100.0), "{reads:?}");
}

/// The same download over HTTP/2 (curl with prior knowledge): DATA frames at the recorded
/// offsets, also scaled by `--latency scale:2`.
#[test]
fn slow_downloads_replay_at_their_recorded_pace_over_http2() {
    require("python3");
    require("curl");
    let path = "/download?chunks=5&interval_ms=100&size=1000";
    let (_dir, db) = record("slow_download.py", &[path], "bytes");
    let chunks = recorded_chunks(&show(&db, path));
    assert_eq!(chunks.len(), 5, "{chunks:?}");
    for (latency, factor) in [("recorded", 1.0), ("scale:2", 2.0)] {
        let replay = start_replay(&db, &["--latency", latency]);
        let recorded: Vec<f64> = chunks.iter().map(|c| c.0 * factor).collect();
        assert_close(&format!("HTTP/2 --latency {latency}"), &recorded, || {
            let reads = curl_h2_reads(&format!("{}{path}", replay.url()));
            assert_eq!(reads.last().map(|r| r.1), Some(5000), "{reads:?}");
            arrivals(&reads, &chunks)
        });
    }
}

/// Fetches `url` over h2c with curl and returns, from its timed trace, when DATA payload
/// arrived: (ms after the response head, bytes so far).
fn curl_h2_reads(url: &str) -> Vec<(f64, u64)> {
    let out = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "--max-time", "30"])
        .args([
            "--http2-prior-knowledge",
            "--trace-time",
            "--trace-ascii",
            "-",
        ])
        .args(["-o", "/dev/null", url])
        .stdin(Stdio::null())
        .output()
        .expect("running curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let trace = String::from_utf8_lossy(&out.stdout);
    assert!(trace.contains("HTTP/2 200"), "{trace}");
    // Lines look like `13:11:28.806608 <= Recv data, 34 bytes (0x22)`.
    let secs = |line: &str| -> Option<f64> {
        let stamp = line.split_whitespace().next()?;
        let mut parts = stamp.split(':');
        let (h, m, s) = (parts.next()?, parts.next()?, parts.next()?);
        Some(
            h.parse::<f64>().ok()? * 3600.0
                + m.parse::<f64>().ok()? * 60.0
                + s.parse::<f64>().ok()?,
        )
    };
    let mut head_at = None;
    let mut reads = Vec::new();
    let mut total = 0;
    for line in trace.lines() {
        let Some(at) = secs(line) else { continue };
        if line.contains("<= Recv header") && reads.is_empty() {
            head_at = Some(at);
        } else if let Some(rest) = line.split("<= Recv data, ").nth(1) {
            let n: u64 = rest
                .split(' ')
                .next()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let head = head_at.expect("the head comes before the data");
            // A trace crossing midnight starts its clock over.
            let since = if at < head {
                at + 86_400.0 - head
            } else {
                at - head
            };
            total += n;
            reads.push((since * 1000.0, total));
        }
    }
    reads
}
