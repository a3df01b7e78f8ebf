//! `mf replay FILE|DIR --to URL`: send the recorded requests to a live target and say what
//! changed. Glues the driver (`replay::to`) to the judge (`diff`): an observer rebinds ids
//! before each send and judges each answer into the report.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::Args;

use super::util;
use crate::diff::{Entry, Judge, Learner, Outcome, Rebinder, Report};
use crate::model::{Exchange, ExchangeError};
use crate::net::dial::Upstream;
use crate::replay::to::{self, Observer, Speed, TargetConfig, TlsMode};

/// `mf replay --to`: the target, how to send to it, what to select and what to report.
#[derive(Debug, Args)]
#[command(next_help_heading = "Replay to a target")]
#[command(mut_arg("hosts", |a| a.long("recorded-host")))]
pub(crate) struct ToArgs {
    /// Send every recorded client request to this live service (http[s]://host:port[/prefix])
    /// instead of serving the recording, and compare its answers with the recorded ones.
    /// Exit 0 when all match, 1 on differences, 2 on failures. `--tls` speaks TLS to it.
    #[arg(long, value_name = "URL")]
    pub to: Option<String>,

    /// The Host (HTTP/2 `:authority`) sent to the target instead of the URL's.
    #[arg(long, value_name = "HOST", requires = "to")]
    pub host: Option<String>,

    /// A header set on every request sent, replacing a recorded one of the same name
    /// (repeatable).
    #[arg(long = "set-header", value_name = "NAME:VALUE", requires = "to", value_parser = parse_set_header)]
    pub set_header: Vec<(String, String)>,

    /// Accept any certificate from the target (`--to`) or the upstream (`--upstream`).
    #[arg(long)]
    pub insecure: bool,

    /// Also trust this CA (PEM) for the certificate of the target (`--to`) or the upstream
    /// (`--upstream`).
    #[arg(long, value_name = "FILE")]
    pub upstream_ca: Option<PathBuf>,

    /// Recorded timing, scaled: 2x halves every gap, 0.5x doubles it, max sends at once.
    #[arg(long, value_name = "SPEED", default_value = "1x", requires = "to")]
    pub speed: Speed,

    /// Send the whole selection this many times.
    #[arg(long, value_name = "N", requires = "to", value_parser = clap::value_parser!(u32).range(1..))]
    pub times: Option<u32>,

    /// Send the selection over and over until this long has passed.
    #[arg(long = "for", value_name = "DURATION", requires = "to", value_parser = util::parse_duration)]
    pub for_duration: Option<Duration>,

    /// At most this many connections to the target at once.
    #[arg(long, value_name = "N", default_value_t = 64, requires = "to", value_parser = clap::value_parser!(u64).range(1..))]
    pub concurrency: u64,

    /// How long the target may keep a request waiting (to connect, for the answer, between
    /// its pieces) before the exchange fails.
    #[arg(long, value_name = "DURATION", default_value = "10s", requires = "to", value_parser = util::parse_duration)]
    pub timeout: Duration,

    /// Which recorded exchanges are sent: the filters of `mf ls`, except that the recorded
    /// host is `--recorded-host` here (`--host` is what is sent to the target).
    #[command(flatten)]
    pub select: super::select::SelectArgs,

    /// The report, gates and noise rules, as for `mf diff`.
    #[command(flatten)]
    pub judge: super::diff::JudgeArgs,
}

/// `--set-header NAME:VALUE`.
fn parse_set_header(s: &str) -> Result<(String, String), String> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| format!("{s:?}: expected NAME:VALUE"))?;
    let name = name.trim();
    if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(format!("{name:?} is not a header name"));
    }
    let value = value.trim();
    if http::HeaderValue::from_str(value).is_err() {
        return Err(format!("the value for {name} is not a valid header value"));
    }
    Ok((name.to_string(), value.to_string()))
}

/// Which recorded exchanges are sent: the `mf ls` selection, judged in memory (a fixtures
/// folder's examples are no rows to query), and never a recorded tunnel.
#[derive(Clone)]
struct Selection(crate::store::InMemory);

impl Selection {
    fn keeps(&self, e: &Exchange) -> bool {
        // A recorded tunnel (`CONNECT host:port`, relayed untouched) is no request a target
        // could answer.
        !e.request.method.eq_ignore_ascii_case("CONNECT") && self.0.matches(e)
    }
}

/// Rebinds ids before each send, judges each answer into the report.
struct Judging {
    rebinder: Mutex<Rebinder>,
    judge: Judge,
    report: Mutex<Report>,
}

/// A poisoned lock only means another connection's task panicked; its data is still whole.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Observer for Judging {
    fn before_send(&self, _recorded: &Exchange, outgoing: &mut Exchange) {
        lock(&self.rebinder).rewrite(outgoing);
    }

    fn answered(
        &self,
        recorded: &Exchange,
        observed: Result<Exchange, ExchangeError>,
        latency_ns: u64,
    ) {
        let (outcome, latency_now_ns) = match observed {
            Ok(observed) => {
                // Learn what this answer created, then judge it; a difference that is only
                // a rebound id (recorded 7, created 12 this run) is no difference.
                let mut rebinder = lock(&self.rebinder);
                rebinder.learn(recorded, &observed);
                let mut verdict = self.judge.compare(recorded, &observed);
                rebinder.absorb(&mut verdict);
                (Outcome::Compared(verdict), Some(latency_ns))
            }
            Err(e) => (
                Outcome::Failed {
                    reason: e.message,
                    kind: Some(e.kind),
                },
                None,
            ),
        };
        lock(&self.report).add(Entry {
            id: recorded.id,
            method: recorded.request.method.clone().into(),
            path: recorded.request.path().to_string(),
            outcome,
            latency_recorded_ns: recorded.duration_ns(),
            latency_now_ns,
        });
    }
}

/// Noise is learned from at most this many recorded exchanges (the first ones): learning
/// keeps the first answer to each distinct request in memory, and a sample this large shows
/// what varies.
const LEARN_SAMPLE: usize = 20_000;

/// Exchanges handed to the driver at once: one wake-up of its reader per batch.
const FEED_BATCH: usize = 64;

/// What is sent: a recording (read again for each pass, one exchange at a time) or the
/// examples of a fixtures folder.
#[derive(Clone)]
enum Source {
    /// Opened once: opening checks the whole file (`quick_check`), ~2% of a `--speed max`
    /// run each time. The passes take turns with the reader.
    Recording(PathBuf, Arc<Mutex<Box<dyn crate::store::RecordingRead>>>),
    Fixtures(Arc<Vec<Exchange>>),
}

impl Source {
    fn open(path: &Path) -> anyhow::Result<Source> {
        if !path.is_dir() {
            let reader = util::open_recording(path)?;
            return Ok(Source::Recording(
                path.to_path_buf(),
                Arc::new(Mutex::new(reader)),
            ));
        }
        let set = crate::store::fixtures::read_dir(path)
            .with_context(|| format!("reading fixtures folder {}", path.display()))?;
        Ok(Source::Fixtures(Arc::new(to::exchanges_from_fixtures(
            &set,
        ))))
    }

    /// Calls `f` with every exchange in recorded order until it returns false.
    fn for_each(&self, f: &mut dyn FnMut(Exchange) -> bool) -> anyhow::Result<()> {
        match self {
            Source::Recording(path, reader) => lock(reader)
                .for_each(f)
                .with_context(|| format!("reading {}", path.display())),
            Source::Fixtures(all) => {
                for e in all.iter() {
                    if !f(e.clone()) {
                        break;
                    }
                }
                Ok(())
            }
        }
    }
}

/// Feeds the driver the selected exchanges of `source`, read on a thread of their own for
/// each pass; a read error is kept for the end of the run.
struct Feeder {
    source: Source,
    selection: Selection,
    error: Arc<Mutex<Option<anyhow::Error>>>,
}

impl to::Feed for Feeder {
    fn pass(&mut self) -> tokio::sync::mpsc::Receiver<Vec<Exchange>> {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let (source, selection, error) = (
            self.source.clone(),
            self.selection.clone(),
            self.error.clone(),
        );
        std::thread::spawn(move || {
            let mut batch = Vec::with_capacity(FEED_BATCH);
            let read = source.for_each(&mut |e| {
                if selection.keeps(&e) {
                    batch.push(e);
                }
                batch.len() < FEED_BATCH
                    || tx
                        .blocking_send(std::mem::replace(
                            &mut batch,
                            Vec::with_capacity(FEED_BATCH),
                        ))
                        .is_ok()
            });
            if !batch.is_empty() {
                let _ = tx.blocking_send(batch);
            }
            if let Err(e) = read {
                *lock(&error) = Some(e);
            }
        });
        rx
    }
}

/// The driver's settings from the flags.
fn target(args: &ToArgs, url: &str, tls_flag: bool) -> anyhow::Result<TargetConfig> {
    let url = Upstream::parse(url).map_err(|e| anyhow::anyhow!("--to {e}"))?;
    let trust = crate::tls::UpstreamTls {
        extra_ca: args.upstream_ca.clone(),
        insecure: args.insecure,
    };
    if args.insecure {
        eprintln!("mf: warning: --insecure: the target's certificate is not checked");
    }
    let tls = TlsMode {
        enabled: url.tls || tls_flag,
        h1: crate::tls::client_config(&trust, &crate::tls::ALPN_H1)
            .context("TLS settings for --to")?,
        h2: crate::tls::client_config(&trust, &crate::tls::ALPN_H2_H1)
            .context("TLS settings for --to")?,
    };
    Ok(TargetConfig {
        url,
        host_override: args.host.clone(),
        set_headers: args.set_header.clone(),
        tls,
        speed: args.speed,
        times: args.times,
        for_duration: args.for_duration,
        concurrency: usize::try_from(args.concurrency).unwrap_or(usize::MAX),
        timeout: args.timeout,
    })
}

/// Runs `mf replay FILE|DIR --to URL`; `tls_flag` is `mf replay --tls`.
pub(super) fn run(recording: &Path, args: &ToArgs, tls_flag: bool) -> anyhow::Result<u8> {
    let Some(url) = args.to.as_deref() else {
        bail!("--to is required here");
    };
    let cfg = target(args, url, tls_flag)?;
    let source = Source::open(recording)?;
    let everything = args.select.selection().is_all();
    let selection = Selection(args.select.selection().in_memory());
    // Each connection's exchanges are counted first (so the driver knows when one is over),
    // and noise is learned from a sample: the first exchanges of the recording, even what
    // is not sent, each looked at as it is read.
    let mut rules = args.judge.rules()?;
    if recording.is_dir() {
        // A fixtures folder's own `ignore:` rules apply to the answers to its examples.
        let found = crate::store::fixtures::read_ignore_rules(recording)
            .with_context(|| format!("reading ignore rules of {}", recording.display()))?;
        for (endpoint, path) in found {
            rules.add_ignore(endpoint, path);
        }
    }
    let mut counts = to::ConnectionCounts::new();
    let mut learner = Learner::new();
    let mut sampled = 0;
    let learn = !args.judge.no_learn;
    match (&source, everything) {
        (Source::Recording(path, reader), true) => {
            // Sending everything: the listing rows (no bodies) are enough to count, and only
            // the sample is read whole — reading every exchange twice was a tenth of a
            // `--speed max` run, all of it before the first send.
            lock(reader)
                .for_each_connection_method(&mut |connection_id, method| {
                    if !method.eq_ignore_ascii_case("CONNECT") {
                        let id = u64::try_from(connection_id).unwrap_or(0);
                        *counts.entry(id).or_default() += 1;
                    }
                })
                .with_context(|| format!("reading {}", path.display()))?;
            if learn {
                source.for_each(&mut |e| {
                    learner.add(&mut rules, e);
                    sampled += 1;
                    sampled < LEARN_SAMPLE
                })?;
            }
        }
        _ => source.for_each(&mut |e| {
            if selection.keeps(&e) {
                *counts.entry(e.connection_id).or_default() += 1;
            }
            if learn && sampled < LEARN_SAMPLE {
                learner.add(&mut rules, e);
                sampled += 1;
            }
            true
        })?,
    }
    learner.finish(&mut rules);
    eprintln!(
        "mf: sending {} exchanges on {} connections to {url}",
        counts.values().sum::<u64>(),
        counts.len()
    );
    let judging = Arc::new(Judging {
        rebinder: Mutex::new(Rebinder::new()),
        judge: Judge::new(rules),
        report: Mutex::new(
            if args.judge.report.is_none() && args.judge.junit.is_none() {
                Report::summary_only()
            } else {
                Report::new()
            },
        ),
    });
    let observer: Arc<dyn Observer> = judging.clone();
    let mut feeder = Feeder {
        source,
        selection,
        error: Arc::new(Mutex::new(None)),
    };
    let summary = util::runtime()?.block_on(to::drive(&mut feeder, &counts, cfg, observer))?;
    if let Some(e) = lock(&feeder.error).take() {
        return Err(e);
    }
    if summary.passes > 1 {
        eprintln!(
            "mf: {} passes, {} exchanges sent",
            summary.passes, summary.sent
        );
    }
    let report = lock(&judging.report);
    args.judge.finish(&report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_header_needs_a_name_and_a_value() {
        assert_eq!(
            parse_set_header("X-Env: staging"),
            Ok(("X-Env".into(), "staging".into()))
        );
        assert!(parse_set_header("no colon").is_err());
        assert!(parse_set_header("bad name: x").is_err());
    }

    #[test]
    fn selection_by_path_glob_method_and_status() {
        let ex = |m: &str, t: &str, status: u16| Exchange {
            request: crate::model::Request {
                method: m.into(),
                target: t.into(),
                ..Default::default()
            },
            response: Some(crate::model::Response {
                status,
                ..Default::default()
            }),
            authority: "api.test:8080".into(),
            ..Exchange::default()
        };
        let args = super::super::select::SelectArgs {
            paths: vec!["/items/*".into()],
            methods: vec!["get".into()],
            statuses: vec!["2xx"
                .parse()
                .unwrap_or(crate::store::StatusRange { low: 0, high: 0 })],
            hosts: vec!["api.test".into()],
            ..Default::default()
        };
        let s = Selection(args.selection().in_memory());
        assert!(s.keeps(&ex("GET", "/items/3?x=1", 200)));
        assert!(
            s.keeps(&ex("GET", "/items/3/parts", 200)),
            "* crosses / as in mf ls"
        );
        assert!(!s.keeps(&ex("GET", "/items/3", 500)));
        assert!(!s.keeps(&ex("POST", "/items/3", 200)));
        assert!(!s.keeps(&ex("GET", "/users/3", 200)));
        let all = Selection(crate::store::Selection::default().in_memory());
        assert!(all.keeps(&ex("PATCH", "/x", 404)));
        assert!(!all.keeps(&ex("CONNECT", "example.com:443", 200)));
    }
}
