//! One exchange in full: heads, bodies, a timing bar, the stream messages on a timeline, and
//! the request as a curl command.

use maud::{html, Markup};

use super::body;
use super::page::{self, bytes, ns_ms, status_class, time_of};
use super::Viewer;
use crate::model::{Direction, Exchange, Header, MessageKind, StreamMessage};
use crate::net::pages::PageResponse;
use crate::store::{RecordingRead, StoreError};

pub(super) fn page(viewer: &Viewer, reader: &dyn RecordingRead, id: i64) -> PageResponse {
    match reader.load(id) {
        Ok(ex) => page::html(page::layout(viewer, &format!("Exchange #{id}"), view(&ex))),
        Err(StoreError::NoSuchExchange(_)) => page::failure(
            viewer,
            404,
            &format!("No exchange #{id} in this recording."),
        ),
        Err(e) => page::failure(viewer, 500, &format!("reading exchange #{id}: {e}")),
    }
}

/// The whole detail pane of `ex`.
pub(super) fn view(ex: &Exchange) -> Markup {
    let status = ex.response.as_ref().map(|r| r.status);
    let req = &ex.request;
    html! {
        div.detail #detail data-id=(ex.id) {
            p.line {
                span.method { (req.method) } " " span.url { (ex.url()) } " "
                span.status.(status_class(status, ex.error.is_some())) {
                    (status.map_or("no response".to_string(), |s| s.to_string()))
                }
            }
            p.meta {
                (ex.protocol()) " · connection " a href={ "/diagram?connection=" (ex.connection_id) } { (ex.connection_id) }
                " (#" (ex.seq) " on it) · " (time_of(ex.started_at_ns)) " UTC"
                @if let Some(c) = &ex.client_addr { " · client " (c) }
                @if let Some(t) = &ex.trace_id { " · trace " a href={ "/diagram?trace=" (t) } { (t) } }
            }
            @if let Some(e) = &ex.error { p.error { (e.kind.as_str()) ": " (e.message) } }
            (timing_bar(ex))
            @if !ex.messages.is_empty() { (timeline(&ex.messages)) }
            div.halves {
            section.request {
                h2 { "Request" }
                pre.head { (req.method) " " (req.target) " " (req.version) }
                (headers(&req.headers))
                h3 { "Body" span.size { " " (bytes(req.body.size)) } }
                div.body-request { (body::body(&req.headers, &req.body)) }
                @if !req.trailers.is_empty() { h3 { "Trailers" } (headers(&req.trailers)) }
            }
            @if let Some(resp) = &ex.response {
                section.response {
                    h2 { "Response" }
                    pre.head { (resp.version) " " (resp.status) " " (resp.reason) }
                    (headers(&resp.headers))
                    h3 { "Body" span.size { " " (bytes(resp.body.size)) } }
                    div.body-response { (body::body(&resp.headers, &resp.body)) }
                    @if !resp.trailers.is_empty() { h3 { "Trailers" } (headers(&resp.trailers)) }
                }
            }
            }
            @if !ex.tags.is_empty() {
                section.tags { h2 { "Tags" }
                    table.headers { @for (k, v) in &ex.tags { tr { th { (k) } td { (v) } } } } }
            }
            section.curl {
                h2 { "Copy as curl" }
                button type="button" #copy-curl data-copy="curl-command" { "copy as curl" }
                pre #curl-command { (crate::vocab::curl::command(ex).trim()) }
            }
        }
    }
}

fn headers(list: &[Header]) -> Markup {
    html! {
        table.headers {
            @for h in list { tr { th { (h.name) } td { (h.value_str()) } } }
        }
    }
}

/// Request, wait and response phases as bars on one axis (SVG, no script).
fn timing_bar(ex: &Exchange) -> Markup {
    let t = &ex.timings;
    let Some(end) = t
        .response_end_ns
        .or(t.response_first_byte_ns)
        .or(t.request_end_ns)
    else {
        return html! {};
    };
    let end = end.max(1);
    let sent = t.request_end_ns.unwrap_or(0).min(end);
    let first = t.response_first_byte_ns.unwrap_or(end).clamp(sent, end);
    const W: f64 = 600.0;
    let x = |ns: u64| ns as f64 / end as f64 * W;
    let phases = [
        ("request", 0, sent, "#6a9fd8"),
        ("wait", sent, first, "#d8c46a"),
        ("response", first, end, "#6ad88a"),
    ];
    html! {
        section.timing {
            h2 { "Timing" }
            svg.timing-bar width="620" height="34" viewBox="0 0 620 34" role="img" {
                @for (name, from, to, color) in phases {
                    rect x=(x(from) + 10.0) y="4" width=((x(to) - x(from)).max(1.0)) height="16" fill=(color) {
                        title { (name) ": " (ns_ms(to - from)) }
                    }
                }
                text x="10" y="32" font-size="10" { "0" }
                text x="560" y="32" font-size="10" { (ns_ms(end)) }
            }
            p.phases {
                "request sent " (ns_ms(sent)) " · waited " (ns_ms(first - sent))
                " · first byte at " (ns_ms(first)) " · body " (ns_ms(end - first))
                " · total " (ns_ms(end))
            }
        }
    }
}

/// gRPC messages or WebSocket frames: a dot per message on a time axis (client above the
/// line, server below), and a table with direction, offset, kind, size and content.
fn timeline(messages: &[StreamMessage]) -> Markup {
    let last = messages
        .iter()
        .map(|m| m.offset_ns)
        .max()
        .unwrap_or(0)
        .max(1);
    const W: f64 = 600.0;
    let x = |ns: u64| 10.0 + ns as f64 / last as f64 * W;
    html! {
        section.messages {
            h2 { "Messages (" (messages.len()) ")" }
            svg.timeline-axis width="620" height="60" viewBox="0 0 620 60" role="img" {
                line x1="10" y1="30" x2="610" y2="30" stroke="#888" {}
                text x="10" y="12" font-size="10" { "client →" }
                text x="10" y="56" font-size="10" { "← server" }
                @for m in messages {
                    @let client = m.direction == Direction::ClientToServer;
                    circle cx=(x(m.offset_ns)) cy=(if client { 22 } else { 38 }) r="4"
                        fill=(if client { "#3b6fb6" } else { "#3b9f5a" }) {
                        title { (kind(m)) " +" (ns_ms(m.offset_ns)) }
                    }
                }
            }
            table.timeline #messages {
                thead { tr { th { "" } th { "offset" } th { "kind" } th { "size" } th { "content" } } }
                tbody {
                    @for m in messages {
                        @let client = m.direction == Direction::ClientToServer;
                        tr.msg data-direction=(if client { "client" } else { "server" })
                            data-offset-ms=(format!("{:.3}", m.offset_ns as f64 / 1e6)) {
                            td.dir { (if client { "→" } else { "←" }) }
                            td.num { "+" (ns_ms(m.offset_ns)) }
                            td { (kind(m)) }
                            td.num { (bytes(m.data.len() as u64)) }
                            td.content { (preview(m)) }
                        }
                    }
                }
            }
        }
    }
}

/// `grpc`, `grpc compressed`, `text`, `close 1000`, `binary (fragment)`…
fn kind(m: &StreamMessage) -> String {
    match &m.kind {
        MessageKind::Grpc { compressed } => if *compressed {
            "grpc compressed"
        } else {
            "grpc"
        }
        .to_string(),
        MessageKind::WebSocket {
            opcode,
            fin,
            compressed,
        } => {
            let name = match opcode {
                0 => "continuation".to_string(),
                1 => "text".into(),
                2 => "binary".into(),
                8 => match m.data.get(..2) {
                    Some(c) => format!("close {}", u16::from_be_bytes([c[0], c[1]])),
                    None => "close".into(),
                },
                9 => "ping".into(),
                10 => "pong".into(),
                other => format!("opcode {other}"),
            };
            let mut s = name;
            if !fin {
                s.push_str(" (fragment)");
            }
            if *compressed {
                s.push_str(" deflate");
            }
            s
        }
    }
}

/// The message's content: text as text (a close frame's reason), bytes as a short hex run.
fn preview(m: &StreamMessage) -> Markup {
    let data: &[u8] = match &m.kind {
        MessageKind::WebSocket { opcode: 8, .. } => m.data.get(2..).unwrap_or_default(),
        _ => &m.data,
    };
    let printable = std::str::from_utf8(data)
        .ok()
        .filter(|t| !t.chars().any(|c| c.is_control() && c != '\n' && c != '\t'));
    match printable {
        Some(t) if !t.is_empty() => {
            let shown: String = t.chars().take(200).collect();
            html! { span.text { (shown) @if t.chars().count() > 200 { "…" } } }
        }
        Some(_) => html! {},
        None => {
            let hexes: String = data.iter().take(48).map(|b| format!("{b:02x}")).collect();
            html! { code.hex { (hexes) @if data.len() > 48 { "…" } } }
        }
    }
}
