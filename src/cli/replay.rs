//! `mf replay`: serve a recording back.

use std::path::PathBuf;
use std::sync::atomic::Ordering;

use anyhow::Context;
use clap::{Args, ValueEnum};

use super::util;
use crate::replay::matcher::RepeatPolicy;
use crate::replay::server::{self, Replay, ReplayConfig};

/// Serve a recording back to real clients, the upstream gone.
///
/// Requests are matched on method, path, query (in any order) and body (JSON compared by
/// value). Identical requests get the recorded answers in recorded order. A request that
/// matches nothing gets a 404 whose JSON body lists the closest recorded requests and why
/// each did not match.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  mf replay api.db --listen 127.0.0.1:8080")]
pub struct ReplayArgs {
    /// The recording to serve.
    #[arg(value_name = "FILE")]
    pub recording: PathBuf,

    /// Address to listen on.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8080")]
    pub listen: String,

    /// Listen with TLS, using a certificate minted from the mf CA.
    #[arg(long)]
    pub tls: bool,

    /// Listen with TLS using this certificate chain (PEM); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// Private key (PEM) for --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// What identical requests get once their recorded answers are used up.
    #[arg(long, value_enum, default_value_t = Repeat::Last)]
    pub repeat: Repeat,

    /// Timing of streamed answers (gRPC messages, WebSocket frames): as recorded, or at once.
    #[arg(long, value_enum, default_value_t = Latency::Recorded)]
    pub latency: Latency,
}

/// `--latency` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Latency {
    /// Keep the recorded delays between a client message and the answers to it.
    Recorded,
    /// Send answers as soon as they are due by order.
    None,
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
    let reader = util::open_recording(&args.recording)?;
    let exchanges = reader
        .load_all()
        .with_context(|| format!("reading {}", args.recording.display()))?;
    drop(reader);
    let config = ReplayConfig {
        repeat: match args.repeat {
            Repeat::Last => RepeatPolicy::Last,
            Repeat::Cycle => RepeatPolicy::Cycle,
            Repeat::NotFound => RepeatPolicy::NotFound,
        },
        recorded_latency: matches!(args.latency, Latency::Recorded),
        ..ReplayConfig::default()
    };
    // CONNECT interception (apps using HTTPS_PROXY) needs the mf CA; it is created on first use.
    let (ca, created) =
        crate::tls::Ca::init(&crate::tls::default_ca_dir()).context("loading the mf CA")?;
    if created {
        eprintln!(
            "mf: created the mf CA; clients must trust {}",
            crate::tls::Ca::cert_path(ca.dir()).display()
        );
    }
    let ca = std::sync::Arc::new(ca);
    let config = ReplayConfig {
        intercept_tls: Some(crate::tls::minting_server_config(
            ca.clone(),
            "localhost",
            &crate::tls::ALPN_H1,
        )),
        ..config
    };
    // Offer h2 over TLS when the recorded service spoke it, so clients pick what they used.
    let spoke_h2 = exchanges.iter().any(|e| {
        matches!(
            e.protocol(),
            crate::model::Protocol::H2 | crate::model::Protocol::Grpc
        )
    });
    let alpn: &[&[u8]] = if spoke_h2 {
        &crate::tls::ALPN_H2_H1
    } else {
        &crate::tls::ALPN_H1
    };
    let listener_tls = util::listener_tls(
        args.tls,
        args.tls_cert.as_deref(),
        args.tls_key.as_deref(),
        Some(ca),
        alpn,
    )?;
    let replay = Replay::new(&exchanges, config);
    let rt = util::runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let local = listener
            .local_addr()
            .context("reading the listen address")?;
        eprintln!(
            "mf: listening on {local}{}, replaying {} exchanges from {} (Ctrl-C to stop)",
            if args.tls || args.tls_cert.is_some() {
                " (TLS)"
            } else {
                ""
            },
            exchanges.len(),
            args.recording.display()
        );
        let (trigger, shutdown) = crate::net::shutdown_pair();
        tokio::spawn(async move {
            crate::net::termination_signal().await;
            trigger.trigger();
        });
        server::serve(listener, replay.clone(), shutdown, listener_tls).await;
        anyhow::Ok(())
    })?;
    let s = &replay.stats;
    eprintln!(
        "mf: served {} requests ({} matched, {} unmatched, {} bad)",
        s.requests.load(Ordering::Relaxed),
        s.matched.load(Ordering::Relaxed),
        s.unmatched.load(Ordering::Relaxed),
        s.bad_requests.load(Ordering::Relaxed)
    );
    Ok(0)
}
