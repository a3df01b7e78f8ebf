//! `mf export`: a recording in another tool's format (HAR 1.2, curl commands).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use base64::Engine;
use clap::{Args, ValueEnum};
use serde_json::json;

use super::select::SelectArgs;
use super::util;
use crate::model::{Body, Exchange, Header, HeaderList};
use crate::store::{RecordingRead, Selection};
use crate::vocab::secrets;

/// Export a recording for other tools (browser dev tools, HAR viewers).
#[derive(Debug, Args)]
pub(crate) struct ExportArgs {
    /// The recording.
    #[arg(value_name = "FILE")]
    pub(crate) recording: PathBuf,

    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Har)]
    pub(crate) format: Format,

    /// Write here instead of stdout.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub(crate) output: Option<PathBuf>,

    #[command(flatten)]
    pub(crate) select: SelectArgs,

    /// Export credentials and secret fields as recorded. By default they are replaced by
    /// `mf-redacted-…` placeholders, as `mf record` does (a recording made with
    /// --keep-secrets holds them).
    #[arg(long)]
    pub(crate) keep_secrets: bool,
}

/// Export formats.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum Format {
    /// HTTP Archive 1.2 (JSON).
    Har,
    /// One curl command per request (a shell script), for bug reports.
    Curl,
}

pub(super) fn run(args: ExportArgs) -> anyhow::Result<u8> {
    let reader = util::open_recording(&args.recording)?;
    let selection = args.select.selection();
    let reading = || format!("reading {}", args.recording.display());
    let sanitizer = if args.keep_secrets {
        None
    } else {
        Some(Sanitizer::new()?)
    };
    let clean = |ex: &mut Exchange| {
        if let Some(s) = &sanitizer {
            s.apply(ex);
        }
    };
    // Both formats stream, one exchange at a time: any size of recording in flat memory
    // (a HAR built whole in memory took 10.7 GB for a 664k-exchange recording).
    let mut out: Box<dyn Write> = match &args.output {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("writing {}", path.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout().lock())),
    };
    match args.format {
        Format::Curl => {
            write_script(reader.as_ref(), &selection, &clean, &mut out).with_context(reading)?;
        }
        Format::Har => {
            write_har(reader.as_ref(), &selection, &clean, &mut out).with_context(reading)?
        }
    }
    Ok(0)
}

/// Writes a HAR 1.2 document entry by entry.
fn write_har(
    reader: &dyn RecordingRead,
    selection: &Selection,
    clean: &dyn Fn(&mut Exchange),
    out: &mut dyn Write,
) -> anyhow::Result<()> {
    let creator = json!({ "name": "mf", "version": env!("CARGO_PKG_VERSION") });
    write!(
        out,
        "{{\n  \"log\": {{\n    \"version\": \"1.2\",\n    \"creator\": {creator},\n    \"entries\": ["
    )?;
    let mut first = true;
    write_each(reader, selection, clean, out, |ex, out| {
        out.write_all(if first { b"\n      " } else { b",\n      " })?;
        first = false;
        serde_json::to_writer_pretty(&mut *out, &har_entry(ex)).map_err(std::io::Error::from)
    })?;
    out.write_all(b"\n    ]\n  }\n}\n")?;
    out.flush()?;
    Ok(())
}

/// Walks the selected exchanges in recording order, each sanitized by `clean`, and writes
/// each with `write`; the first write error stops the walk and is the result.
fn write_each(
    reader: &dyn RecordingRead,
    selection: &Selection,
    clean: &dyn Fn(&mut Exchange),
    out: &mut dyn Write,
    mut write: impl FnMut(&Exchange, &mut dyn Write) -> std::io::Result<()>,
) -> anyhow::Result<()> {
    let mut failed = None;
    reader.for_each_selected(selection, &mut |mut ex| {
        clean(&mut ex);
        match write(&ex, out) {
            Ok(()) => true,
            Err(e) => {
                failed = Some(e);
                false
            }
        }
    })?;
    match failed {
        Some(e) => Err(e.into()),
        None => Ok(()),
    }
}

/// Redacts secrets with the capture rules, under a key made for this export only.
pub(super) struct Sanitizer {
    keys: secrets::Placeholders,
    rules: secrets::Rules,
}

impl Sanitizer {
    fn new() -> anyhow::Result<Sanitizer> {
        Ok(Sanitizer {
            keys: secrets::Placeholders::random()?,
            rules: secrets::Rules::new(&[]),
        })
    }

    fn apply(&self, ex: &mut Exchange) {
        secrets::redact_exchange(ex, &mut secrets::Redaction::new(&self.rules, &self.keys));
    }
}

fn har_headers(h: &[Header]) -> serde_json::Value {
    serde_json::Value::Array(
        h.iter()
            .map(|h| json!({ "name": h.name, "value": h.value_str() }))
            .collect(),
    )
}

/// HAR `content`; a streamed body adds `_chunks` (HAR's custom-field form): when each
/// recorded chunk arrived, in milliseconds after the entry's start, and its size.
fn har_content(body: &Body, mime: &str) -> serde_json::Value {
    let mut content = match std::str::from_utf8(&body.data) {
        Ok(text) => json!({ "size": body.size, "mimeType": mime, "text": text }),
        Err(_) => json!({
            "size": body.size, "mimeType": mime, "encoding": "base64",
            "text": base64::engine::general_purpose::STANDARD.encode(&body.data),
        }),
    };
    if !body.chunks.is_empty() {
        content["_chunks"] = body
            .chunks
            .iter()
            .map(|c| json!({ "time": c.offset_ns as f64 / 1e6, "size": c.len }))
            .collect();
    }
    content
}

fn har_entry(ex: &Exchange) -> serde_json::Value {
    let req = &ex.request;
    let started = u64::try_from(ex.started_at_ns)
        .map(|ns| {
            humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns),
            )
            .to_string()
        })
        .unwrap_or_default();
    let ms = |ns: Option<u64>| ns.map_or(-1.0, |n| n as f64 / 1e6);
    let t = &ex.timings;
    let send = ms(t.request_end_ns).max(0.0);
    let wait = (ms(t.response_first_byte_ns) - send).max(0.0);
    let receive = (ms(t.response_end_ns) - ms(t.response_first_byte_ns)).max(0.0);
    let query: Vec<serde_json::Value> = req
        .query()
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (n, v) = p.split_once('=').unwrap_or((p, ""));
                    json!({ "name": n, "value": v })
                })
                .collect()
        })
        .unwrap_or_default();
    let mut request = json!({
        "method": req.method, "url": ex.url(), "httpVersion": req.version,
        "headers": har_headers(&req.headers), "queryString": query, "cookies": [],
        "headersSize": -1, "bodySize": req.body.size,
    });
    if !req.body.is_empty() {
        let mime = req.headers.header_str("content-type").unwrap_or_default();
        let content = har_content(&req.body, &mime);
        request["postData"] = json!({ "mimeType": mime, "text": content["text"] });
    }
    let response = match &ex.response {
        Some(r) => {
            let mime = r.headers.header_str("content-type").unwrap_or_default();
            json!({
                "status": r.status, "statusText": r.reason, "httpVersion": r.version,
                "headers": har_headers(&r.headers), "cookies": [], "content": har_content(&r.body, &mime),
                "redirectURL": r.headers.header_str("location").unwrap_or_default(),
                "headersSize": -1, "bodySize": r.body.size,
            })
        }
        None => json!({
            "status": 0, "statusText": "", "httpVersion": "", "headers": [], "cookies": [],
            "content": { "size": 0, "mimeType": "" }, "redirectURL": "", "headersSize": -1, "bodySize": -1,
            "_error": ex.error.as_ref().map(|e| e.message.as_str()),
            "_errorKind": ex.error.as_ref().map(|e| e.kind),
        }),
    };
    json!({
        "startedDateTime": started,
        "time": ms(t.response_end_ns).max(0.0),
        "request": request,
        "response": response,
        "cache": {},
        "timings": { "send": send, "wait": wait, "receive": receive },
        "serverIPAddress": ex.server_addr.as_deref().and_then(|a| a.rsplit_once(':').map(|(h, _)| h.to_string())),
        "connection": ex.connection_id.to_string(),
    })
}

/// `--format curl`: a shell script of one command per selected exchange that sends it
/// again, written to `out` as the exchanges are read.
///
/// # Errors
/// Reading the recording or writing `out` failed.
fn write_script(
    reader: &dyn RecordingRead,
    selection: &Selection,
    clean: &dyn Fn(&mut Exchange),
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    out.write_all(b"#!/bin/sh\n")?;
    write_each(reader, selection, clean, out, |ex, out| {
        out.write_all(crate::vocab::curl::command(ex).as_bytes())
    })?;
    out.flush()?;
    Ok(())
}
