//! `mf patterns`: print the sequence patterns `mf infer` stored in a recording.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::util;

/// Print the sequence patterns inferred from a recording (run `mf infer` first).
///
/// Ordering rules with support and confidence, value flows (an id or token from one response
/// reused in a later request), retries, and endpoint transitions.
#[derive(Debug, Args)]
#[command(after_help = "Example:\n  mf infer api.db -o fixtures && mf patterns api.db")]
pub(crate) struct PatternsArgs {
    /// The recording.
    #[arg(value_name = "FILE")]
    pub(crate) recording: PathBuf,

    /// One JSON object per line instead of text.
    #[arg(long)]
    pub(crate) json: bool,

    /// Only patterns of this kind (ordering, value_flow, retry, transition).
    #[arg(long, value_name = "KIND")]
    pub(crate) kind: Option<String>,
}

pub(super) fn run(args: PatternsArgs) -> anyhow::Result<u8> {
    let reader = util::open_recording(&args.recording)?;
    let patterns = reader
        .patterns()
        .with_context(|| format!("reading patterns of {}", args.recording.display()))?;
    if patterns.is_empty() {
        eprintln!(
            "mf: no patterns stored in {}; run `mf infer` on it first",
            args.recording.display()
        );
        return Ok(0);
    }
    let mut out = std::io::stdout().lock();
    for p in patterns
        .iter()
        .filter(|p| args.kind.as_ref().is_none_or(|k| *k == p.kind))
    {
        let line = if args.json {
            serde_json::json!({"kind": p.kind, "summary": p.summary, "detail": p.detail})
                .to_string()
        } else {
            format!("{:<11} {}", p.kind, p.summary)
        };
        writeln!(out, "{line}")?;
    }
    Ok(0)
}
