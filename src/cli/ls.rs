//! `mf ls`: list the exchanges of a recording.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::select::SelectArgs;
use super::util::{self, human_bytes};
use crate::store::ExchangeSummary;

/// List the exchanges in a recording.
#[derive(Debug, Args)]
pub(crate) struct LsArgs {
    /// The recording to list.
    #[arg(value_name = "FILE")]
    pub(crate) recording: PathBuf,

    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub(crate) json: bool,

    #[command(flatten)]
    pub(crate) select: SelectArgs,
}

pub(super) fn run(args: LsArgs) -> anyhow::Result<u8> {
    let reader = util::open_recording(&args.recording)?;
    let selection = args.select.selection();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if !args.json {
        writeln!(
            out,
            "{:>5}  {:<23}  {:<7}  {:<48}  {:>6}  {:>9}  {:>9}  {:>9}",
            "ID", "TIME (UTC)", "METHOD", "URL", "STATUS", "REQ", "RESP", "DURATION"
        )?;
    }
    // Rows stream from one query (SQLite does the filtering): a listing of millions of
    // exchanges needs no more memory than one row.
    let mut failed: Option<anyhow::Error> = None;
    reader
        .for_each_summary(&selection, &mut |row| {
            let written = if args.json {
                serde_json::to_writer(&mut out, &row)
                    .map_err(anyhow::Error::from)
                    .and_then(|()| Ok(out.write_all(b"\n")?))
            } else {
                writeln!(out, "{}", table_line(&row)).map_err(anyhow::Error::from)
            };
            match written {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        })
        .with_context(|| format!("reading {}", args.recording.display()))?;
    if let Some(e) = failed {
        return Err(e);
    }
    out.flush()?;
    Ok(0)
}

fn table_line(row: &ExchangeSummary) -> String {
    let time = u64::try_from(row.started_at_ns)
        .map(|ns| {
            humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns),
            )
            .to_string()
        })
        .unwrap_or_default();
    let time = time.trim_end_matches('Z').replacen('T', " ", 1);
    let (method, url) = match row.protocol.as_str() {
        "grpc" => (
            "gRPC".to_string(),
            row.url
                .rsplit_once("://")
                .map_or(row.url.as_str(), |(_, r)| r)
                .split_once('/')
                .map_or(row.url.clone(), |(_, p)| p.to_string()),
        ),
        _ => (row.method.clone(), row.url.clone()),
    };
    let mut url = url;
    if row.protocol == "websocket" || row.protocol == "grpc" {
        url = format!("{url} [{}→ {}←]", row.messages_in, row.messages_out);
    }
    let status = match (&row.status, &row.error) {
        (_, Some(_)) if row.status.is_none() => "ERR".to_string(),
        (Some(s), _) => match (&row.protocol[..], &row.grpc_status) {
            ("grpc", Some(g)) => format!("{s}/{g}"),
            _ => s.to_string(),
        },
        (None, _) => "-".to_string(),
    };
    let duration = row
        .duration_ms
        .map_or("-".to_string(), |ms| format!("{ms:.1}ms"));
    let url = if url.chars().count() > 48 {
        format!("{}…", url.chars().take(47).collect::<String>())
    } else {
        url
    };
    format!(
        "{:>5}  {:<23}  {:<7}  {:<48}  {:>6}  {:>9}  {:>9}  {:>9}",
        row.id,
        time,
        method,
        url,
        status,
        human_bytes(u64::try_from(row.request_bytes).unwrap_or(0)),
        human_bytes(u64::try_from(row.response_bytes).unwrap_or(0)),
        duration
    )
}
