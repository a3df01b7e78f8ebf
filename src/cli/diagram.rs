//! `mf diagram`: a sequence diagram of recorded exchanges, as Mermaid source.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::select::parse_instant;
use super::util;
use crate::store::Selection;
use crate::ui::diagram::{mermaid, MAX_EXCHANGES};

/// Print a Mermaid `sequenceDiagram` of one connection, one trace id or a time window.
///
/// Participants are the client, mf and each host addressed; arrows are the requests and the
/// answers with their status and time. Paste the output into any Mermaid renderer, or see
/// the same diagram drawn in `mf ui`.
#[derive(Debug, Args)]
#[command(
    group = clap::ArgGroup::new("which").required(true).multiple(true).args(["trace", "connection", "since", "until"]),
    after_help = "Examples:\n  mf diagram api.db --connection 3\n  mf diagram api.db --trace 4bf92f3577b34da6a3ce929d0e0e4736\n  mf diagram api.db --since 2026-12-01T10:00:00Z --until 2026-12-01T10:05:00Z"
)]
pub(crate) struct DiagramArgs {
    /// The recording.
    #[arg(value_name = "FILE")]
    pub(crate) recording: PathBuf,

    /// The exchanges of this W3C trace id.
    #[arg(long, value_name = "ID")]
    pub(crate) trace: Option<String>,

    /// The exchanges of this client connection (the `connection_id` of `mf ls --json`).
    #[arg(long, value_name = "N")]
    pub(crate) connection: Option<i64>,

    /// Exchanges started at or after this: a duration ago (`10m`) or an RFC 3339 time.
    #[arg(long, value_name = "WHEN", value_parser = parse_instant)]
    pub(crate) since: Option<i64>,

    /// Exchanges started before this (same forms as --since).
    #[arg(long, value_name = "WHEN", value_parser = parse_instant)]
    pub(crate) until: Option<i64>,
}

pub(super) fn run(args: DiagramArgs) -> anyhow::Result<u8> {
    let reader = util::open_recording(&args.recording)?;
    let selection = Selection {
        trace_id: args.trace.clone(),
        connection_id: args.connection,
        since_ns: args.since,
        until_ns: args.until,
        ..Selection::default()
    };
    let mut rows = Vec::new();
    reader
        .for_each_summary(&selection, &mut |s| {
            rows.push(s);
            rows.len() <= MAX_EXCHANGES
        })
        .with_context(|| format!("reading {}", args.recording.display()))?;
    if rows.is_empty() {
        eprintln!("mf: no exchange matches");
        return Ok(1);
    }
    let more = rows.len() > MAX_EXCHANGES;
    rows.truncate(MAX_EXCHANGES);
    let mut out = std::io::stdout().lock();
    out.write_all(mermaid(&rows, more).as_bytes())?;
    out.flush()?;
    Ok(0)
}
