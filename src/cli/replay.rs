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

    /// What identical requests get once their recorded answers are used up.
    #[arg(long, value_enum, default_value_t = Repeat::Last)]
    pub repeat: Repeat,
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
        ..ReplayConfig::default()
    };
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
            "mf: listening on {local}, replaying {} exchanges from {} (Ctrl-C to stop)",
            exchanges.len(),
            args.recording.display()
        );
        let (trigger, shutdown) = crate::net::shutdown_pair();
        tokio::spawn(async move {
            crate::net::termination_signal().await;
            trigger.trigger();
        });
        server::serve(listener, replay.clone(), shutdown).await;
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
