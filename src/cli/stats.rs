//! `mf stats`: per endpoint template, how many exchanges, which statuses, latency
//! percentiles, bytes and failures.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use hdrhistogram::Histogram;
use serde::Serialize;

use super::select::SelectArgs;
use super::util::{self, human_bytes};
use crate::infer::{path_of, TemplateBuilder};
use crate::store::ExchangeSummary;

/// Summarise a recording per endpoint: count, statuses, p50/p95/p99 latency, bytes, errors.
///
/// Endpoints are the templates `mf infer` finds (`/users/{id}`). Two passes over the listing
/// rows, no bodies read; memory depends on the number of endpoints, not of exchanges.
#[derive(Debug, Args)]
pub(crate) struct StatsArgs {
    /// The recording.
    #[arg(value_name = "FILE")]
    pub(crate) recording: PathBuf,

    /// One JSON document instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    #[command(flatten)]
    pub(crate) select: SelectArgs,
}

/// The figures of one endpoint, as `--json` prints them.
#[derive(Debug, Serialize)]
struct EndpointStats {
    method: String,
    template: String,
    count: u64,
    /// Status code (or `error` for no response) → count.
    statuses: BTreeMap<String, u64>,
    /// Milliseconds; absent when no exchange of the endpoint finished.
    latency_ms: Option<Latency>,
    request_bytes: u64,
    response_bytes: u64,
    errors: u64,
}

#[derive(Debug, Serialize)]
struct Latency {
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

/// Running figures of one endpoint: the histogram keeps percentiles in bounded memory
/// (2 significant digits, microseconds up to an hour).
struct Acc {
    count: u64,
    statuses: BTreeMap<String, u64>,
    latency_us: Histogram<u64>,
    request_bytes: u64,
    response_bytes: u64,
    errors: u64,
}

impl Acc {
    fn new() -> anyhow::Result<Acc> {
        Ok(Acc {
            count: 0,
            statuses: BTreeMap::new(),
            latency_us: Histogram::new_with_bounds(1, 3_600_000_000, 2)
                .context("latency histogram")?,
            request_bytes: 0,
            response_bytes: 0,
            errors: 0,
        })
    }

    fn add(&mut self, row: &ExchangeSummary) {
        self.count += 1;
        let status = row.status.map_or("error".to_string(), |s| s.to_string());
        *self.statuses.entry(status).or_default() += 1;
        if let Some(ms) = row.duration_ms {
            self.latency_us
                .saturating_record((ms * 1000.0).max(1.0) as u64);
        }
        self.request_bytes += u64::try_from(row.request_bytes).unwrap_or(0);
        self.response_bytes += u64::try_from(row.response_bytes).unwrap_or(0);
        let grpc_failed =
            row.protocol == "grpc" && row.grpc_status.as_deref().is_some_and(|g| g.trim() != "0");
        if row.error.is_some() || row.status.is_none_or(|s| s >= 500) || grpc_failed {
            self.errors += 1;
        }
    }

    fn finish(self, method: String, template: String) -> EndpointStats {
        let h = &self.latency_us;
        let ms = |us: u64| us as f64 / 1000.0;
        let latency_ms = (!h.is_empty()).then(|| Latency {
            p50: ms(h.value_at_quantile(0.50)),
            p95: ms(h.value_at_quantile(0.95)),
            p99: ms(h.value_at_quantile(0.99)),
            max: ms(h.max()),
        });
        EndpointStats {
            method,
            template,
            count: self.count,
            statuses: self.statuses,
            latency_ms,
            request_bytes: self.request_bytes,
            response_bytes: self.response_bytes,
            errors: self.errors,
        }
    }
}

pub(super) fn run(args: StatsArgs) -> anyhow::Result<u8> {
    let reader = util::open_recording(&args.recording)?;
    let selection = args.select.selection();
    let reading = || format!("reading {}", args.recording.display());
    // Pass 1: the templates, from every selected (method, path).
    let mut builder = TemplateBuilder::default();
    reader
        .for_each_summary(&selection, &mut |row| {
            builder.add(&row.method, path_of(&row.target));
            true
        })
        .with_context(reading)?;
    let templates = builder.finish();
    // Pass 2: figures per template; a path no template takes (none should) keeps its own.
    let mut accs: BTreeMap<(String, String), Acc> = BTreeMap::new();
    let mut failed = None;
    reader
        .for_each_summary(&selection, &mut |row| {
            let path = path_of(&row.target);
            let template = templates
                .find(&row.method, path)
                .and_then(|i| templates.list.get(i))
                .map_or_else(|| path.to_string(), |t| t.path.clone());
            let key = (template, row.method.clone());
            if !accs.contains_key(&key) {
                match Acc::new() {
                    Ok(a) => {
                        accs.insert(key.clone(), a);
                    }
                    Err(e) => {
                        failed = Some(e);
                        return false;
                    }
                }
            }
            if let Some(acc) = accs.get_mut(&key) {
                acc.add(&row);
            }
            true
        })
        .with_context(reading)?;
    if let Some(e) = failed {
        return Err(e);
    }
    let endpoints: Vec<EndpointStats> = accs
        .into_iter()
        .map(|((template, method), acc)| acc.finish(method, template))
        .collect();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if args.json {
        let total: u64 = endpoints.iter().map(|e| e.count).sum();
        let errors: u64 = endpoints.iter().map(|e| e.errors).sum();
        serde_json::to_writer_pretty(
            &mut out,
            &serde_json::json!({ "exchanges": total, "errors": errors, "endpoints": endpoints }),
        )?;
        writeln!(out)?;
    } else {
        print_table(&mut out, &endpoints)?;
    }
    out.flush()?;
    Ok(0)
}

fn print_table(out: &mut impl Write, endpoints: &[EndpointStats]) -> std::io::Result<()> {
    let width = endpoints
        .iter()
        .map(|e| e.template.chars().count())
        .max()
        .unwrap_or(8)
        .clamp(8, 60);
    writeln!(
        out,
        "{:<7}  {:<width$}  {:>7}  {:>6}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  STATUSES",
        "METHOD", "ENDPOINT", "COUNT", "ERRORS", "P50", "P95", "P99", "REQ", "RESP"
    )?;
    for e in endpoints {
        let lat = |f: fn(&Latency) -> f64| {
            e.latency_ms
                .as_ref()
                .map_or("-".to_string(), |l| format!("{:.1}ms", f(l)))
        };
        let statuses: Vec<String> = e.statuses.iter().map(|(s, n)| format!("{s}×{n}")).collect();
        writeln!(
            out,
            "{:<7}  {:<width$}  {:>7}  {:>6}  {:>9}  {:>9}  {:>9}  {:>9}  {:>9}  {}",
            e.method,
            e.template,
            e.count,
            e.errors,
            lat(|l| l.p50),
            lat(|l| l.p95),
            lat(|l| l.p99),
            human_bytes(e.request_bytes),
            human_bytes(e.response_bytes),
            statuses.join(" ")
        )?;
    }
    Ok(())
}
