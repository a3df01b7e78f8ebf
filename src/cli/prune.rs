//! `mf prune`: retention for a recording.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use clap::Args;

use super::util::{self, human_bytes};
use crate::store::{self, PruneRule};

/// Delete old exchanges (with their stream messages and the bodies nothing else uses) and
/// give the space back.
///
/// The deletion is one transaction: interrupted at any point, the recording is either as it
/// was or pruned, never half-pruned. The file is then compacted (VACUUM).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  mf prune api.db --older-than 30d\n  mf prune api.db --keep-last 10000"
)]
pub(crate) struct PruneArgs {
    /// The recording to prune (changed in place).
    #[arg(value_name = "FILE")]
    pub(crate) recording: PathBuf,

    /// Delete exchanges that started longer ago than this (`30d`, `12h`).
    #[arg(long, value_name = "AGE", value_parser = util::parse_duration,
          required_unless_present = "keep_last", conflicts_with = "keep_last")]
    pub(crate) older_than: Option<Duration>,

    /// Keep only the newest N exchanges.
    #[arg(long, value_name = "N")]
    pub(crate) keep_last: Option<u64>,
}

pub(super) fn run(args: PruneArgs) -> anyhow::Result<u8> {
    let rule = match (args.older_than, args.keep_last) {
        (_, Some(n)) => PruneRule::KeepLast(n),
        (Some(age), None) => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap_or_default();
            let cut = now.saturating_sub(age);
            PruneRule::StartedBefore(i64::try_from(cut.as_nanos()).unwrap_or(i64::MAX))
        }
        (None, None) => anyhow::bail!("give --older-than AGE or --keep-last N"),
    };
    let report = store::prune(&args.recording, rule)
        .with_context(|| format!("pruning {}", args.recording.display()))?;
    eprintln!(
        "mf: pruned {} exchanges ({} stream messages, {} blobs); {} kept; {} → {}",
        report.exchanges,
        report.messages,
        report.blobs,
        report.kept,
        human_bytes(report.bytes_before),
        human_bytes(report.bytes_after)
    );
    Ok(0)
}
