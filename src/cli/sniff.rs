//! `mf record --interface`: live sniffing into a recording.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};

use super::import::{bpf_expression, stats_warnings, summary_line};
use super::record::RecordArgs;
use super::util;
use crate::capture::passive::{Config, Engine};
use crate::capture::sniff::{self, SniffConfig};
use crate::model::ExchangeSink;
use crate::store::{Meta, Writer, WriterConfig};

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
    let meta = Meta {
        source: format!("sniff {interface}"),
        command_line: util::command_line(),
    };
    let (writer, handle) = Writer::spawn(&args.output, &meta, WriterConfig::default())
        .with_context(|| format!("opening {} for recording", args.output.display()))?;
    let engine_cfg = Config {
        max_body: args.max_body,
        port_hints: args.port.clone(),
        first_connection_id: handle.connection_id_base(),
        ..Config::default()
    };
    let sink: Arc<dyn ExchangeSink> = Arc::new(handle);
    let mut engine = Engine::new(engine_cfg, sink);
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
