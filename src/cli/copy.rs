//! `mf copy`: one recording into another, between a file and a database either way.

use std::collections::HashSet;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::util;
use crate::model::ExchangeSink;
use crate::store::{self, display_location, Meta, StoreError, Writer, WriterConfig};

/// Copy a recording: a file into a PostgreSQL database, a database into a file (or file to
/// file, database to database).
///
/// Exchanges stream through one at a time (memory stays flat) and keep their connection ids,
/// timings, bodies and messages. The destination is created when missing and appended to
/// otherwise; exchanges it already holds (same connection, sequence number and start time)
/// are skipped, so a copy run again after an interruption only adds what is missing.
/// Patterns stored by `mf infer` are not copied (run `mf infer` on the copy). Exit status: 0
/// when everything was copied, 2 on an error, 3 when some exchanges could not be written.
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  mf copy api.db 'postgres://mf@db.internal/traffic?recording=checkout'\n  mf copy 'postgres://mf@db.internal/traffic?recording=checkout' local.db"
)]
pub struct CopyArgs {
    /// The recording to read: a file, or postgres://user@host/db?recording=NAME.
    #[arg(value_name = "SRC")]
    pub src: PathBuf,

    /// The recording to append to (created when missing): a file or a database URL.
    #[arg(value_name = "DST")]
    pub dst: PathBuf,

    /// The recorder name stored with the copied exchanges in a database (default: this
    /// machine's host name).
    #[arg(long, value_name = "NAME")]
    pub recorder: Option<String>,
}

/// What identifies an exchange across copies: its connection, its place on it, its start.
type Key = (u64, u32, i64);

pub(super) fn run(args: CopyArgs) -> anyhow::Result<u8> {
    let src_shown = display_location(&args.src);
    let dst_shown = display_location(&args.dst);
    let reader = util::open_recording(&args.src)?;
    let present = present_keys(&args.dst)
        .with_context(|| format!("reading what {dst_shown} already holds"))?;
    let meta = Meta {
        source: format!("copy of {src_shown}"),
        command_line: util::command_line(),
        recorder: args.recorder.clone().unwrap_or_default(),
    };
    // Offline: the copy waits for the destination rather than holding exchanges in memory.
    let (writer, handle) = Writer::spawn(&args.dst, &meta, WriterConfig::blocking())
        .with_context(|| format!("opening {dst_shown} for writing"))?;
    let mut skipped = 0u64;
    let walked = reader.for_each(&mut |ex| {
        if present.contains(&(ex.connection_id, ex.seq, ex.started_at_ns)) {
            skipped += 1;
        } else {
            handle.record(Box::new(ex));
        }
        true
    });
    drop(handle);
    let summary = writer.finish().context("flushing the copy")?;
    walked.with_context(|| format!("reading {src_shown}"))?;
    eprintln!(
        "mf: copied {} exchanges from {src_shown} to {dst_shown} ({skipped} already there)",
        summary.exchanges
    );
    Ok(util::not_stored_exit(&summary))
}

/// The keys of the exchanges `dst` already holds; none when it does not exist yet.
fn present_keys(dst: &std::path::Path) -> anyhow::Result<HashSet<Key>> {
    let reader = match store::open_reader(dst) {
        Ok(r) => r,
        Err(StoreError::NotFound { .. }) => return Ok(HashSet::new()),
        Err(e) => return Err(e.into()),
    };
    let mut keys = HashSet::new();
    reader.for_each_summary(&store::Selection::default(), &mut |s| {
        keys.insert((
            u64::try_from(s.connection_id).unwrap_or(0),
            u32::try_from(s.seq).unwrap_or(0),
            s.started_at_ns,
        ));
        true
    })?;
    Ok(keys)
}
