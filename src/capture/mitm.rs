//! mitmproxy flow files (`mitmdump -w`) read into exchanges.
//!
//! A flow file is a sequence of tnetstring dictionaries, one per flow, each the flow's state
//! with a `version` (flow-format versions 7 to 21 hold what is read here: `request` and
//! `response` with `headers` as `[name, value]` pairs, raw `content` as on the wire,
//! `timestamp_start`/`timestamp_end` in seconds, `error.msg`, and from version 10 on
//! `websocket.messages` as `[opcode, content, from_client, timestamp]`). Flows that are not
//! HTTP (`tcp`, `udp`, `dns`) are skipped.

use std::collections::HashMap;

use bytes::Bytes;

use super::foreign_fields::{secs_to_ns, ForeignError};
use super::tnetstring::{parse_all, TValue};
use crate::model::{
    Body, Direction, ErrorKind, Exchange, ExchangeError, Header, HeaderList, MessageKind, Protocol,
    Request, Response, StreamMessage, Timings,
};

/// Newest flow-format version whose fields this reader knows; newer files are still read
/// (mitmproxy adds fields far more often than it renames them).
const KNOWN_VERSION: i64 = 21;

/// Every HTTP flow of the flow file `data`, in file order.
///
/// # Errors
/// [`ForeignError::Tnetstring`] for a malformed file, [`ForeignError::Flow`] for a flow that
/// lacks what an exchange needs; both with the byte offset.
pub(super) fn read(data: &[u8]) -> Result<Vec<Exchange>, ForeignError> {
    let values = parse_all(data)?;
    let mut connections: HashMap<String, (u64, u32)> = HashMap::new();
    let mut out = Vec::new();
    for (offset, flow) in values {
        let fail = |message: String| ForeignError::Flow { offset, message };
        if !matches!(flow, TValue::Dict(_)) {
            return Err(fail("a flow is a dictionary".into()));
        }
        let version = flow.get("version");
        if let Some(v) = version.and_then(TValue::as_i64) {
            if v > KNOWN_VERSION {
                tracing::debug!(version = v, "flow format newer than known; reading anyway");
            }
        }
        let kind = flow.get("type").and_then(TValue::as_text);
        if kind.as_deref().is_some_and(|k| k != "http") {
            continue;
        }
        let mut ex = exchange(&flow).map_err(fail)?;
        let conn = flow
            .get("client_conn")
            .and_then(|c| c.get("id"))
            .and_then(TValue::as_text)
            .unwrap_or_else(|| format!("flow at {offset}"));
        let next_id = connections.len() as u64 + 1;
        let slot = connections.entry(conn).or_insert((next_id, 0));
        ex.connection_id = slot.0;
        ex.seq = slot.1;
        slot.1 += 1;
        out.push(ex);
    }
    Ok(out)
}

fn text(v: &TValue, key: &str) -> Option<String> {
    v.get(key).and_then(TValue::as_text)
}

fn headers(v: Option<&TValue>) -> Vec<Header> {
    v.and_then(TValue::as_list)
        .unwrap_or_default()
        .iter()
        .filter_map(|pair| match pair.as_list() {
            Some([name, value, ..]) => Some(Header::new(name.as_text()?, value.as_bytes()?)),
            _ => None,
        })
        .collect()
}

fn content(v: &TValue) -> Bytes {
    v.get("content")
        .and_then(TValue::as_bytes)
        .map(Bytes::copy_from_slice)
        .unwrap_or_default()
}

/// `host:port` of a `[host, port]` address pair.
fn address(v: Option<&TValue>) -> Option<String> {
    match v?.as_list()? {
        [host, port, ..] => {
            let host = host.as_text()?;
            let port = port.as_i64()?;
            Some(if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            })
        }
        _ => None,
    }
}

fn version_of(http_version: &str) -> (Protocol, &'static str) {
    match http_version.to_ascii_uppercase().as_str() {
        "HTTP/2.0" | "HTTP/2" | "HTTP/3" => (Protocol::H2, "HTTP/2"),
        "HTTP/1.0" => (Protocol::Http10, "HTTP/1.0"),
        _ => (Protocol::Http11, "HTTP/1.1"),
    }
}

fn exchange(flow: &TValue) -> Result<Exchange, String> {
    let req = flow.get("request").ok_or("the flow has no request")?;
    let method = text(req, "method").ok_or("the request has no method")?;
    let path = text(req, "path").unwrap_or_else(|| "/".into());
    let scheme = text(req, "scheme").unwrap_or_else(|| "http".into());
    let req_headers = headers(req.get("headers"));
    // The authority the client addressed: `authority` (HTTP/2, absolute-form), else the Host
    // header, else the host and port mitmproxy connected to.
    let authority = text(req, "authority")
        .filter(|a| !a.is_empty())
        .or_else(|| req_headers.header_str("host"))
        .or_else(|| {
            let host = text(req, "host")?;
            let port = req.get("port").and_then(TValue::as_i64);
            let default = if scheme == "https" { 443 } else { 80 };
            Some(match port {
                Some(p) if p != default => format!("{host}:{p}"),
                _ => host,
            })
        })
        .ok_or("the request has no host")?;
    let (mut protocol, version) = version_of(&text(req, "http_version").unwrap_or_default());
    let start = req
        .get("timestamp_start")
        .and_then(TValue::as_f64)
        .ok_or("the request has no timestamp_start")?;
    let start_ns = secs_to_ns(start);
    let offset = |v: Option<&TValue>| {
        v.and_then(TValue::as_f64)
            .and_then(|t| u64::try_from(secs_to_ns(t) - start_ns).ok())
    };
    let response = match flow.get("response") {
        Some(r @ TValue::Dict(_)) => {
            let status = r
                .get("status_code")
                .and_then(TValue::as_i64)
                .and_then(|s| u16::try_from(s).ok())
                .ok_or("the response has no status_code")?;
            Some(Response {
                status,
                reason: (text(r, "reason").unwrap_or_default()).into(),
                version: (version_of(&text(r, "http_version").unwrap_or_default())
                    .1
                    .to_string())
                .into(),
                headers: headers(r.get("headers")),
                body: Body::full(content(r)),
                trailers: headers(r.get("trailers")),
            })
        }
        _ => None,
    };
    let error = flow
        .get("error")
        .and_then(|e| text(e, "msg"))
        .map(|msg| ExchangeError::new(ErrorKind::Other, msg))
        .or_else(|| {
            response
                .is_none()
                .then(|| ExchangeError::new(ErrorKind::Other, "no response in the flow"))
        });
    let messages: Vec<StreamMessage> = flow
        .get("websocket")
        .and_then(|w| w.get("messages"))
        .and_then(TValue::as_list)
        .unwrap_or_default()
        .iter()
        .filter_map(|m| match m.as_list()? {
            [opcode, data, from_client, at, ..] => Some(StreamMessage {
                direction: if matches!(from_client, TValue::Bool(true)) {
                    Direction::ClientToServer
                } else {
                    Direction::ServerToClient
                },
                offset_ns: offset(Some(at)).unwrap_or(0),
                kind: MessageKind::WebSocket {
                    opcode: u8::try_from(opcode.as_i64()?).ok()?,
                    fin: true,
                    compressed: false,
                },
                data: Bytes::copy_from_slice(data.as_bytes()?),
            }),
            _ => None,
        })
        .collect();
    if !messages.is_empty() || response.as_ref().is_some_and(|r| r.status == 101) {
        protocol = Protocol::WebSocket;
    }
    let trace_id = req_headers
        .header("traceparent")
        .and_then(crate::model::trace_id_from_traceparent);
    let timings = Timings {
        request_end_ns: offset(req.get("timestamp_end")),
        response_first_byte_ns: offset(flow.get("response").and_then(|r| r.get("timestamp_start"))),
        response_end_ns: offset(flow.get("response").and_then(|r| r.get("timestamp_end"))),
    };
    let conn = |side: &str, keys: &[&str]| {
        let c = flow.get(side)?;
        keys.iter().find_map(|k| address(c.get(k)))
    };
    Ok(Exchange {
        id: 0,
        connection_id: 0,
        seq: 0,
        protocol: Some(protocol),
        started_at_ns: start_ns,
        client_addr: (conn("client_conn", &["peername", "address"])).map(Into::into),
        server_addr: (conn("server_conn", &["peername", "address"])).map(Into::into),
        scheme: scheme.into(),
        authority: authority.into(),
        request: Request {
            method: method.into(),
            target: path.into(),
            version: version.into(),
            headers: req_headers,
            body: Body::full(content(req)),
            trailers: headers(req.get("trailers")),
        },
        response,
        timings,
        error,
        trace_id,
        tags: Default::default(),
        messages,
    })
}
