//! `mf record --interface`: live sniffing into a recording.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;

use super::import::{bpf_expression, stats_warnings, summary_line, tls_line};
use crate::capture::sniff::{self, SniffConfig};

/// What `mf record --interface` was asked for.
pub(super) struct SniffArgs {
    pub interface: String,
    pub output: PathBuf,
    pub filter: Option<String>,
    pub port: Vec<u16>,
    pub max_body: usize,
    /// Key log files followed for TLS decryption.
    pub keylog: Vec<PathBuf>,
    /// What is stored.
    pub policy: super::policy::PolicyArgs,
}

/// Sets `stop` on SIGINT or SIGTERM, from a signal-handling thread with its own small tokio
/// runtime; the capture loop polls the flag between packets (libpcap wakes every 100 ms).
/// Returns once the handlers are installed, so that no signal is missed after it.
fn stop_on_signal(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("mf-signals".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_io()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            runtime.block_on(async move {
                use tokio::signal::unix::{signal, SignalKind};
                let (mut int, mut term) = match (
                    signal(SignalKind::interrupt()),
                    signal(SignalKind::terminate()),
                ) {
                    (Ok(i), Ok(t)) => (i, t),
                    (Err(e), _) | (_, Err(e)) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(()));
                tokio::select! {
                    _ = int.recv() => {}
                    _ = term.recv() => {}
                }
                stop.store(true, Ordering::SeqCst);
            });
        })
        .context("starting the signal handler")?;
    ready_rx
        .recv()
        .context("the signal handler did not start")?
        .context("installing the signal handlers")
}

pub(super) fn run(args: SniffArgs) -> anyhow::Result<u8> {
    let interface = args.interface.clone();
    let filter = bpf_expression(args.filter.as_deref(), &args.port);
    let cfg = SniffConfig {
        interface: interface.clone(),
        filter,
        snaplen: 262_144,
        keylog: args.keylog.clone(),
    };
    let (writer, mut engine, policy) = super::import::open_passive(
        &args.output,
        format!("sniff {interface}"),
        args.max_body,
        &args.port,
        &args.policy,
        // Live: a full queue drops (and counts) rather than stalling the capture loop.
        crate::store::WriterConfig::default(),
    )?;
    let stop = Arc::new(AtomicBool::new(false));
    stop_on_signal(stop.clone())?;
    let started = Instant::now();
    let output = args.output.display().to_string();
    let warning = args.policy.start_line_warning();
    let mut ready = || {
        eprintln!("mf: capturing on {interface}, recording to {output} (Ctrl-C to stop){warning}")
    };
    let result = sniff::sniff(&cfg, &mut engine, &stop, &mut ready);
    engine.finish();
    let stats = engine.stats.clone();
    drop(engine);
    policy.finish();
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
    eprintln!("mf: capture policy: {}", policy.summary());
    eprintln!(
        "mf: libpcap dropped {} packets ({} dropped by the interface)",
        report.dropped, report.if_dropped
    );
    if let Some(line) = tls_line(&stats) {
        eprintln!("{line}");
    }
    if let Some(w) = stats_warnings(&stats) {
        eprintln!("mf: warning: {w}");
    }
    Ok(super::util::not_stored_exit(&summary))
}
