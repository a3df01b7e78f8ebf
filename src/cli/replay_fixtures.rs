//! `mf replay DIR`: a fixtures folder written by `mf infer`, loaded as a replay.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use crate::replay::fixtures::FixtureSource;
use crate::replay::{Replay, ReplayConfig};
use crate::store::fixtures;

/// The replay of fixtures folder `dir`, and a description of it for the start-up line.
pub(super) fn load(
    dir: &Path,
    stateful: bool,
    config: ReplayConfig,
) -> anyhow::Result<(Arc<Replay>, String)> {
    let set = fixtures::read_dir(dir)
        .with_context(|| format!("reading fixtures folder {}", dir.display()))?;
    let source = Arc::new(FixtureSource::new(&set, stateful));
    let what = format!(
        "serving {} endpoints from {}{}",
        source.len(),
        dir.display(),
        if stateful { ", stateful" } else { "" }
    );
    let replay = Replay::from_source(source, config).context("setting up metrics")?;
    Ok((replay, what))
}
