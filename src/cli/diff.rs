//! `mf diff A.db B.db`: compares two recordings of the same traffic, pairing identical
//! requests by order, with the judge `mf replay --to` uses. Also holds the judge's options
//! and the end of a judged run (summary, files, gates, exit code), shared with
//! `mf replay --to`.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;

use super::util;
use crate::diff::{Difference, Entry, Gate, Judge, Outcome, Rebinder, Report, Rules, Verdict};
use crate::model::Exchange;
use crate::store::{fixtures, RecordingRead};

/// Compare two recordings of the same traffic: the answers of B against those of A.
///
/// Identical requests (method, target and body) are paired in order: the n-th in A with the
/// n-th in B; ids that an earlier answer created are rebound first, so `GET /items/<id A got>`
/// pairs with `GET /items/<id B got>`. Exit 0 when every answer matches, 1 on differences (or exchanges only one side
/// has), 2 on errors; `--fail-if` changes what fails.
#[derive(Debug, Args)]
pub(crate) struct DiffArgs {
    /// The reference recording.
    #[arg(value_name = "A")]
    pub(crate) a: PathBuf,

    /// The recording compared with it.
    #[arg(value_name = "B")]
    pub(crate) b: PathBuf,

    #[command(flatten)]
    pub(crate) judge: JudgeArgs,
}

/// How answers are judged and reported: shared by `mf diff` and `mf replay --to`.
#[derive(Debug, Clone, Args)]
pub(crate) struct JudgeArgs {
    /// Write a JSON report: a summary, per-endpoint latency, and one entry per exchange with
    /// its differences (paths, both values), ignored values (with the rule) and latencies.
    #[arg(long, value_name = "FILE", help_heading = "Report")]
    pub(crate) report: Option<PathBuf>,

    /// Write a JUnit XML report: one testcase per exchange (`METHOD path`), one failure per
    /// difference.
    #[arg(long, value_name = "FILE", help_heading = "Report")]
    pub(crate) junit: Option<PathBuf>,

    /// Fail the run (exit 1) when this holds instead of on any difference: `match<99%`,
    /// `p99>250ms`, `failed>0`, `differing>1%`, `max>2s`. Repeatable.
    #[arg(long = "fail-if", value_name = "GATE", help_heading = "Report")]
    pub(crate) fail_if: Vec<Gate>,

    /// Do not compare this path: `$.meta.build`, `$.items[*].updated_at`, `header x-build`,
    /// or for one endpoint `GET /users/{id} $.seen_at`. Repeatable.
    #[arg(long, value_name = "PATH", help_heading = "Noise")]
    pub(crate) ignore: Vec<String>,

    /// Read `ignore:` rules from a fixtures folder (index.yaml and endpoint files) or from a
    /// YAML file with an `ignore:` list. Repeatable.
    #[arg(long = "ignore-from", value_name = "DIR|FILE", help_heading = "Noise")]
    pub(crate) ignore_from: Vec<PathBuf>,

    /// Do not learn noise from the recording (values that vary between answers to
    /// identical requests); volatile headers and forms are still ignored.
    #[arg(long, help_heading = "Noise")]
    pub(crate) no_learn: bool,
}

impl JudgeArgs {
    /// The rules: defaults, then `--ignore` and `--ignore-from`. Noise learning is the
    /// caller's (it has the recording): see [`JudgeArgs::no_learn`].
    pub(crate) fn rules(&self) -> anyhow::Result<Rules> {
        let mut rules = Rules::defaults();
        for rule in &self.ignore {
            let (endpoint, path) = split_ignore(rule);
            rules.add_ignore(endpoint, path);
        }
        for source in &self.ignore_from {
            let found = fixtures::read_ignore_rules(source)
                .with_context(|| format!("reading ignore rules from {}", source.display()))?;
            for (endpoint, path) in found {
                rules.add_ignore(endpoint, path);
            }
        }
        Ok(rules)
    }

    /// The end of a judged run: the summary on stdout, the report files, why a gate failed
    /// on stderr; returns the exit code.
    pub(crate) fn finish(&self, report: &Report) -> anyhow::Result<u8> {
        let mut out = std::io::stdout().lock();
        out.write_all(report.summary_text().as_bytes())?;
        out.flush()?;
        if let Some(path) = &self.report {
            report
                .write_json(path)
                .with_context(|| format!("writing the report {}", path.display()))?;
        }
        if let Some(path) = &self.junit {
            report
                .write_junit(path)
                .with_context(|| format!("writing the JUnit report {}", path.display()))?;
        }
        for reason in report.gate_failures(&self.fail_if) {
            eprintln!("mf: {reason}");
        }
        Ok(report.exit_code(&self.fail_if))
    }
}

/// `GET /users/{id} $.x` → (`GET /users/{id}`, `$.x`); `$.x` → (None, `$.x`).
fn split_ignore(rule: &str) -> (Option<String>, String) {
    let rule = rule.trim();
    match rule.find(" $") {
        Some(i) if !rule.starts_with('$') => (
            Some(rule[..i].trim().to_string()),
            rule[i + 1..].to_string(),
        ),
        _ => (None, rule.to_string()),
    }
}

/// Exchanges of each recording that noise learning looks at: the first ones, so that memory
/// stays bounded on a recording of millions.
const LEARN_SAMPLE: usize = 20_000;

/// What pairs two exchanges: method, target and body, hashed (32 bytes a pending exchange).
fn pair_key(ex: &Exchange) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(ex.request.method.as_bytes());
    h.update(b" ");
    h.update(ex.request.origin_form().as_bytes());
    h.update(b"\n");
    h.update(&ex.request.body.data);
    *h.finalize().as_bytes()
}

/// The first [`LEARN_SAMPLE`] exchanges of a recording.
fn sample(reader: &dyn RecordingRead, path: &Path) -> anyhow::Result<Vec<Exchange>> {
    let mut out = Vec::new();
    reader
        .for_each(&mut |ex| {
            out.push(ex);
            out.len() < LEARN_SAMPLE
        })
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(out)
}

/// One side only has this exchange.
fn unpaired(ex: &Exchange, side: &str) -> Entry {
    let (recorded, now) = if side == "A" {
        ("recorded in A", "not in B")
    } else {
        ("not in A", "recorded in B")
    };
    Entry {
        id: ex.id,
        method: ex.request.method.clone().into(),
        path: ex.request.origin_form().to_string(),
        outcome: Outcome::Compared(Verdict {
            differences: vec![Difference {
                path: "exchange".into(),
                recorded: recorded.into(),
                now: now.into(),
            }],
            ignored: vec![],
        }),
        latency_recorded_ns: ex.duration_ns().filter(|_| side == "A"),
        latency_now_ns: ex.duration_ns().filter(|_| side == "B"),
    }
}

/// Walks A in recording order and B by id: memory holds B's pairing index (an id and a hash
/// per exchange) and the report's aggregates, never the recordings.
pub(super) fn run(args: DiffArgs) -> anyhow::Result<u8> {
    let mut rules = args.judge.rules()?;
    let ra = util::open_recording(&args.a)?;
    let rb = util::open_recording(&args.b)?;
    if !args.judge.no_learn {
        rules.learn(sample(ra.as_ref(), &args.a)?.iter());
        rules.learn(sample(rb.as_ref(), &args.b)?.iter());
    }
    let judge = Judge::new(rules);
    let mut queues: HashMap<[u8; 32], VecDeque<i64>> = HashMap::new();
    rb.for_each(&mut |ex| {
        queues.entry(pair_key(&ex)).or_default().push_back(ex.id);
        true
    })
    .with_context(|| format!("reading {}", args.b.display()))?;
    let mut rebinder = Rebinder::new();
    let mut report = Report::new();
    let mut failure: Option<anyhow::Error> = None;
    ra.for_each(&mut |ea| {
        // A request that carried an id an earlier answer created (`GET /items/<id of the
        // POST>`) carries the other run's id in B: look it up with the ids rebound.
        let mut probe = Exchange {
            request: ea.request.clone(),
            ..Exchange::default()
        };
        rebinder.rewrite(&mut probe);
        let found = queues
            .get_mut(&pair_key(&probe))
            .and_then(VecDeque::pop_front)
            .or_else(|| queues.get_mut(&pair_key(&ea)).and_then(VecDeque::pop_front));
        let Some(id) = found else {
            report.add(unpaired(&ea, "A"));
            return true;
        };
        let eb = match rb.load(id) {
            Ok(eb) => eb,
            Err(e) => {
                failure =
                    Some(anyhow::Error::new(e).context(format!("reading {}", args.b.display())));
                return false;
            }
        };
        rebinder.learn(&ea, &eb);
        let mut verdict = judge.compare(&ea, &eb);
        rebinder.absorb(&mut verdict);
        report.add(Entry {
            id: ea.id,
            method: ea.request.method.clone().into(),
            path: ea.request.origin_form().to_string(),
            outcome: Outcome::Compared(verdict),
            latency_recorded_ns: ea.duration_ns(),
            latency_now_ns: eb.duration_ns(),
        });
        true
    })
    .with_context(|| format!("reading {}", args.a.display()))?;
    if let Some(e) = failure {
        return Err(e);
    }
    let mut rest: Vec<i64> = queues.into_values().flatten().collect();
    rest.sort_unstable();
    for id in rest {
        let eb = rb
            .load(id)
            .with_context(|| format!("reading {}", args.b.display()))?;
        report.add(unpaired(&eb, "B"));
    }
    args.judge.finish(&report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ignore_rules_split_off_their_endpoint() {
        assert_eq!(split_ignore("$.a.b"), (None, "$.a.b".into()));
        assert_eq!(
            split_ignore("GET /users/{id} $.seen_at"),
            (Some("GET /users/{id}".into()), "$.seen_at".into())
        );
        assert_eq!(
            split_ignore("header x-build"),
            (None, "header x-build".into())
        );
    }
}
