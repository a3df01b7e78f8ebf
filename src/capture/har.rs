//! HAR 1.2 files (Chrome and Firefox dev tools, Charles, Fiddler) read into exchanges.
//!
//! HAR keeps bodies decoded (`content.text`, base64 when `encoding` says so), so a response
//! recorded with `Content-Encoding: gzip` is stored without that header: replay then sends
//! the decoded bytes with headers that describe them. Browser extras (`_initiator`,
//! `_priority`, `_resourceType`…) are ignored, except `_webSocketMessages` (Chrome), which
//! become the WebSocket frames of the exchange.

use std::collections::HashMap;

use base64::Engine;
use bytes::Bytes;
use serde::Deserialize;

use super::foreign_fields::{split_url, ForeignError};
use crate::model::{
    Body, Direction, ErrorKind, Exchange, ExchangeError, Header, HeaderList, MessageKind, Protocol,
    Request, Response, StreamMessage, Timings,
};

#[derive(Deserialize)]
struct Har {
    log: Log,
}

#[derive(Deserialize)]
struct Log {
    entries: Vec<Entry>,
}

#[derive(Deserialize)]
struct Entry {
    #[serde(rename = "startedDateTime")]
    started: String,
    #[serde(default)]
    time: f64,
    request: HarRequest,
    response: HarResponse,
    #[serde(default)]
    timings: Option<HarTimings>,
    #[serde(rename = "serverIPAddress", default)]
    server_ip: Option<String>,
    #[serde(default)]
    connection: Option<String>,
    #[serde(rename = "_webSocketMessages", default)]
    ws_messages: Vec<WsMessage>,
}

#[derive(Deserialize)]
struct NameValue {
    name: String,
    #[serde(default)]
    value: String,
}

#[derive(Deserialize)]
struct HarRequest {
    method: String,
    url: String,
    #[serde(rename = "httpVersion", default)]
    http_version: String,
    #[serde(default)]
    headers: Vec<NameValue>,
    #[serde(rename = "postData", default)]
    post_data: Option<PostData>,
}

#[derive(Deserialize)]
struct PostData {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    params: Vec<NameValue>,
    /// Not in HAR 1.2 for postData, but written by some tools (and by mf's own export).
    #[serde(default)]
    encoding: Option<String>,
}

#[derive(Deserialize)]
struct HarResponse {
    status: i64,
    #[serde(rename = "statusText", default)]
    status_text: String,
    #[serde(rename = "httpVersion", default)]
    http_version: String,
    #[serde(default)]
    headers: Vec<NameValue>,
    #[serde(default)]
    content: Option<Content>,
    #[serde(rename = "_error", default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Content {
    #[serde(default)]
    size: i64,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

/// Milliseconds; -1 (or absent) when it does not apply.
#[derive(Deserialize)]
struct HarTimings {
    #[serde(default = "minus_one")]
    blocked: f64,
    #[serde(default = "minus_one")]
    dns: f64,
    #[serde(default = "minus_one")]
    connect: f64,
    #[serde(default = "minus_one")]
    send: f64,
    #[serde(default = "minus_one")]
    wait: f64,
    #[serde(default = "minus_one")]
    receive: f64,
}

fn minus_one() -> f64 {
    -1.0
}

#[derive(Deserialize)]
struct WsMessage {
    #[serde(rename = "type")]
    kind: String,
    /// Seconds since the epoch.
    time: f64,
    #[serde(default = "text_opcode")]
    opcode: u8,
    #[serde(default)]
    data: String,
}

fn text_opcode() -> u8 {
    1
}

/// Every entry of the HAR document `data`, in file order.
///
/// # Errors
/// [`ForeignError::Json`] with line and column for a file that is not HAR-shaped JSON;
/// [`ForeignError::HarEntry`] for an entry whose URL or time cannot be read.
pub(super) fn read(data: &[u8]) -> Result<Vec<Exchange>, ForeignError> {
    let data = data.strip_prefix(b"\xef\xbb\xbf").unwrap_or(data);
    let har: Har = serde_json::from_slice(data).map_err(|e| {
        // serde_json's message ends with the position, which the error states itself.
        let mut message = e.to_string();
        if let Some(cut) = message.rfind(" at line ") {
            message.truncate(cut);
        }
        ForeignError::Json {
            line: e.line(),
            column: e.column(),
            message,
        }
    })?;
    let mut connections: HashMap<String, (u64, u32)> = HashMap::new();
    let mut out = Vec::with_capacity(har.log.entries.len());
    for (index, entry) in har.log.entries.into_iter().enumerate() {
        let next_id = connections.len() as u64 + 1;
        // Entries on one connection (Chrome's `connection` is the socket id) share an id,
        // numbered in file order; an entry without one is its own connection.
        let key = entry
            .connection
            .clone()
            .unwrap_or_else(|| format!("entry {index}"));
        let slot = connections.entry(key).or_insert((next_id, 0));
        let (connection_id, seq) = (slot.0, slot.1);
        slot.1 += 1;
        let mut ex =
            exchange(entry).map_err(|message| ForeignError::HarEntry { index, message })?;
        ex.connection_id = connection_id;
        ex.seq = seq;
        out.push(ex);
    }
    Ok(out)
}

fn headers(list: Vec<NameValue>) -> Vec<Header> {
    list.into_iter()
        // HTTP/2 pseudo-headers (Chrome lists them): the URL and status already say them.
        .filter(|h| !h.name.starts_with(':'))
        .map(|h| Header::new(h.name, h.value))
        .collect()
}

fn decoded(text: &str, encoding: Option<&str>) -> Result<Vec<u8>, String> {
    match encoding {
        Some(e) if e.eq_ignore_ascii_case("base64") => base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|e| format!("body is not valid base64: {e}")),
        _ => Ok(text.as_bytes().to_vec()),
    }
}

fn version_of(http_version: &str) -> (Protocol, &'static str) {
    match http_version.to_ascii_lowercase().as_str() {
        "h2" | "http/2" | "http/2.0" | "h3" | "http/3" | "http/3.0" => (Protocol::H2, "HTTP/2"),
        "http/1.0" => (Protocol::Http10, "HTTP/1.0"),
        _ => (Protocol::Http11, "HTTP/1.1"),
    }
}

fn exchange(entry: Entry) -> Result<Exchange, String> {
    let started = time::OffsetDateTime::parse(
        &entry.started,
        &time::format_description::well_known::Rfc3339,
    )
    .map_err(|e| format!("startedDateTime {:?}: {e}", entry.started))?;
    let started_ns = i64::try_from(started.unix_timestamp_nanos())
        .map_err(|_| format!("startedDateTime {:?} is out of range", entry.started))?;
    let req = entry.request;
    let (scheme, authority, target) = split_url(&req.url)?;
    let (mut protocol, version) = version_of(&req.http_version);
    let req_headers = headers(req.headers);
    let body = match req.post_data {
        Some(p) => match p.text {
            Some(text) => decoded(&text, p.encoding.as_deref())?,
            // A form given only as `params`: the urlencoded body it stands for.
            None => p
                .params
                .iter()
                .map(|nv| format!("{}={}", nv.name, nv.value))
                .collect::<Vec<_>>()
                .join("&")
                .into_bytes(),
        },
        None => Vec::new(),
    };
    let is_ws = !entry.ws_messages.is_empty()
        || req_headers
            .header_str("upgrade")
            .is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    if is_ws {
        protocol = Protocol::WebSocket;
    }
    let trace_id = req_headers
        .header("traceparent")
        .and_then(crate::model::trace_id_from_traceparent);

    // Times: HAR's start includes queueing, DNS and connecting; an exchange starts at its
    // first request byte.
    let t = entry.timings;
    let pos = |v: f64| if v > 0.0 { v } else { 0.0 };
    let pre_ms = t
        .as_ref()
        .map_or(0.0, |t| pos(t.blocked) + pos(t.dns) + pos(t.connect));
    let ms_ns = |ms: f64| (ms * 1e6).round() as u64;
    let (send, wait, receive) = t.as_ref().map_or((0.0, (entry.time).max(0.0), 0.0), |t| {
        (pos(t.send), pos(t.wait), pos(t.receive))
    });
    let start_ns = started_ns + ms_ns(pre_ms) as i64;

    let resp = entry.response;
    let (response, error) = if resp.status <= 0 {
        let message = resp
            .error
            .unwrap_or_else(|| "no response (HAR status 0)".to_string());
        (None, Some(ExchangeError::new(ErrorKind::Other, message)))
    } else {
        let status = u16::try_from(resp.status)
            .ok()
            .filter(|s| (100..=999).contains(s))
            .ok_or_else(|| format!("status {} is not an HTTP status", resp.status))?;
        let mut resp_headers = headers(resp.headers);
        let content = resp.content;
        let data = match content.as_ref().and_then(|c| c.text.as_deref()) {
            Some(text) => decoded(text, content.as_ref().and_then(|c| c.encoding.as_deref()))?,
            None => Vec::new(),
        };
        let claimed = content
            .as_ref()
            .and_then(|c| u64::try_from(c.size).ok())
            .unwrap_or(0);
        let encoded = resp_headers
            .header_str("content-encoding")
            .is_some_and(|e| !e.eq_ignore_ascii_case("identity"));
        if encoded {
            resp_headers.retain(|h| {
                !h.name.eq_ignore_ascii_case("content-encoding")
                    && !h.name.eq_ignore_ascii_case("content-length")
            });
            resp_headers.push(Header::new("Content-Length", data.len().to_string()));
        }
        // A body the tool did not keep (dev tools drop large or binary ones) is stored
        // empty and marked cut, not passed off as an empty answer.
        let truncated = (data.len() as u64) < claimed;
        let body = Body {
            size: claimed.max(data.len() as u64),
            data: Bytes::from(data),
            truncated,
            chunks: Vec::new(),
        };
        let (_, resp_version) = version_of(&resp.http_version);
        (
            Some(Response {
                status,
                reason: resp.status_text.into(),
                version: if resp.http_version.is_empty() {
                    version.into()
                } else {
                    resp_version.into()
                },
                headers: resp_headers,
                body,
                trailers: Vec::new(),
            }),
            None,
        )
    };
    let messages = entry
        .ws_messages
        .into_iter()
        .map(|m| {
            let data = if m.opcode == 2 {
                base64::engine::general_purpose::STANDARD
                    .decode(m.data.as_bytes())
                    .unwrap_or_else(|_| m.data.into_bytes())
            } else {
                m.data.into_bytes()
            };
            StreamMessage {
                direction: if m.kind == "send" {
                    Direction::ClientToServer
                } else {
                    Direction::ServerToClient
                },
                offset_ns: u64::try_from(super::foreign_fields::secs_to_ns(m.time) - start_ns)
                    .unwrap_or(0),
                kind: MessageKind::WebSocket {
                    opcode: m.opcode,
                    fin: true,
                    compressed: false,
                },
                data: Bytes::from(data),
            }
        })
        .collect();
    let answered = response.is_some();
    Ok(Exchange {
        id: 0,
        connection_id: 0,
        seq: 0,
        protocol: Some(protocol),
        started_at_ns: start_ns,
        client_addr: None,
        server_addr: (entry.server_ip.filter(|ip| !ip.is_empty()).map(|ip| {
            let port = authority
                .rsplit_once(':')
                .map_or(if scheme == "https" { "443" } else { "80" }, |(_, p)| p);
            format!("{ip}:{port}")
        }))
        .map(Into::into),
        scheme: scheme.into(),
        authority: authority.into(),
        request: Request {
            method: req.method.into(),
            target: target.into(),
            version: version.into(),
            headers: req_headers,
            body: Body::full(body),
            trailers: Vec::new(),
        },
        response,
        timings: Timings {
            request_end_ns: Some(ms_ns(send)),
            response_first_byte_ns: answered.then(|| ms_ns(send + wait)),
            response_end_ns: answered.then(|| ms_ns(send + wait + receive)),
        },
        error,
        trace_id,
        tags: Default::default(),
        messages,
    })
}

#[cfg(test)]
#[path = "har_tests.rs"]
mod tests;
