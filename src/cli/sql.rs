//! `mf sql`: read-only SQL over a recording's documented views.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use base64::Engine;
use clap::Args;

use crate::store::{QueryOutput, SqlQuery, SqlValue};

/// Run one read-only SQL query over a recording.
///
/// Views: `exchanges_v` (one row per exchange: id, protocol, started_at, host, method, path,
/// target, status, req_headers/resp_headers as JSON `[[name, value], …]`, req_body/resp_body
/// as blob hashes, sizes, duration_ms, ttfb_ms, error, error_kind, trace_id, tags) and
/// `messages_v` (exchange_id, idx, direction, offset_ms, kind, size, data). Functions:
/// `body_text(hash)` (NULL unless UTF-8), `body(hash)`, `header(headers, 'name')`. The
/// recording is opened read-only; a statement that would write is refused (exit 2).
#[derive(Debug, Args)]
#[command(
    after_help = "Examples:\n  mf sql api.db \"SELECT method, path, status FROM exchanges_v WHERE status >= 500\"\n  mf sql api.db --json \"SELECT id, header(resp_headers, 'content-type') AS ct, body_text(resp_body) AS body FROM exchanges_v\""
)]
pub(crate) struct SqlArgs {
    /// The recording.
    #[arg(value_name = "FILE")]
    pub(crate) recording: PathBuf,

    /// One SQL statement (SELECT, WITH, read-only PRAGMA).
    #[arg(value_name = "QUERY")]
    pub(crate) query: String,

    /// One JSON object per row instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Rows the table buffers to size its columns; later rows are cut to those widths.
const TABLE_SAMPLE: usize = 1_000;
/// Widest a table column gets.
const MAX_WIDTH: usize = 60;

pub(super) fn run(args: SqlArgs) -> anyhow::Result<u8> {
    let query = SqlQuery::open(&args.recording)
        .with_context(|| format!("opening recording {}", args.recording.display()))?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut columns: Vec<String> = Vec::new();
    let mut sample: Vec<Vec<String>> = Vec::new();
    let mut widths: Option<Vec<usize>> = None;
    let mut failed: Option<std::io::Error> = None;
    let json = args.json;
    query.run(&args.query, &mut |item| {
        let written = match item {
            QueryOutput::Columns(names) => {
                columns = names;
                Ok(())
            }
            QueryOutput::Row(values) if json => {
                let object: serde_json::Map<String, serde_json::Value> = columns
                    .iter()
                    .cloned()
                    .zip(values.into_iter().map(json_value))
                    .collect();
                serde_json::to_writer(&mut out, &object)
                    .map_err(std::io::Error::from)
                    .and_then(|()| out.write_all(b"\n"))
            }
            QueryOutput::Row(values) => {
                let cells: Vec<String> = values.iter().map(cell_text).collect();
                match &widths {
                    Some(w) => write_line(&mut out, &cells, w),
                    None => {
                        sample.push(cells);
                        if sample.len() < TABLE_SAMPLE {
                            Ok(())
                        } else {
                            let w = column_widths(&columns, &sample);
                            let r = flush_sample(&mut out, &columns, &mut sample, &w);
                            widths = Some(w);
                            r
                        }
                    }
                }
            }
        };
        match written {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = failed {
        return Err(e.into());
    }
    if !json && widths.is_none() {
        let w = column_widths(&columns, &sample);
        flush_sample(&mut out, &columns, &mut sample, &w)?;
    }
    out.flush()?;
    Ok(0)
}

fn json_value(v: SqlValue) -> serde_json::Value {
    match v {
        SqlValue::Null => serde_json::Value::Null,
        SqlValue::Integer(n) => n.into(),
        SqlValue::Real(f) => {
            serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into)
        }
        SqlValue::Text(t) => t.into(),
        // Blobs (hashes, raw bodies) have no JSON form: base64 in an object says which it is.
        SqlValue::Blob(b) => {
            serde_json::json!({ "base64": base64::engine::general_purpose::STANDARD.encode(b) })
        }
    }
}

fn cell_text(v: &SqlValue) -> String {
    match v {
        SqlValue::Null => "NULL".into(),
        SqlValue::Integer(n) => n.to_string(),
        SqlValue::Real(f) => f.to_string(),
        // One line per row: newlines and tabs in text would break the table.
        SqlValue::Text(t) => t.replace(['\n', '\r', '\t'], " "),
        SqlValue::Blob(b) => {
            let hex: String = b.iter().take(16).map(|x| format!("{x:02x}")).collect();
            if b.len() > 16 {
                format!("x'{hex}…' ({} bytes)", b.len())
            } else {
                format!("x'{hex}'")
            }
        }
    }
}

fn column_widths(columns: &[String], rows: &[Vec<String>]) -> Vec<usize> {
    columns
        .iter()
        .enumerate()
        .map(|(i, c)| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|s| s.chars().count())
                .chain(std::iter::once(c.chars().count()))
                .max()
                .unwrap_or(0)
                .min(MAX_WIDTH)
        })
        .collect()
}

fn flush_sample(
    out: &mut impl Write,
    columns: &[String],
    sample: &mut Vec<Vec<String>>,
    widths: &[usize],
) -> std::io::Result<()> {
    write_line(out, columns, widths)?;
    for row in sample.drain(..) {
        write_line(out, &row, widths)?;
    }
    Ok(())
}

fn write_line(out: &mut impl Write, cells: &[String], widths: &[usize]) -> std::io::Result<()> {
    let line: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|(c, &w)| {
            let n = c.chars().count();
            if n > w {
                format!(
                    "{}…",
                    c.chars().take(w.saturating_sub(1)).collect::<String>()
                )
            } else {
                format!("{c}{}", " ".repeat(w - n))
            }
        })
        .collect();
    writeln!(out, "{}", line.join("  ").trim_end())
}
