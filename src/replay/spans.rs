//! `mf replay --otlp`: what a replayed request's span says. The pipeline notes where a
//! request began ([`SpanStart`], only when spans are exported) and, when the answer is
//! counted, turns it into one span for the exporter in `net::otlp`.

use std::time::{SystemTime, UNIX_EPOCH};

use super::pipeline::{Decision, Found, RequestView};
use crate::model::{HeaderList, Protocol};
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

impl SpanStart {
    /// Notes `view` as it arrives.
    pub(crate) fn new(view: &RequestView<'_>) -> SpanStart {
        SpanStart {
            protocol: view.protocol,
            method: view.method.to_string(),
            // Only the path reaches the span; the query (which may hold credentials) does not.
            target: view.path().to_string(),
            authority: view
                .authority
                .map(str::to_string)
                .or_else(|| view.headers.header_str("host"))
                .unwrap_or_default(),
            traceparent: view.headers.header("traceparent").map(<[u8]>::to_vec),
            start_unix_ns: unix_now_ns(),
        }
    }

    /// The span of the answered request: `status` 0 when none was sent, `grpc_status` the
    /// status a gRPC answer ended with.
    pub(crate) fn finish(
        &self,
        decision: &Decision,
        status: u16,
        grpc_status: Option<u32>,
    ) -> SpanData {
        let elapsed = u64::try_from(decision.started.elapsed().as_nanos()).unwrap_or(u64::MAX);
        let protocol = match decision.protocol {
            Protocol::WebSocket => Protocol::WebSocket,
            _ => self.protocol,
        };
        let mut span = RequestSpan {
            protocol,
            method: &self.method,
            target: &self.target,
            authority: &self.authority,
            scheme: "http",
            traceparent: self.traceparent.as_deref(),
            status,
            grpc_status,
            start_unix_ns: self.start_unix_ns,
            end_unix_ns: self.start_unix_ns.saturating_add(elapsed),
            error: None,
        }
        .build();
        let matched = !matches!(decision.found, Found::Missing(_));
        span.attributes.push(("mf.matched", Value::Bool(matched)));
        if let Some(f) = &decision.plan.fault {
            span.attributes
                .push(("mf.fault", Value::Str(f.kind().to_string())));
        }
        span
    }
}

fn unix_now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}
