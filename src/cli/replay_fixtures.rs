//! `mf replay DIR`: serve a fixtures folder written by `mf infer`.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use super::util;
use crate::net::door::Door;
use crate::replay::fixtures::FixtureSource;
use crate::replay::{service, Replay, ReplayConfig};
use crate::store::fixtures;

pub(super) fn run(
    dir: &Path,
    listen: &str,
    stateful: bool,
    config: ReplayConfig,
) -> anyhow::Result<u8> {
    let set = fixtures::read_dir(dir)
        .with_context(|| format!("reading fixtures folder {}", dir.display()))?;
    let source = Arc::new(FixtureSource::new(&set, stateful));
    let endpoints = source.len();
    let replay = Replay::from_source(source, config).context("setting up metrics")?;
    let rt = util::runtime()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen}"))?;
        let local = listener
            .local_addr()
            .context("reading the listen address")?;
        eprintln!(
            "mf: listening on {local}, serving {endpoints} endpoints from {}{} (Ctrl-C to stop)",
            dir.display(),
            if stateful { ", stateful" } else { "" }
        );
        let (trigger, shutdown) = crate::net::shutdown_pair();
        tokio::spawn(async move {
            crate::net::termination_signal().await;
            trigger.trigger();
        });
        service::serve(listener, replay.clone(), shutdown, Door::new()).await;
        anyhow::Ok(())
    })?;
    eprintln!("mf: {}", replay.stats.summary());
    Ok(0)
}
