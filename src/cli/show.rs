//! `mf show`: one exchange in full.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use serde_json::json;

use super::util;
use crate::model::{Body, Direction, Exchange, Header, HeaderList, MessageKind};

/// Print one exchange in full: request, response, timings, stream messages.
#[derive(Debug, Args)]
pub(crate) struct ShowArgs {
    /// The recording.
    #[arg(value_name = "FILE")]
    pub(crate) recording: PathBuf,

    /// Exchange id (from `mf ls`).
    #[arg(value_name = "ID")]
    pub(crate) id: i64,

    /// Print JSON (bodies as text when UTF-8, else base64-free byte arrays under `body_bytes`).
    #[arg(long)]
    pub(crate) json: bool,
}

pub(super) fn run(args: ShowArgs) -> anyhow::Result<u8> {
    let reader = util::open_recording(&args.recording)?;
    let ex = reader.load(args.id).with_context(|| {
        format!(
            "reading exchange {} of {}",
            args.id,
            args.recording.display()
        )
    })?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &to_json(&ex))?;
        writeln!(out)?;
    } else {
        write_text(&mut out, &ex)?;
    }
    Ok(0)
}

/// A body as JSON; `chunks` is the recorded chunk table (offsets in nanoseconds after the
/// exchange's start; empty when the body arrived at once) and an event stream also lists its
/// `events`, each at the offset of the chunk that completed it.
fn body_json(b: &Body, headers: &[Header], first_byte_ns: Option<u64>) -> serde_json::Value {
    let mut v = json!({
        "size": b.size, "truncated": b.truncated,
        "chunks": b.chunks.iter().map(|c| json!({"offset_ns": c.offset_ns, "len": c.len})).collect::<Vec<_>>(),
    });
    match std::str::from_utf8(&b.data) {
        Ok(t) => v["text"] = json!(t),
        Err(_) => v["hex"] = json!(hex(&b.data)),
    }
    if is_event_stream(headers) {
        v["events"] = sse_events(b, first_byte_ns)
            .into_iter()
            .map(|(offset_ns, text)| json!({"offset_ns": offset_ns, "text": text}))
            .collect();
    }
    v
}

fn is_event_stream(headers: &[Header]) -> bool {
    headers.header_str("content-type").is_some_and(|t| {
        t.split(';')
            .next()
            .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
    })
}

/// The events of a Server-Sent Events body: the lines of each event (up to its blank line)
/// and when it was complete, the offset of the chunk holding its last byte (`at_once_ns`,
/// the first response byte, for a body without a chunk table). An unterminated last event
/// is listed too: it is what the stream ended with.
fn sse_events(b: &Body, at_once_ns: Option<u64>) -> Vec<(Option<u64>, Vec<String>)> {
    let chunk_ends: Vec<(u64, u64)> = b
        .chunks
        .iter()
        .scan(0u64, |end, c| {
            *end += c.len;
            Some((*end, c.offset_ns))
        })
        .collect();
    let offset_at = |byte: usize| {
        chunk_ends
            .iter()
            .find(|(end, _)| *end > byte as u64)
            .or(chunk_ends.last())
            .map(|(_, at)| *at)
            .or(at_once_ns)
    };
    let mut events = Vec::new();
    let mut lines = Vec::new();
    let mut pos = 0usize;
    for raw in b.data.split_inclusive(|&c| c == b'\n') {
        pos += raw.len();
        let line = String::from_utf8_lossy(raw);
        let line = line.trim_end_matches(['\n', '\r']);
        if line.is_empty() {
            if !lines.is_empty() {
                events.push((offset_at(pos - 1), std::mem::take(&mut lines)));
            }
        } else {
            lines.push(line.to_string());
        }
    }
    if !lines.is_empty() {
        events.push((offset_at(b.data.len().saturating_sub(1)), lines));
    }
    events
}

fn headers_json(h: &[Header]) -> serde_json::Value {
    serde_json::Value::Array(h.iter().map(|h| json!([h.name, h.value_str()])).collect())
}

fn to_json(ex: &Exchange) -> serde_json::Value {
    let r = &ex.request;
    json!({
        "id": ex.id,
        "connection_id": ex.connection_id,
        "seq": ex.seq,
        "protocol": ex.protocol(),
        "started_at_ns": ex.started_at_ns,
        "client_addr": ex.client_addr,
        "server_addr": ex.server_addr,
        "url": ex.url(),
        "request": {
            "method": r.method, "target": r.target, "version": r.version,
            "headers": headers_json(&r.headers), "body": body_json(&r.body, &r.headers, Some(0)), "trailers": headers_json(&r.trailers),
        },
        "response": ex.response.as_ref().map(|p| json!({
            "status": p.status, "reason": p.reason, "version": p.version,
            "headers": headers_json(&p.headers), "body": body_json(&p.body, &p.headers, ex.timings.response_first_byte_ns),
            "trailers": headers_json(&p.trailers),
        })),
        "timings": ex.timings,
        "error": ex.error.as_ref().map(|e| e.message.as_str()),
        "error_kind": ex.error.as_ref().map(|e| e.kind),
        "trace_id": ex.trace_id,
        "tags": ex.tags,
        "messages": ex.messages.iter().map(|m| json!({
            "direction": m.direction, "offset_ns": m.offset_ns, "kind": m.kind, "size": m.data.len(),
            "data": std::str::from_utf8(&m.data).map(|t| json!({"text": t})).unwrap_or_else(|_| json!({"hex": hex(&m.data)})),
        })).collect::<Vec<_>>(),
    })
}

fn hex(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02x}")).collect()
}

fn write_body(out: &mut impl Write, b: &Body) -> std::io::Result<()> {
    if b.size == 0 {
        return Ok(());
    }
    writeln!(out)?;
    let printable = std::str::from_utf8(&b.data)
        .ok()
        .filter(|t| !t.chars().any(|c| c.is_control() && !c.is_whitespace()));
    match printable {
        Some(t) => writeln!(out, "{t}")?,
        None => {
            // Binary: a hex dump of the first 256 bytes is enough to recognise it.
            for (i, chunk) in b.data.chunks(16).take(16).enumerate() {
                let ascii: String = chunk
                    .iter()
                    .map(|&c| if c.is_ascii_graphic() { c as char } else { '.' })
                    .collect();
                writeln!(
                    out,
                    "{:08x}  {:<48} {ascii}",
                    i * 16,
                    chunk
                        .iter()
                        .map(|c| format!("{c:02x} "))
                        .collect::<String>()
                )?;
            }
            if b.data.len() > 256 {
                writeln!(out, "… ({} bytes, binary)", b.data.len())?;
            }
        }
    }
    if b.truncated {
        writeln!(
            out,
            "… truncated: {} of {} bytes stored",
            b.data.len(),
            b.size
        )?;
    }
    Ok(())
}

fn ms(ns: u64) -> String {
    format!("+{:.3}ms", ns as f64 / 1e6)
}

/// A Server-Sent Events body: one line per event, its lines joined by ` | `, after the
/// offset at which it was complete.
fn write_events(out: &mut impl Write, b: &Body, first_byte_ns: Option<u64>) -> std::io::Result<()> {
    let events = sse_events(b, first_byte_ns);
    writeln!(
        out,
        "\n# {} server-sent events (offsets after the exchange start)",
        events.len()
    )?;
    for (at, lines) in events {
        let at = at.map_or_else(|| "-".to_string(), ms);
        writeln!(out, "{at:>12}  {}", lines.join(" | "))?;
    }
    if b.truncated {
        writeln!(
            out,
            "… truncated: {} of {} bytes stored",
            b.data.len(),
            b.size
        )?;
    }
    Ok(())
}

/// The chunk table of a streamed body, the first chunks of a long one.
fn write_chunks(out: &mut impl Write, b: &Body) -> std::io::Result<()> {
    const SHOWN: usize = 20;
    if b.chunks.is_empty() {
        return Ok(());
    }
    writeln!(out, "# arrived in {} chunks:", b.chunks.len())?;
    for c in b.chunks.iter().take(SHOWN) {
        writeln!(out, "{:>12}  {} B", ms(c.offset_ns), c.len)?;
    }
    if b.chunks.len() > SHOWN {
        writeln!(out, "… {} more", b.chunks.len() - SHOWN)?;
    }
    Ok(())
}

fn write_text(out: &mut impl Write, ex: &Exchange) -> std::io::Result<()> {
    let r = &ex.request;
    writeln!(
        out,
        "# exchange {} ({}, connection {} #{}, {})",
        ex.id,
        ex.protocol(),
        ex.connection_id,
        ex.seq,
        ex.url()
    )?;
    if let Some(t) = &ex.trace_id {
        writeln!(out, "# trace {t}")?;
    }
    writeln!(out, "{} {} {}", r.method, r.target, r.version)?;
    for h in &r.headers {
        writeln!(out, "{}: {}", h.name, h.value_str())?;
    }
    write_body(out, &r.body)?;
    write_chunks(out, &r.body)?;
    for h in &r.trailers {
        writeln!(out, "{}: {} (trailer)", h.name, h.value_str())?;
    }
    writeln!(out)?;
    match &ex.response {
        Some(p) => {
            writeln!(out, "{} {} {}", p.version, p.status, p.reason)?;
            for h in &p.headers {
                writeln!(out, "{}: {}", h.name, h.value_str())?;
            }
            if is_event_stream(&p.headers) && p.body.size > 0 {
                write_events(out, &p.body, ex.timings.response_first_byte_ns)?;
            } else {
                write_body(out, &p.body)?;
                write_chunks(out, &p.body)?;
            }
            for h in &p.trailers {
                writeln!(out, "{}: {} (trailer)", h.name, h.value_str())?;
            }
        }
        None => writeln!(out, "(no response)")?,
    }
    if let Some(e) = &ex.error {
        writeln!(out, "\n! error ({}): {e}", e.kind)?;
    }
    for m in &ex.messages {
        let arrow = match m.direction {
            Direction::ClientToServer => "→",
            Direction::ServerToClient => "←",
        };
        let kind = match &m.kind {
            MessageKind::Grpc { compressed } => {
                format!("grpc{}", if *compressed { " compressed" } else { "" })
            }
            MessageKind::WebSocket {
                opcode,
                fin,
                compressed,
            } => format!(
                "ws op={opcode}{}{}",
                if *compressed { " deflate" } else { "" },
                if *fin { "" } else { " (fragment)" }
            ),
        };
        let data = match std::str::from_utf8(&m.data) {
            Ok(t) if !t.chars().any(|c| c.is_control() && !c.is_whitespace()) => format!("{t:?}"),
            _ => hex(&m.data[..m.data.len().min(64)]) + if m.data.len() > 64 { "…" } else { "" },
        };
        writeln!(
            out,
            "{arrow} +{:.3}ms {kind} {}B {data}",
            m.offset_ns as f64 / 1e6,
            m.data.len()
        )?;
    }
    let t = &ex.timings;
    let ms = |v: Option<u64>| v.map_or("-".into(), |n| format!("{:.3}ms", n as f64 / 1e6));
    writeln!(
        out,
        "\n# timings: request end {}, first response byte {}, response end {}",
        ms(t.request_end_ns),
        ms(t.response_first_byte_ns),
        ms(t.response_end_ns)
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::BodyChunk;

    #[test]
    fn sse_events_take_the_offset_of_the_chunk_that_completed_them() {
        let mut b =
            Body::full(&b"id: 0\ndata: a\n\n: ping\r\n\r\ndata: b\ndata: c\n\ndata: tail"[..]);
        b.chunks = vec![
            BodyChunk {
                offset_ns: 5,
                len: 16,
            },
            BodyChunk {
                offset_ns: 200,
                len: 10,
            },
            BodyChunk {
                offset_ns: 400,
                len: 30,
            },
        ];
        let events = sse_events(&b, Some(1));
        let want: Vec<(Option<u64>, Vec<String>)> = vec![
            (Some(5), vec!["id: 0".into(), "data: a".into()]),
            (Some(200), vec![": ping".into()]),
            (Some(400), vec!["data: b".into(), "data: c".into()]),
            (Some(400), vec!["data: tail".into()]),
        ];
        assert_eq!(events, want);
        b.chunks.clear();
        assert!(sse_events(&b, Some(1)).iter().all(|(at, _)| *at == Some(1)));
        assert!(is_event_stream(&[Header::new(
            "content-type",
            "Text/Event-Stream; charset=utf-8"
        )]));
    }
}
