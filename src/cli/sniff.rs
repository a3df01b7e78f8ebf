//! `mf record --interface`: live sniffing into a recording.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{bail, Context};

use super::import::{bpf_expression, stats_warnings, summary_line};
use super::record::RecordArgs;
use crate::capture::sniff::{self, SniffConfig};

/// Set by SIGINT/SIGTERM; the capture loop polls it between packets (libpcap wakes every
/// 100 ms), which keeps the handler async-signal-safe: it only stores an atomic.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub(super) fn run(args: RecordArgs, interface: String) -> anyhow::Result<u8> {
    let filter = bpf_expression(args.filter.as_deref(), &args.port);
    let cfg = SniffConfig {
        interface: interface.clone(),
        filter,
        snaplen: 262_144,
    };
    let (writer, mut engine) = super::import::open_passive(
        &args.output,
        format!("sniff {interface}"),
        args.max_body,
        &args.port,
    )?;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, on_signal as *const () as libc::sighandler_t);
        libc::signal(libc::SIGTERM, on_signal as *const () as libc::sighandler_t);
    }
    let started = Instant::now();
    let output = args.output.display().to_string();
    let mut ready =
        || eprintln!("mf: capturing on {interface}, recording to {output} (Ctrl-C to stop)");
    let result = sniff::sniff(&cfg, &mut engine, &STOP, &mut ready);
    engine.finish();
    let stats = engine.stats.clone();
    drop(engine);
    let summary = writer.finish().context("flushing the recording")?;
    let report = result.with_context(|| format!("recording from interface {interface}"))?;
    eprintln!(
        "{}",
        summary_line(
            report.packets,
            report.bytes,
            &stats,
            started.elapsed(),
            &summary.path.display().to_string()
        )
    );
    eprintln!(
        "mf: libpcap dropped {} packets ({} dropped by the interface)",
        report.dropped, report.if_dropped
    );
    if let Some(w) = stats_warnings(&stats) {
        eprintln!("mf: warning: {w}");
    }
    if summary.failed > 0 {
        bail!(
            "{} exchanges could not be written (see the log above)",
            summary.failed
        );
    }
    Ok(0)
}
