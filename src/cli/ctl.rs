//! `mf ctl`: drive a running replay through its admin API (`mf replay --admin ADDR`).

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Subcommand};

use super::replay::{parse_secret, ModeArg, Secret};
use crate::replay::rules::ConfigFile;

/// Change a running replay's mode, latency and rules, or read its stats and metrics.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  mf ctl --admin 127.0.0.1:9901 mode error --error-rate 0.5\n  \
    mf ctl preset network-issues\n  mf ctl stats"
)]
pub struct CtlArgs {
    /// The replay's admin address (its --admin).
    #[arg(
        long,
        value_name = "ADDR",
        env = "MF_ADMIN",
        default_value = "127.0.0.1:9901",
        global = true
    )]
    pub admin: String,

    /// Bearer token, when the replay requires one.
    #[arg(long, value_name = "TOKEN", env = "MF_ADMIN_TOKEN", hide_env_values = true, global = true, value_parser = parse_secret)]
    pub token: Option<Secret>,

    #[command(subcommand)]
    pub command: CtlCommand,
}

/// `mf ctl` subcommands.
#[derive(Debug, Subcommand)]
pub enum CtlCommand {
    /// Print the seed and every live setting.
    State,
    /// Switch the scenario mode; knobs not given take the mode's defaults.
    Mode {
        #[arg(value_enum)]
        mode: ModeArg,
        #[arg(long, value_name = "RATE")]
        error_rate: Option<f64>,
        #[arg(long, value_name = "CODES", value_delimiter = ',')]
        error_status: Option<Vec<u16>>,
        #[arg(long, value_name = "FACTOR")]
        latency_multiplier: Option<f64>,
        #[arg(long, value_name = "RATE")]
        timeout_rate: Option<f64>,
        #[arg(long, value_name = "RATE")]
        reset_rate: Option<f64>,
    },
    /// Set the latency (none, recorded, fixed:50ms, scale:2.5, profile, uniform:10ms..200ms).
    Latency {
        mode: String,
        #[arg(long, value_name = "DURATION")]
        jitter: Option<String>,
        #[arg(long, value_name = "BYTES_PER_SEC")]
        bandwidth: Option<u64>,
    },
    /// Apply a preset (built in, or from the replay's config file).
    Preset { name: String },
    /// Print the rules, or replace them with those of a config file.
    Rules {
        /// A config file whose `rules:` replace the live ones.
        #[arg(long, value_name = "FILE", conflicts_with = "clear")]
        set: Option<PathBuf>,
        /// Remove every rule.
        #[arg(long)]
        clear: bool,
    },
    /// Start the sequence counters (recorded order, nth/every rules) and the seed over.
    Reset,
    /// Print request, fault and rule counts.
    Stats,
    /// Print the Prometheus metrics.
    Metrics,
}

pub(super) fn run(args: CtlArgs) -> anyhow::Result<u8> {
    let (method, path, body) = match &args.command {
        CtlCommand::State => ("GET", "/api/state", None),
        CtlCommand::Mode {
            mode,
            error_rate,
            error_status,
            latency_multiplier,
            timeout_rate,
            reset_rate,
        } => {
            let mut v = serde_json::json!({ "mode": crate::replay::scenario::Mode::from(*mode) });
            let put = |v: &mut serde_json::Value, k: &str, x: serde_json::Value| {
                if !x.is_null() {
                    v[k] = x;
                }
            };
            put(&mut v, "error_rate", serde_json::json!(error_rate));
            put(&mut v, "error_status", serde_json::json!(error_status));
            put(
                &mut v,
                "latency_multiplier",
                serde_json::json!(latency_multiplier),
            );
            put(&mut v, "timeout_rate", serde_json::json!(timeout_rate));
            put(&mut v, "reset_rate", serde_json::json!(reset_rate));
            ("PUT", "/api/mode", Some(v.to_string()))
        }
        CtlCommand::Latency {
            mode,
            jitter,
            bandwidth,
        } => {
            let v = serde_json::json!({ "mode": mode, "jitter": jitter, "bandwidth": bandwidth });
            ("PUT", "/api/latency", Some(v.to_string()))
        }
        CtlCommand::Preset { name } => (
            "POST",
            "/api/preset",
            Some(serde_json::json!({ "name": name }).to_string()),
        ),
        CtlCommand::Rules {
            set: None,
            clear: false,
        } => ("GET", "/api/rules", None),
        CtlCommand::Rules { set, .. } => {
            let rules = match set {
                Some(path) => {
                    let text = std::fs::read_to_string(path)
                        .with_context(|| format!("reading {}", path.display()))?;
                    ConfigFile::parse(&text)
                        .with_context(|| format!("in {}", path.display()))?
                        .rules
                }
                None => vec![],
            };
            (
                "PUT",
                "/api/rules",
                Some(serde_json::to_string(&rules).context("encoding rules")?),
            )
        }
        CtlCommand::Reset => ("POST", "/api/reset", None),
        CtlCommand::Stats => ("GET", "/api/stats", None),
        CtlCommand::Metrics => ("GET", "/metrics", None),
    };
    let (status, text) = request(
        &args.admin,
        args.token.as_ref().map(Secret::expose),
        method,
        path,
        body.as_deref(),
    )
    .with_context(|| format!("calling the admin API at {}", args.admin))?;
    if !(200..300).contains(&status) {
        let message = serde_json::from_str::<serde_json::Value>(&text)
            .ok()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(String::from))
            .unwrap_or(text);
        bail!("{method} {path}: {status}: {}", message.trim());
    }
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    Ok(0)
}

/// One HTTP/1.1 request with `Connection: close`; returns status and body. The admin API
/// answers with `Content-Length`, so reading to EOF gives the whole body.
fn request(
    addr: &str,
    token: Option<&str>,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> anyhow::Result<(u16, String)> {
    let target = addr
        .to_socket_addrs()
        .with_context(|| format!("resolving {addr}"))?
        .next()
        .context("no address")?;
    let mut s =
        TcpStream::connect_timeout(&target, Duration::from_secs(5)).context("connecting")?;
    s.set_read_timeout(Some(Duration::from_secs(30)))?;
    let body = body.unwrap_or("");
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    // Every change says it is JSON, even with no body: the admin API refuses mutations with
    // any other content type (a cross-site page can send those without a preflight).
    if !body.is_empty() || method != "GET" {
        req.push_str("Content-Type: application/json\r\n");
    }
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).context("sending")?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).context("reading the answer")?;
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .context("the admin API sent no complete answer")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("malformed status line")?;
    Ok((
        status,
        String::from_utf8_lossy(&raw[split + 4..]).into_owned(),
    ))
}
