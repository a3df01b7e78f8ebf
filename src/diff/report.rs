//! The run's report: the stdout summary with a latency table, the `--report` JSON and
//! `--junit` XML files, and the exit code.
//!
//! Memory stays flat however long the run: each entry is written once, as a JSON line, to
//! an unnamed temporary file (gone when the report is dropped, even after a crash), and only
//! counters, a few first differences per endpoint and latency histograms stay in memory. The
//! files are written from that spool at the end.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::Path;
use std::sync::Mutex;

use serde_json::{json, Value};

use super::gate::Figures;
use super::histogram::Histogram;
use super::junit;
use super::{Entry, Gate, Outcome};
use crate::vocab;

/// Endpoints tracked one by one; the rest share one line of the tables.
const MAX_ENDPOINTS: usize = 1_000;
/// First differences shown per endpoint.
const FIRST_PER_ENDPOINT: usize = 3;
/// Distinct noise rules counted.
const MAX_RULES: usize = 100;
/// The line that holds the endpoints beyond [`MAX_ENDPOINTS`].
const OTHER_ENDPOINTS: &str = "(other endpoints)";

#[derive(Debug, Default)]
struct EndpointAgg {
    total: u64,
    matched: u64,
    differing: u64,
    failed: u64,
    /// `GET /users/3  $.name: "user-3" → "User Three"`.
    first: Vec<String>,
    recorded: Histogram,
    now: Histogram,
}

/// Entries of a run and their aggregates.
#[derive(Debug, Default)]
pub(crate) struct Report {
    total: u64,
    matched: u64,
    differing: u64,
    failed: u64,
    endpoints: BTreeMap<String, EndpointAgg>,
    now_all: Histogram,
    /// How many values each noise rule ignored.
    rules: BTreeMap<String, u64>,
    /// The entries as JSON lines; `Err` keeps why the spool could not be written.
    spool: Mutex<Option<Result<BufWriter<File>, String>>>,
    /// No file is written from this report: the entries are not spooled (serialising each
    /// one was ~9% of a `replay --to --speed max` profile, for a file nobody asked for).
    no_entries: bool,
}

impl Figures for Report {
    fn total(&self) -> u64 {
        self.total
    }
    fn matched(&self) -> u64 {
        self.matched
    }
    fn differing(&self) -> u64 {
        self.differing
    }
    fn failed(&self) -> u64 {
        self.failed
    }
    fn latency_now(&self, p: f64) -> Option<u64> {
        self.now_all.percentile(p)
    }
}

fn ms(ns: Option<u64>) -> Value {
    ns.map_or(Value::Null, |n| json!((n as f64 / 1e3).round() / 1e3))
}

/// One entry as its JSON record (the `--report` file's `entries` are these).
fn record(entry: &Entry, endpoint: &str) -> Value {
    let mut v = json!({
        "id": entry.id,
        "method": entry.method,
        "path": entry.path,
        "endpoint": endpoint,
        "latency_recorded_ms": ms(entry.latency_recorded_ns),
        "latency_now_ms": ms(entry.latency_now_ns),
    });
    match &entry.outcome {
        Outcome::Compared(verdict) => {
            v["outcome"] = json!(if verdict.matched() { "match" } else { "differ" });
            v["differences"] = verdict
                .differences
                .iter()
                .map(|d| json!({"path": d.path, "recorded": d.recorded, "now": d.now}))
                .collect();
            v["ignored"] = verdict
                .ignored
                .iter()
                .map(|i| json!({"path": i.path, "rule": i.rule}))
                .collect();
        }
        Outcome::Failed { reason, kind } => {
            v["outcome"] = json!("failed");
            v["reason"] = json!(reason);
            v["kind"] = json!(kind.map(|k| k.as_str()));
        }
    }
    v
}

impl Report {
    /// An empty report.
    pub(crate) fn new() -> Report {
        Report::default()
    }

    /// An empty report that keeps only the summary, the tables and the gates' figures: its
    /// entries are not kept for `--report` or `--junit`, which then write none.
    pub(crate) fn summary_only() -> Report {
        Report {
            no_entries: true,
            ..Report::default()
        }
    }

    /// Adds one exchange's entry.
    pub(crate) fn add(&mut self, entry: Entry) {
        let endpoint = format!("{} {}", entry.method, vocab::route_template(&entry.path));
        let key = if self.endpoints.contains_key(&endpoint) || self.endpoints.len() < MAX_ENDPOINTS
        {
            endpoint.clone()
        } else {
            OTHER_ENDPOINTS.to_string()
        };
        let agg = self.endpoints.entry(key).or_default();
        agg.total += 1;
        self.total += 1;
        if let Some(ns) = entry.latency_recorded_ns {
            agg.recorded.add(ns);
        }
        if let Some(ns) = entry.latency_now_ns {
            agg.now.add(ns);
            self.now_all.add(ns);
        }
        let shown_path = if entry.path.is_empty() {
            "/"
        } else {
            entry.path.as_str()
        };
        match &entry.outcome {
            Outcome::Compared(v) if v.matched() => {
                agg.matched += 1;
                self.matched += 1;
            }
            Outcome::Compared(v) => {
                agg.differing += 1;
                self.differing += 1;
                if let Some(d) = v
                    .differences
                    .first()
                    .filter(|_| agg.first.len() < FIRST_PER_ENDPOINT)
                {
                    agg.first.push(format!(
                        "{} {shown_path}  {}: {} → {}",
                        entry.method, d.path, d.recorded, d.now
                    ));
                }
            }
            Outcome::Failed { reason, kind } => {
                agg.failed += 1;
                self.failed += 1;
                if agg.first.len() < FIRST_PER_ENDPOINT {
                    let kind = kind.map_or("failed", |k| k.as_str());
                    agg.first
                        .push(format!("{} {shown_path}  {kind}: {reason}", entry.method));
                }
            }
        }
        if let Outcome::Compared(v) = &entry.outcome {
            for i in &v.ignored {
                if let Some(n) = self.rules.get_mut(&i.rule) {
                    *n += 1;
                } else if self.rules.len() < MAX_RULES {
                    self.rules.insert(i.rule.clone(), 1);
                }
            }
        }
        if !self.no_entries {
            self.spool_entry(&entry, &endpoint);
        }
    }

    fn spool_entry(&self, entry: &Entry, endpoint: &str) {
        let mut guard = self.spool.lock().unwrap_or_else(|e| e.into_inner());
        let spool = guard.get_or_insert_with(|| {
            tempfile::tempfile()
                .map(BufWriter::new)
                .map_err(|e| format!("cannot create the report's temporary file: {e}"))
        });
        if let Ok(w) = spool {
            let line = record(entry, endpoint);
            let written = serde_json::to_writer(&mut *w, &line)
                .map_err(io::Error::from)
                .and_then(|()| w.write_all(b"\n"));
            if let Err(e) = written {
                *spool = Err(format!("cannot write the report's temporary file: {e}"));
            }
        }
    }

    /// Calls `each` with every spooled entry line, in order.
    pub(super) fn each_entry(
        &self,
        mut each: impl FnMut(&str) -> io::Result<()>,
    ) -> io::Result<()> {
        let mut guard = self.spool.lock().unwrap_or_else(|e| e.into_inner());
        let w = match guard.as_mut() {
            None => return Ok(()),
            Some(Err(e)) => return Err(io::Error::other(e.clone())),
            Some(Ok(w)) => w,
        };
        w.flush()?;
        let file = w.get_mut();
        file.seek(SeekFrom::Start(0))?;
        let mut reader = BufReader::new(&*file);
        let mut line = String::new();
        let result = loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) => break Ok(()),
                Ok(_) => each(line.trim_end())?,
                Err(e) => break Err(e),
            }
        };
        // Later entries append at the end again.
        file.seek(SeekFrom::End(0))?;
        result
    }

    fn summary_json(&self) -> Value {
        json!({
            "total": self.total,
            "matched": self.matched,
            "differing": self.differing,
            "failed": self.failed,
            "match_percent": self.match_percent(),
            "ignored_by_rule": self.rules,
        })
    }

    fn match_percent(&self) -> f64 {
        if self.total == 0 {
            100.0
        } else {
            (self.matched as f64 * 10_000.0 / self.total as f64).round() / 100.0
        }
    }

    fn endpoints_json(&self) -> Value {
        self.endpoints
            .iter()
            .map(|(name, a)| {
                let p = |h: &Histogram, q: f64| ms(h.percentile(q));
                json!({
                    "endpoint": name,
                    "total": a.total,
                    "matched": a.matched,
                    "differing": a.differing,
                    "failed": a.failed,
                    "latency_recorded_ms": {"p50": p(&a.recorded, 50.0), "p95": p(&a.recorded, 95.0), "p99": p(&a.recorded, 99.0)},
                    "latency_now_ms": {"p50": p(&a.now, 50.0), "p95": p(&a.now, 95.0), "p99": p(&a.now, 99.0)},
                })
            })
            .collect()
    }

    /// The stdout summary and latency table.
    pub(crate) fn summary_text(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} exchanges: {} matched, {} differing, {} failed ({}% match)",
            self.total,
            self.matched,
            self.differing,
            self.failed,
            self.match_percent()
        );
        let firsts: Vec<&String> = self.endpoints.values().flat_map(|a| &a.first).collect();
        if !firsts.is_empty() {
            out.push_str("\nfirst differences per endpoint:\n");
            for line in firsts {
                let _ = writeln!(out, "  {line}");
            }
        }
        if !self.rules.is_empty() {
            out.push_str("\nignored as noise:\n");
            for (rule, n) in &self.rules {
                let _ = writeln!(out, "  {n:>8}  {rule}");
            }
        }
        let timed = self
            .endpoints
            .values()
            .any(|a| a.recorded.count() + a.now.count() > 0);
        if timed {
            let width = self
                .endpoints
                .keys()
                .map(|k| k.chars().count())
                .max()
                .unwrap_or(8)
                .max(8);
            let _ = writeln!(
                out,
                "\n{:<width$}  {:>26}  {:>26}",
                "latency (ms)", "recorded p50 / p95 / p99", "now p50 / p95 / p99"
            );
            let cell = |h: &Histogram| {
                let p = |q: f64| {
                    h.percentile(q)
                        .map_or("-".to_string(), |n| format!("{:.1}", n as f64 / 1e6))
                };
                format!("{} / {} / {}", p(50.0), p(95.0), p(99.0))
            };
            for (name, a) in &self.endpoints {
                let _ = writeln!(
                    out,
                    "{name:<width$}  {:>26}  {:>26}",
                    cell(&a.recorded),
                    cell(&a.now)
                );
            }
        }
        out
    }

    /// `--report FILE`: JSON, one entry per exchange.
    pub(crate) fn write_json(&self, path: &Path) -> io::Result<()> {
        let mut w = BufWriter::new(File::create(path)?);
        w.write_all(b"{\"summary\":")?;
        serde_json::to_writer(&mut w, &self.summary_json())?;
        w.write_all(b",\n\"endpoints\":")?;
        serde_json::to_writer(&mut w, &self.endpoints_json())?;
        w.write_all(b",\n\"entries\":[")?;
        let mut first = true;
        self.each_entry(|line| {
            if !first {
                w.write_all(b",")?;
            }
            first = false;
            w.write_all(b"\n")?;
            w.write_all(line.as_bytes())
        })?;
        w.write_all(b"\n]}\n")?;
        w.flush()
    }

    /// `--junit FILE`: one testcase per exchange named `METHOD path`, one failure per
    /// difference, an error per failed exchange.
    pub(crate) fn write_junit(&self, path: &Path) -> io::Result<()> {
        let mut w = BufWriter::new(File::create(path)?);
        junit::head(&mut w, self.total, self.differing, self.failed)?;
        self.each_entry(|line| {
            let v: Value = serde_json::from_str(line).map_err(io::Error::other)?;
            junit::testcase(&mut w, &v)
        })?;
        junit::tail(&mut w)?;
        w.flush()
    }

    /// Why the run fails, one line per reason (for stderr): gates that held.
    pub(crate) fn gate_failures(&self, gates: &[Gate]) -> Vec<String> {
        gates.iter().filter_map(|g| g.check(self)).collect()
    }

    /// 0 all match, 1 differences, 2 errors; gates (`match<99%`, `p99>250ms`) change it.
    ///
    /// Without gates any difference fails the run (1) and any failed exchange more so (2).
    /// With gates, only a gate that holds fails it: 1, or 2 when exchanges failed too — a
    /// few differences or failures within the gates' limits pass.
    pub(crate) fn exit_code(&self, gates: &[Gate]) -> u8 {
        if gates.is_empty() {
            return if self.failed > 0 {
                2
            } else if self.differing > 0 {
                1
            } else {
                0
            };
        }
        match self.gate_failures(gates).is_empty() {
            true => 0,
            false if self.failed > 0 => 2,
            false => 1,
        }
    }
}
