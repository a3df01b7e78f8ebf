//! `mf import`: rebuild exchanges from pcap/pcapng files into a recording.

use std::fs::File;
use std::io::{BufReader, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::policy::PolicyArgs;
use super::util::{self, human_bytes, parse_size};
use crate::capture::import::{self, Filter, ImportReport};
use crate::capture::passive::{Config, Engine, Stats};
use crate::capture::pcap;
use crate::capture::policy::PolicySink;
use crate::model::ExchangeSink;
use crate::store::{Meta, Writer, WriterConfig};

/// Import exchanges from packet captures (pcap or pcapng), HAR files or mitmproxy flows.
///
/// HAR 1.2 files (browser dev tools, Charles, Fiddler exports) and mitmproxy flow files
/// (`mitmdump -w`) are told apart by content and read whole first: a broken one is refused
/// with where it breaks, and nothing is written. In packet captures, every TCP flow is reassembled and decoded by content (HTTP/1.x, HTTP/2 with gRPC,
/// WebSocket), whatever its port. The result is a recording like `mf record` makes:
/// `mf ls`, `mf show` and `mf replay` work on it. Problems in the capture (missing segments,
/// cut packets, unknown link types) are counted and reported; they never stop the import.
/// Exit status: 0 when everything was stored, 2 on an error, 3 when some exchanges could not
/// be written (disk full, say).
#[derive(Debug, Args)]
#[command(
    after_help = "Example:\n  tcpdump -i lo -w api.pcap 'tcp port 3000'\n  mf import api.pcap -o api.db"
)]
pub struct ImportArgs {
    /// Files to read: pcap, pcapng, HAR or mitmproxy flow files.
    #[arg(required = true, value_name = "FILE")]
    pub files: Vec<PathBuf>,

    /// Recording file to write (appended to when it exists).
    #[arg(
        short = 'o',
        long = "output",
        value_name = "FILE",
        default_value = "recording.db"
    )]
    pub output: PathBuf,

    /// Only packets matching this BPF expression (tcpdump syntax).
    #[arg(long, value_name = "BPF")]
    pub filter: Option<String>,

    /// Only traffic to or from this TCP port (repeatable; combined with --filter). VXLAN and
    /// GENEVE tunnels and IP fragments pass whole: their inner ports are not filtered.
    #[arg(long, value_name = "N")]
    pub port: Vec<u16>,

    /// Bodies larger than this are stored truncated (and flagged).
    #[arg(long, value_name = "SIZE", default_value = "64MiB", value_parser = parse_size)]
    pub max_body: usize,

    /// TLS key log (the NSS format `SSLKEYLOGFILE` writes; repeatable): TLS 1.2 and 1.3
    /// connections with their keys in it are decrypted and decoded. Keys embedded in a
    /// pcapng (Decryption Secrets Blocks) are used without it. The secrets are never stored.
    #[arg(long, value_name = "FILE")]
    pub keylog: Vec<PathBuf>,

    #[command(flatten)]
    pub policy: PolicyArgs,
}

/// What `--port` lets through beside the port's TCP segments: VXLAN and GENEVE datagrams
/// (the inner ports are out of a BPF program's sight) and IP fragments other than the first
/// (they have no TCP header to match), so that mirrored and fragmented traffic survives.
const PORT_FILTER_EXTRA: &str =
    "udp port 4789 or udp port 6081 or (ip[6:2] & 0x1fff != 0) or (ip6 and ip6[6] == 44)";

/// The BPF expression for `--filter` and `--port`.
pub(crate) fn bpf_expression(filter: Option<&str>, ports: &[u16]) -> Option<String> {
    let ports = (!ports.is_empty()).then(|| {
        let mut any: Vec<String> = ports.iter().map(|p| format!("tcp port {p}")).collect();
        any.push(PORT_FILTER_EXTRA.to_string());
        any.join(" or ")
    });
    match (filter, ports) {
        (Some(f), Some(p)) => Some(format!("({f}) and ({p})")),
        (Some(f), None) => Some(f.to_string()),
        (None, Some(p)) => Some(p),
        (None, None) => None,
    }
}

pub(super) fn run(args: ImportArgs) -> anyhow::Result<u8> {
    args.policy.config().check()?;
    // Other tools' recordings are parsed whole first: a broken one stops the import before
    // the recording is touched.
    let (foreign, files) = super::import_foreign::split(&args.files)?;
    if !foreign.is_empty() {
        super::import_foreign::write(&args.output, foreign, &args.policy)?;
        if files.is_empty() {
            return Ok(0);
        }
    }
    // Refuse what is not a capture before creating the recording.
    let mut total_bytes = 0u64;
    for path in &files {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        total_bytes += file.metadata().map(|m| m.len()).unwrap_or(0);
        if let Err(e) = pcap::Reader::new(BufReader::new(file)) {
            bail!("importing {}: {e}", path.display());
        }
    }
    let expression = bpf_expression(args.filter.as_deref(), &args.port);
    let mut filter = match &expression {
        Some(e) => Some(Filter::new(e)?),
        None => None,
    };
    let names: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    let (writer, mut engine, policy) = open_passive(
        &args.output,
        format!("import {}", names.join(" ")),
        args.max_body,
        &args.port,
        &args.policy,
        // Offline: the import waits for the disk rather than holding the capture in memory.
        WriterConfig::blocking(),
    )?;
    if args.policy.keep_secrets {
        eprintln!("mf: {}", super::policy::KEEP_SECRETS_WARNING);
    }

    for path in &args.keylog {
        let text =
            std::fs::read(path).with_context(|| format!("reading key log {}", path.display()))?;
        engine.add_key_log(&text);
    }

    let bar = progress_bar(total_bytes);
    let started = Instant::now();
    let mut done_before = 0u64;
    let mut reports = Vec::new();
    for path in &files {
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let mut progress = |read: u64, engine: &Engine| {
            if let Some(bar) = &bar {
                bar.set_position(done_before + read);
                let secs = started.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!(
                    "{} exchanges ({:.0}/s)",
                    engine.stats.exchanges,
                    engine.stats.exchanges as f64 / secs
                ));
            }
        };
        let result = import::import(
            BufReader::with_capacity(1 << 20, file),
            &mut engine,
            filter.as_mut(),
            &mut progress,
        );
        engine.finish();
        let report = match result {
            Ok(r) => r,
            Err(e) => {
                drop(engine);
                policy.finish();
                let _ = writer.finish();
                return Err(e).with_context(|| format!("importing {}", path.display()));
            }
        };
        done_before += std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        reports.push((path.display().to_string(), report));
    }
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let stats = engine.stats.clone();
    drop(engine);
    policy.finish();
    let summary = writer.finish().context("flushing the recording")?;
    let elapsed = started.elapsed();
    for (name, r) in &reports {
        for line in file_warnings(name, r) {
            eprintln!("mf: warning: {line}");
        }
    }
    let packets: u64 = reports.iter().map(|(_, r)| r.packets).sum();
    let bytes: u64 = reports.iter().map(|(_, r)| r.bytes).sum();
    eprintln!(
        "{}",
        summary_line(
            packets,
            bytes,
            &stats,
            elapsed,
            &summary.path.display().to_string()
        )
    );
    eprintln!("mf: capture policy: {}", policy.summary());
    for (name, r) in reports.iter().filter(|(_, r)| r.decapsulated > 0) {
        eprintln!(
            "mf: {name}: {} packets taken out of VXLAN/GENEVE encapsulation",
            r.decapsulated
        );
    }
    if let Some(line) = tls_line(&stats) {
        eprintln!("{line}");
    }
    if let Some(w) = stats_warnings(&stats) {
        eprintln!("mf: warning: {w}");
    }
    Ok(super::util::not_stored_exit(&summary))
}

fn progress_bar(total: u64) -> Option<ProgressBar> {
    if !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    let style = ProgressStyle::with_template(
        "{bar:30} {bytes}/{total_bytes} {binary_bytes_per_sec} {msg} ETA {eta}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar());
    bar.set_style(style);
    bar.enable_steady_tick(Duration::from_millis(200));
    Some(bar)
}

/// The one-line summary shared by import and live capture.
pub(crate) fn summary_line(
    packets: u64,
    bytes: u64,
    stats: &Stats,
    elapsed: Duration,
    path: &str,
) -> String {
    let secs = elapsed.as_secs_f64().max(0.000_001);
    format!(
        "mf: {} exchanges ({} incomplete) from {} packets ({}) on {} TCP flows in {:.2}s ({:.1} MB/s) to {}",
        stats.exchanges,
        stats.incomplete,
        packets,
        human_bytes(bytes),
        stats.flows,
        secs,
        bytes as f64 / 1e6 / secs,
        path
    )
}

/// What TLS decryption did, one line (None when there was no TLS and no key log).
pub(crate) fn tls_line(s: &Stats) -> Option<String> {
    if s.tls_flows == 0 && s.keylog_sessions == 0 && s.keylog_garbage_lines == 0 {
        return None;
    }
    let without: u64 = s.tls_without_keys.values().sum();
    let mut line = format!(
        "mf: TLS: {} connections, {} decrypted, {} without keys",
        s.tls_flows, s.tls_decrypted, without
    );
    if without > 0 {
        let names: Vec<String> = s
            .tls_without_keys
            .iter()
            .take(8)
            .map(|(sni, n)| {
                if *n > 1 {
                    format!("{sni} ×{n}")
                } else {
                    sni.clone()
                }
            })
            .collect();
        let more = if s.tls_without_keys.len() > 8 {
            ", …"
        } else {
            ""
        };
        line.push_str(&format!(" (SNI: {}{more})", names.join(", ")));
    }
    let mut add = |n: u64, what: &str| {
        if n > 0 {
            line.push_str(&format!(", {n} {what}"));
        }
    };
    add(s.tls_unsupported, "with an unsupported suite");
    add(s.tls_broken, "with a broken record layer");
    add(s.tls_auth_failures, "records failed authentication");
    line.push_str(&format!(
        "; key log: {} sessions, {} matched, {} other sessions' keys, {} garbage lines",
        s.keylog_sessions,
        s.keylog_sessions_used,
        s.keylog_sessions.saturating_sub(s.keylog_sessions_used),
        s.keylog_garbage_lines
    ));
    Some(line)
}

/// Counted problems of the decoding, one line (None when there were none).
pub(crate) fn stats_warnings(s: &Stats) -> Option<String> {
    let mut parts = Vec::new();
    let mut add = |n: u64, what: &str| {
        if n > 0 {
            parts.push(format!("{n} {what}"));
        }
    };
    add(s.holes, "holes (bytes missing from the capture)");
    add(s.cut_segments, "packets cut by the snaplen");
    add(s.evicted_flows, "flows evicted to bound memory");
    add(s.unrecognised_flows, "flows not HTTP");
    add(s.decode_errors, "flows with undecodable bytes");
    add(s.orphan_responses, "responses without their request");
    add(
        s.lost_responses,
        "requests whose response was lost to a hole",
    );
    add(s.body_holes, "bodies kept with a hole (zeros in its place)");
    add(s.resyncs, "resynchronisations after a hole");
    add(
        s.opaque_tunnels,
        "CONNECT tunnels carrying TLS (not decoded)",
    );
    add(s.unanswered_tunnels, "CONNECT requests never answered");
    (!parts.is_empty()).then(|| parts.join(", "))
}

fn file_warnings(name: &str, r: &ImportReport) -> Vec<String> {
    let mut out = Vec::new();
    if r.truncated {
        out.push(format!(
            "{name} is truncated: imported everything before the cut"
        ));
    }
    if let Some(c) = &r.corrupt {
        out.push(format!(
            "{name} is corrupt ({c}): imported everything before it"
        ));
    }
    if r.malformed > 0 {
        out.push(format!("{name}: {} malformed packets skipped", r.malformed));
    }
    for (lt, n) in &r.unknown_linktypes {
        out.push(format!(
            "{name}: {n} packets of unknown link type {lt} skipped"
        ));
    }
    if r.unknown_interface > 0 {
        out.push(format!(
            "{name}: {} packets on undescribed interfaces skipped",
            r.unknown_interface
        ));
    }
    if r.other_secrets_blocks > 0 {
        out.push(format!(
            "{name}: {} decryption secrets blocks not TLS key logs, or malformed, skipped",
            r.other_secrets_blocks
        ));
    }
    if r.fragments_dropped > 0 {
        out.push(format!(
            "{name}: {} fragmented IP datagrams incomplete",
            r.fragments_dropped
        ));
    }
    out
}

/// Opens (or appends to) the recording at `output` and a passive engine feeding it through
/// the capture policy: shared by `mf import` and `mf record --interface`. Call
/// [`PolicySink::finish`] after the engine's last exchange and before closing the writer.
pub(super) fn open_passive(
    output: &std::path::Path,
    source: String,
    max_body: usize,
    port_hints: &[u16],
    policy: &PolicyArgs,
    writer_config: WriterConfig,
) -> anyhow::Result<(Writer, Engine, Arc<PolicySink>)> {
    let meta = Meta {
        source,
        command_line: util::command_line(),
        ..Meta::default()
    };
    let super::policy::Recording {
        writer,
        sink: policy,
        first_connection,
    } = policy.open_recording(output, &meta, writer_config)?;
    let cfg = Config {
        max_body,
        port_hints: port_hints.to_vec(),
        first_connection_id: first_connection,
        ..Config::default()
    };
    let sink: Arc<dyn ExchangeSink> = policy.clone();
    Ok((writer, Engine::new(cfg, sink), policy))
}
