//! `mf replay --otlp`: what a replayed request's span says. The pipeline notes where a
//! request began ([`SpanStart`], only when spans are exported) and, when the answer is
//! counted, turns it into one span for the exporter in `net::otlp`.

use std::time::{SystemTime, UNIX_EPOCH};

use crate::model::{Header, HeaderList, Protocol};
use crate::net::otlp::{RequestSpan, SpanData, Value};

/// What a span needs from the request, kept from the decision to the answer.
pub(crate) struct SpanStart {
    protocol: Protocol,
    method: String,
    target: String,
    authority: String,
    traceparent: Option<Vec<u8>>,
    start_unix_ns: u64,
}

/// How a request ended, as its span tells it.
pub(crate) struct SpanEnd<'a> {
    /// How long the answer took, from the request's arrival.
    pub elapsed: std::time::Duration,
    /// The request became a WebSocket session.
    pub websocket: bool,
    /// Something recorded (or taught by a miss) answered it.
    pub matched: bool,
    /// The fault injected into the answer, if any.
    pub fault: Option<&'a str>,
    /// The status sent (0: none was sent).
    pub status: u16,
    /// The status a gRPC answer ended with.
    pub grpc_status: Option<u32>,
}

impl SpanStart {
    /// Notes a request as it arrives: its protocol, method, path (only the path reaches the
    /// span; the query may hold credentials), the authority it named and its headers.
    pub(crate) fn new(
        protocol: Protocol,
        method: &str,
        path: &str,
        authority: Option<&str>,
        headers: &[Header],
    ) -> SpanStart {
        SpanStart {
            protocol,
            method: method.to_string(),
            target: path.to_string(),
            authority: authority
                .map(str::to_string)
                .or_else(|| headers.header_str("host"))
                .unwrap_or_default(),
            traceparent: headers.header("traceparent").map(<[u8]>::to_vec),
            start_unix_ns: unix_now_ns(),
        }
    }

    /// The span of the answered request.
    pub(crate) fn finish(&self, end: &SpanEnd<'_>) -> SpanData {
        let elapsed = u64::try_from(end.elapsed.as_nanos()).unwrap_or(u64::MAX);
        let protocol = if end.websocket {
            Protocol::WebSocket
        } else {
            self.protocol
        };
        let mut span = RequestSpan {
            protocol,
            method: &self.method,
            target: &self.target,
            authority: &self.authority,
            scheme: "http",
            traceparent: self.traceparent.as_deref(),
            status: end.status,
            grpc_status: end.grpc_status,
            start_unix_ns: self.start_unix_ns,
            end_unix_ns: self.start_unix_ns.saturating_add(elapsed),
            error: None,
        }
        .build();
        span.attributes
            .push(("mf.matched", Value::Bool(end.matched)));
        if let Some(f) = end.fault {
            span.attributes
                .push(("mf.fault", Value::Str(f.to_string())));
        }
        span
    }
}

fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
