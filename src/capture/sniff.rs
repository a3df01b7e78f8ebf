//! `mf record --interface`: live capture with libpcap through the same packet decoder and
//! passive engine as `mf import`.

use std::sync::atomic::{AtomicBool, Ordering};

use std::time::{Duration, Instant};

use super::keylog::KeyLogFile;
use super::packet::PacketDecoder;
use super::passive::Engine;

/// Why live capture could not run.
#[derive(Debug, thiserror::Error)]
pub enum SniffError {
    #[error("cannot capture on {interface:?}: {message} (capturing needs root or CAP_NET_RAW)")]
    Open { interface: String, message: String },
    #[error("invalid filter {filter:?}: {message}")]
    Filter { filter: String, message: String },
    #[error("capture failed: {0}")]
    Capture(String),
}

/// What to capture.
#[derive(Clone, Debug)]
pub struct SniffConfig {
    /// Interface name; `any` captures on all of them (Linux cooked link type).
    pub interface: String,
    /// BPF filter expression.
    pub filter: Option<String>,
    pub snaplen: i32,
    /// Key log files followed while capturing (TLS decryption).
    pub keylog: Vec<std::path::PathBuf>,
}

/// Counters of a live capture.
#[derive(Clone, Debug, Default)]
pub struct SniffReport {
    pub packets: u64,
    pub bytes: u64,
    /// Packets libpcap dropped because mf did not read fast enough.
    pub dropped: u64,
    /// Packets the interface or driver dropped.
    pub if_dropped: u64,
}

/// Flows idle longer than this (in capture time) are flushed during a live capture.
const IDLE_NS: i64 = 120_000_000_000;

/// How often the key logs are read again while some connection waits for its keys.
const KEYLOG_POLL: Duration = Duration::from_millis(100);

/// New lines of the key logs into the engine (`last`: the final, unended line too). A key
/// log that cannot be read yet (not created) is tried again later.
fn read_keylogs(files: &mut [KeyLogFile], engine: &mut Engine, last: bool) {
    for f in files {
        match f.read_new() {
            Ok(text) if !text.is_empty() => engine.add_key_log(&text),
            Ok(_) => {}
            Err(e) => {
                tracing::debug!(path = %f.path().display(), error = %e, "key log not readable yet")
            }
        }
        if last {
            let rest = f.take_partial();
            if !rest.is_empty() {
                engine.add_key_log(&rest);
            }
        }
    }
}

/// Captures until `stop` becomes true; `ready` runs once the capture is active.
///
/// # Errors
/// The interface cannot be opened, the filter is invalid, or libpcap fails.
pub fn sniff(
    cfg: &SniffConfig,
    engine: &mut Engine,
    stop: &AtomicBool,
    ready: &mut dyn FnMut(),
) -> Result<SniffReport, SniffError> {
    let open_err = |e: ::pcap::Error| SniffError::Open {
        interface: cfg.interface.clone(),
        message: e.to_string(),
    };
    let mut cap = ::pcap::Capture::from_device(cfg.interface.as_str())
        .map_err(open_err)?
        .promisc(false)
        .snaplen(cfg.snaplen)
        .timeout(100)
        .immediate_mode(true)
        .buffer_size(16 * 1024 * 1024)
        .open()
        .map_err(open_err)?
        // Non-blocking with a short sleep when idle: with immediate mode, Linux libpcap ignores
        // the read timeout and would block in poll() forever on a quiet interface, never
        // seeing the stop flag.
        .setnonblock()
        .map_err(open_err)?;
    if let Some(f) = &cfg.filter {
        cap.filter(f, true).map_err(|e| SniffError::Filter {
            filter: f.clone(),
            message: e.to_string(),
        })?;
    }
    let linktype = u32::try_from(cap.get_datalink().0).unwrap_or(u32::MAX);
    let mut decoder = PacketDecoder::new();
    let mut report = SniffReport::default();
    let mut keylogs: Vec<KeyLogFile> = cfg.keylog.iter().map(|p| KeyLogFile::new(p)).collect();
    if !keylogs.is_empty() {
        engine.hold_tls_for_keys();
    }
    read_keylogs(&mut keylogs, engine, false);
    let mut last_keys = Instant::now();
    ready();
    let mut last_sweep = 0i64;
    while !stop.load(Ordering::Relaxed) {
        let requested = engine.take_key_request();
        if !keylogs.is_empty()
            && (requested
                || last_keys.elapsed() > KEYLOG_POLL
                    && (engine.wants_keys() || last_keys.elapsed() > KEYLOG_POLL * 10))
        {
            read_keylogs(&mut keylogs, engine, false);
            last_keys = Instant::now();
        }
        match cap.next_packet() {
            Ok(p) => {
                let ts_ns = p.header.ts.tv_sec * 1_000_000_000 + p.header.ts.tv_usec * 1000;
                report.packets += 1;
                report.bytes += p.data.len() as u64;
                if let Ok(seg) = decoder.decode(ts_ns, linktype, p.data) {
                    engine.segment(seg);
                }
                if ts_ns - last_sweep > 10_000_000_000 {
                    engine.expire_idle(ts_ns, IDLE_NS);
                    last_sweep = ts_ns;
                }
            }
            Err(::pcap::Error::TimeoutExpired) => {
                std::thread::sleep(std::time::Duration::from_millis(5))
            }
            Err(e) => return Err(SniffError::Capture(e.to_string())),
        }
    }
    read_keylogs(&mut keylogs, engine, true);
    if let Ok(stats) = cap.stats() {
        report.dropped = u64::from(stats.dropped);
        report.if_dropped = u64::from(stats.if_dropped);
    }
    Ok(report)
}
