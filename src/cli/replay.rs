//! `mf replay`: serve a recording back.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use super::util;
use crate::net::door::{Door, Interceptor, LazyInterceptor};
use crate::replay::latency::{LatencyMode, LatencySpec};
use crate::replay::matcher::RepeatPolicy;
use crate::replay::plan::Settings;
use crate::replay::rules::ConfigFile;
use crate::replay::scenario::{self, Mode};
use crate::replay::{service, Replay, ReplayConfig};

/// Serve a recording back to real clients, the upstream gone.
///
/// Requests are matched on method, path, query (in any order) and body (JSON compared by
/// value). Identical requests get the recorded answers in recorded order. A request that
/// matches nothing gets a 404 whose JSON body lists the closest recorded requests and why
/// each did not match.
///
/// With --to URL nothing listens: the recorded requests are sent to that live service and
/// its answers compared with the recorded ones.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  mf replay api.db --listen 127.0.0.1:8080\n  \
    mf replay api.db --mode error --error-rate 0.3 --error-status 502,503 --seed 7\n  \
    mf replay api.db --latency fixed:50ms --config chaos.yaml --admin 127.0.0.1:9901\n  \
    mf replay api.db --to http://127.0.0.1:8081 --report diff.json --fail-if 'match<99%'"
)]
pub struct ReplayArgs {
    /// The recording to serve, or a fixtures folder written by `mf infer`.
    #[arg(value_name = "FILE|DIR")]
    pub recording: PathBuf,

    /// Fixtures folder only: honour inferred value flows (what a POST created, the matching
    /// GET returns).
    #[arg(long)]
    pub stateful: bool,

    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Listen with TLS, using a certificate minted from the mf CA (with --to: speak TLS to
    /// the target).
    #[arg(long)]
    pub tls: bool,

    /// Listen with TLS using this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Close a client that has not sent a whole request head this long after connecting, or
    /// after the head's first byte (answered 408 once it had begun).
    #[arg(long, value_name = "DURATION", default_value = "30s", value_parser = util::parse_duration)]
    pub header_timeout: std::time::Duration,

    /// Close a keep-alive connection silent this long between requests, or a request body
    /// that stalls this long (408).
    #[arg(long, value_name = "DURATION", default_value = "60s", value_parser = util::parse_duration)]
    pub idle_timeout: std::time::Duration,

    /// What identical requests get once their recorded answers are used up.
    #[arg(long, value_enum, default_value_t = Repeat::Last)]
    pub repeat: Repeat,

    /// Delay before each answer: none, recorded, fixed:50ms, scale:2.5, profile or
    /// uniform:10ms..200ms. Default: HTTP answers at once, while streamed answers (gRPC
    /// messages, WebSocket frames, Server-Sent Events) keep their recorded relative timing;
    /// `none` sends those at once too; `recorded` and `scale:X` also pace every other body
    /// that arrived in pieces (chunked and slow downloads) at its recorded offsets.
    #[arg(long, value_name = "MODE", help_heading = "Realism")]
    pub latency: Option<String>,

    /// Add or remove up to this much at random from every delay.
    #[arg(long, value_name = "DURATION", value_parser = util::parse_duration, help_heading = "Realism")]
    pub jitter: Option<std::time::Duration>,

    /// Send bodies at most this fast (bytes per second; 64k, 1MiB).
    #[arg(long, value_name = "BYTES", value_parser = parse_bandwidth, help_heading = "Realism")]
    pub bandwidth: Option<usize>,

    /// Rules, presets and defaults for the options here (YAML).
    #[arg(long, value_name = "FILE", help_heading = "Realism")]
    pub config: Option<PathBuf>,

    /// Seed for every random choice; the same seed and request order give the same run.
    /// Without one a seed is drawn and printed.
    #[arg(long, value_name = "N", help_heading = "Realism")]
    pub seed: Option<u64>,

    /// Scenario mode.
    #[arg(long, value_enum, help_heading = "Realism")]
    pub mode: Option<ModeArg>,

    /// Share of requests answered with an error status (implies --mode error).
    #[arg(long, value_name = "RATE", help_heading = "Realism")]
    pub error_rate: Option<f64>,

    /// Statuses errors are drawn from.
    #[arg(
        long,
        value_name = "CODES",
        value_delimiter = ',',
        help_heading = "Realism"
    )]
    pub error_status: Option<Vec<u16>>,

    /// Multiply every delay (implies --mode degraded).
    #[arg(long, value_name = "FACTOR", help_heading = "Realism")]
    pub latency_multiplier: Option<f64>,

    /// Start with a preset: production, staging, high-load, network-issues, chaos, or one
    /// from the config file.
    #[arg(long, value_name = "NAME", help_heading = "Realism")]
    pub preset: Option<String>,

    /// Record on miss: requests the recording (or fixtures folder) does not answer are
    /// forwarded to this upstream (http:// or https://), answered, and kept — appended to the
    /// recording, or written as new endpoints of the fixtures folder — so the next offline
    /// run has them. An upstream that does not answer gets the client a 502 and keeps
    /// nothing.
    #[arg(long, value_name = "URL")]
    pub upstream: Option<String>,

    /// Serve the control API and /metrics on this address (off by default).
    #[arg(long, value_name = "ADDR", help_heading = "Control")]
    pub admin: Option<String>,

    /// Bearer token the control API requires (mandatory off loopback).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "MF_ADMIN_TOKEN",
        hide_env_values = true,
        help_heading = "Control",
        value_parser = parse_secret
    )]
    pub admin_token: Option<Secret>,

    /// Read the control API's bearer token from this file (first line; keeps it out of `ps`).
    #[arg(
        long,
        value_name = "FILE",
        help_heading = "Control",
        conflicts_with = "admin_token"
    )]
    pub admin_token_file: Option<std::path::PathBuf>,

    /// Export one OpenTelemetry span per answered request to this OTLP/HTTP collector
    /// (http://HOST:4318; `/v1/traces` is added), a child of the request's traceparent.
    #[arg(long, value_name = "URL", help_heading = "Control")]
    pub otlp: Option<String>,

    #[command(flatten)]
    pub(crate) to: Box<super::replay_to::ToArgs>,
}

/// A token that never shows up in `Debug` output or logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// The token itself, for the places that send or check it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("***")
    }
}

/// Wraps a token read from the command line or the environment. A blank token would let
/// anyone in while looking like protection, so it is refused.
pub(crate) fn parse_secret(s: &str) -> Result<Secret, String> {
    if s.trim().is_empty() {
        return Err("the token must not be blank".into());
    }
    Ok(Secret(s.to_string()))
}

/// The control API's token: `--admin-token`/`MF_ADMIN_TOKEN`, or the first line of
/// `--admin-token-file`.
fn admin_token(args: &ReplayArgs) -> anyhow::Result<Option<Secret>> {
    token_of(args.admin_token.as_ref(), args.admin_token_file.as_deref())
}

/// The admin token given as `token` or in the first line of `file` (shared with `mf record`).
pub(super) fn token_of(
    token: Option<&Secret>,
    file: Option<&std::path::Path>,
) -> anyhow::Result<Option<Secret>> {
    let Some(path) = file else {
        return Ok(token.cloned());
    };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading --admin-token-file {}", path.display()))?;
    let line = text.lines().next().unwrap_or("").trim();
    parse_secret(line)
        .map(Some)
        .map_err(|e| anyhow::anyhow!("--admin-token-file {}: {e}", path.display()))
}

/// `--header-timeout` and `--idle-timeout`.
fn client_timeouts(args: &ReplayArgs) -> crate::net::ClientTimeouts {
    crate::net::ClientTimeouts {
        header: args.header_timeout,
        idle: args.idle_timeout,
    }
}

/// `--bandwidth`: a size, and not zero (nothing would ever be sent).
fn parse_bandwidth(s: &str) -> Result<usize, String> {
    match util::parse_size(s)? {
        0 => Err("must be at least 1 byte per second".into()),
        n => Ok(n),
    }
}

/// `--mode` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ModeArg {
    Healthy,
    Degraded,
    Error,
    Chaos,
}

impl From<ModeArg> for Mode {
    fn from(m: ModeArg) -> Mode {
        match m {
            ModeArg::Healthy => Mode::Healthy,
            ModeArg::Degraded => Mode::Degraded,
            ModeArg::Error => Mode::Error,
            ModeArg::Chaos => Mode::Chaos,
        }
    }
}

/// Flags over the config file over the defaults.
fn realism(args: &ReplayArgs) -> anyhow::Result<(Settings, u64)> {
    let file = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            ConfigFile::parse(&text).with_context(|| format!("in {}", path.display()))?
        }
        None => ConfigFile::default(),
    };
    let mut settings = Settings {
        presets: file.presets.clone(),
        rules: file.rules.clone(),
        ..Settings::default()
    };
    let preset = |name: &str| {
        file.presets.get(name).cloned().or_else(|| scenario::preset(name)).with_context(|| {
            format!("unknown preset {name:?} (built in: {}; or define it under presets: in --config)", scenario::PRESETS.join(", "))
        })
    };
    if let Some(p) = &file.preset {
        settings.scenario = preset(p)?;
    }
    if let Some(m) = file.mode {
        settings.scenario = scenario::for_mode(m);
    }
    if let Some(p) = &args.preset {
        settings.scenario = preset(p)?;
    }
    let mut mode = args.mode.map(Mode::from);
    if mode.is_none() && settings.scenario.mode == Mode::Healthy {
        if args.error_rate.is_some() || args.error_status.is_some() {
            mode = Some(Mode::Error);
        } else if args.latency_multiplier.is_some() {
            mode = Some(Mode::Degraded);
        }
    }
    if let Some(m) = mode {
        settings.scenario = scenario::for_mode(m);
    }
    if let Some(r) = args.error_rate {
        if !(0.0..=1.0).contains(&r) {
            bail!("--error-rate {r} is not between 0 and 1");
        }
        settings.scenario.error_rate = r;
    }
    if let Some(s) = &args.error_status {
        if let Some(bad) = s.iter().find(|c| !(100..=599).contains(*c)) {
            bail!("--error-status {bad} is not an HTTP status");
        }
        settings.scenario.error_status = s.clone();
    }
    if let Some(m) = args.latency_multiplier {
        if !m.is_finite() || m < 0.0 {
            bail!("--latency-multiplier {m} must be a non-negative number");
        }
        settings.scenario.latency_multiplier = m;
    }
    settings.latency = LatencySpec {
        mode: match &args.latency {
            Some(l) => l
                .parse::<LatencyMode>()
                .with_context(|| format!("--latency {l}"))?,
            None => file.latency.clone().unwrap_or(LatencyMode::None),
        },
        jitter: args.jitter.or(file.jitter),
        bandwidth: args.bandwidth.map(|b| b as u64).or(file.bandwidth),
    };
    let seed = args.seed.or(file.seed).unwrap_or_else(rand::random);
    Ok((settings, seed))
}

/// `--repeat` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Repeat {
    /// Keep answering with the last recorded answer.
    Last,
    /// Start over from the first.
    Cycle,
    /// Answer 404.
    #[value(name = "404")]
    NotFound,
}

pub(super) fn run(args: ReplayArgs) -> anyhow::Result<u8> {
    if args.to.to.is_some() {
        // Sending to a live target instead of serving: nothing listens.
        if args.otlp.is_some() {
            bail!("--otlp exports the spans of a served replay, not of --to");
        }
        return super::replay_to::run(&args.recording, &args.to, args.tls);
    }
    let j = &args.to.judge;
    if j.report.is_some()
        || j.junit.is_some()
        || !j.fail_if.is_empty()
        || !j.ignore.is_empty()
        || !j.ignore_from.is_empty()
        || j.no_learn
    {
        bail!("--report, --junit, --fail-if, --ignore, --ignore-from and --no-learn judge the answers of a target: they need --to URL");
    }
    if (args.to.insecure || args.to.upstream_ca.is_some()) && args.upstream.is_none() {
        bail!("--insecure and --upstream-ca are about the certificate of a target (--to URL) or an upstream (--upstream URL)");
    }
    if !args.to.select.selection().is_all() {
        bail!("--path, --method, --status, --protocol, --recorded-host, --since, --until, --trace-id, --slower-than and --errors pick what is sent to a target: they need --to URL");
    }
    let admin = admin_addr(&args)?;
    if args.recording.is_dir() {
        // Latency, faults and seeds apply to fixtures as to recordings.
        let (realism, seed) = realism(&args)?;
        let config = ReplayConfig {
            realism,
            seed,
            timeouts: client_timeouts(&args),
            ..ReplayConfig::default()
        };
        let (replay, what) = super::replay_fixtures::load(&args.recording, args.stateful, config)?;
        let door = Door::new().with_greeting_timeout(args.header_timeout);
        return serve(&args, replay, door, admin, &what, true);
    }
    let reader = util::open_recording(&args.recording)?;
    let (realism, seed) = realism(&args)?;
    // Streams keep their recorded pacing unless the user asked for none at all.
    let recorded_latency = args.latency.as_deref().is_none_or(|l| l.trim() != "none");
    let config = ReplayConfig {
        realism,
        seed,
        recorded_latency,
        repeat: match args.repeat {
            Repeat::Last => RepeatPolicy::Last,
            Repeat::Cycle => RepeatPolicy::Cycle,
            Repeat::NotFound => RepeatPolicy::NotFound,
        },
        timeouts: client_timeouts(&args),
        ..ReplayConfig::default()
    };
    // Only an index of the recording stays in memory; answers are read from it on demand.
    let replay = Replay::from_recording(reader, config)
        .with_context(|| format!("replaying {}", args.recording.display()))?;
    // Offer h2 over TLS when the recorded service spoke it, so clients pick what they used.
    let alpn: &[&[u8]] = if replay.spoke_h2() {
        &crate::tls::ALPN_H2_H1
    } else {
        &crate::tls::ALPN_H1
    };
    // The mf CA is loaded (or created) only when a TLS listener needs it here, or when the
    // first CONNECT is intercepted — never just because a replay started.
    let listener_tls = util::listener_tls(
        args.tls,
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
        None,
        alpn,
    )?;
    let what = format!(
        "replaying {} exchanges from {}",
        replay.len(),
        args.recording.display()
    );
    let door = Door::new()
        .with_tls(listener_tls)
        .with_intercept(Some(connect_interceptor()))
        .with_greeting_timeout(args.header_timeout);
    serve(&args, replay, door, admin, &what, false)
}

/// `--admin`, checked: off loopback it needs a token.
fn admin_addr(args: &ReplayArgs) -> anyhow::Result<Option<std::net::SocketAddr>> {
    admin_addr_of(args.admin.as_deref(), admin_token(args)?.as_ref())
}

/// `--admin ADDR` checked against the token (shared with `mf record`).
pub(super) fn admin_addr_of(
    admin: Option<&str>,
    token: Option<&Secret>,
) -> anyhow::Result<Option<std::net::SocketAddr>> {
    let Some(a) = admin else {
        return Ok(None);
    };
    let addr: std::net::SocketAddr = a
        .parse()
        .with_context(|| format!("--admin {a}: expected IP:PORT"))?;
    if !addr.ip().is_loopback() && token.is_none() {
        bail!(
            "--admin {addr} is reachable from other hosts: set --admin-token (or MF_ADMIN_TOKEN)"
        );
    }
    Ok(Some(addr))
}

/// Serves `replay` through `door` (and the admin API) until Ctrl-C; `what` says what is
/// served, for the start-up line. With `--upstream`, misses are forwarded and kept in the
/// recording (or the fixtures folder, `fixtures`).
fn serve(
    args: &ReplayArgs,
    replay: Arc<Replay>,
    door: Door,
    admin: Option<std::net::SocketAddr>,
    what: &str,
    fixtures: bool,
) -> anyhow::Result<u8> {
    let keeper = match &args.upstream {
        Some(url) => {
            let trust = crate::tls::UpstreamTls {
                extra_ca: args.to.upstream_ca.clone(),
                insecure: args.to.insecure,
            };
            if trust.insecure {
                eprintln!("mf: WARNING: --insecure: the upstream's certificate is NOT verified; anyone on the path can read and alter what is kept");
            }
            let (hook, keeper) =
                super::record_on_miss::hook(url, &trust, &args.recording, fixtures)?;
            replay.set_miss_hook(hook);
            Some(keeper)
        }
        None => None,
    };
    let tls = if door.has_tls() { " (TLS)" } else { "" };
    let rt = util::runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener
            .local_addr()
            .context("reading the listen address")?;
        let admin = match admin {
            Some(addr) => {
                let l = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on --admin {addr}"))?;
                if l.local_addr().ok() == Some(local) {
                    bail!("--admin must not be the traffic port");
                }
                Some(l)
            }
            None => None,
        };
        let exporter = match &args.otlp {
            Some(url) => {
                let e = crate::net::otlp::Exporter::start(url, "mf replay", replay.metrics())?;
                replay.set_exporter(e.clone());
                Some(e)
            }
            None => None,
        };
        // Installed before the announcement: a Ctrl-C right after it is a clean stop.
        let stop = crate::net::termination_signal();
        let misses = match &args.upstream {
            Some(url) => format!(", misses forwarded to {url} and kept"),
            None => String::new(),
        };
        eprintln!("mf: listening on {local}{tls}, {what}{misses} (Ctrl-C to stop)");
        let s = replay.planner().settings();
        let seed = replay.planner().seed();
        eprintln!(
            "mf: seed {seed} (--seed {seed} repeats this run), latency {}, mode {:?}, {} rules",
            s.latency.mode,
            s.scenario.mode,
            s.rules.len()
        );
        let (trigger, shutdown) = crate::net::shutdown_pair();
        if let Some(l) = admin {
            let addr = l.local_addr().context("reading the admin address")?;
            eprintln!("mf: admin API at {addr} (GET /metrics, /api/state; viewer and control center at http://{addr}/)");
            tokio::spawn(crate::replay::admin::serve_with_pages(
                l,
                replay.clone(),
                admin_token(args)?.map(|t| t.expose().to_string()),
                Some(super::ui::viewer(&args.recording, true)?),
                shutdown.clone(),
            ));
        }
        tokio::spawn(async move {
            stop.await;
            trigger.trigger();
        });
        service::serve(listener, replay.clone(), shutdown, door).await;
        if let Some(e) = exporter {
            e.flush(std::time::Duration::from_secs(2)).await;
        }
        anyhow::Ok(())
    })?;
    eprintln!("mf: {}", replay.stats.summary());
    if let Some((kept, failed)) = replay.miss_counts() {
        eprintln!(
            "mf: {kept} misses answered by the upstream and kept, {failed} it did not answer"
        );
    }
    // Stop the server's tasks (and their handles on the writer), then flush what was kept.
    drop(rt);
    drop(replay);
    match keeper {
        Some(k) => k.finish(&args.recording),
        None => Ok(0),
    }
}

/// Answers `CONNECT` (apps pointed at the replay with `HTTPS_PROXY`) by intercepting TLS with
/// certificates minted from the mf CA, which is loaded — or created — on the first CONNECT.
fn connect_interceptor() -> Arc<dyn Interceptor> {
    Arc::new(LazyInterceptor::new(|| {
        let (ca, created) = crate::tls::Ca::init(&crate::tls::default_ca_dir())
            .map_err(|e| format!("loading the mf CA: {e}"))?;
        if created {
            eprintln!(
                "mf: created the mf CA; clients must trust {}",
                crate::tls::Ca::cert_path(ca.dir()).display()
            );
        }
        // The replay serves HTTP/2 and HTTP/1.1 in a tunnel alike: the client picks, as
        // it would with the real host (a gRPC client offers only h2).
        Ok(crate::tls::minting_server_config(
            Arc::new(ca),
            "localhost",
            &crate::tls::ALPN_H2_H1,
        ))
    }))
}
