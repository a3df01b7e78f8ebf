//! OpenTelemetry span export (`--otlp URL`): one span per exchange, sent over OTLP/HTTP with
//! protobuf bodies (`POST URL/v1/traces`, `Content-Type: application/x-protobuf`).
//!
//! Traffic never waits on export: a finished exchange becomes a [`SpanData`] that is put on a
//! bounded queue with `try_send`; when the queue is full the span is dropped and counted
//! (`mf_otlp_spans_dropped_total`). One task drains the queue in batches (up to
//! [`BATCH`] spans, or what arrived within [`LINGER`] of the first) and posts each batch; a
//! collector that is down costs failed posts, counted, never blocked requests.
//!
//! A request carrying a W3C `traceparent` gets a span in that trace, whose parent is the
//! caller's span; otherwise the span starts a new trace. Attributes follow the semantic
//! conventions (`http.request.method`, `url.path`, `http.response.status_code`,
//! `server.address`, `rpc.*` for gRPC). No header is ever copied into a span: the query
//! string and every header (credentials included) stay out.
//!
//! The messages are the `opentelemetry-proto` crate's prost types (no gRPC transport).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{
    span, status, ResourceSpans, ScopeSpans, Span, Status,
};
use prometheus::IntCounter;
use prost::Message as _;
use tokio::sync::{mpsc, oneshot};

use super::metrics::{grpc_status, Metrics};
use crate::model::{Exchange, HeaderList, Protocol};
use crate::vocab::{origin_form, split_target};

/// Spans waiting to be sent; more are dropped (and counted) rather than waited for.
pub const QUEUE: usize = 4096;
/// Spans per request to the collector.
pub const BATCH: usize = 512;
/// How long the first span of a batch waits for company.
pub const LINGER: Duration = Duration::from_millis(200);
/// How long one post may take.
const POST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why `--otlp` cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum OtlpError {
    /// Only plain `http://` collectors are spoken to (a local agent or collector sidecar).
    #[error("--otlp {0}: expected an http:// URL (https is not supported)")]
    Scheme(String),
    /// The URL does not parse.
    #[error("--otlp {0}: not a valid URL")]
    Url(String),
    /// The export counters could not be registered (a bug in metric definitions).
    #[error("registering the span export counters: {0}")]
    Metrics(#[from] prometheus::Error),
}

/// An attribute value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Str(String),
    Int(i64),
    Bool(bool),
}

/// One finished span, before encoding.
#[derive(Clone, Debug)]
pub struct SpanData {
    pub name: String,
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    /// The caller's span, from `traceparent`.
    pub parent: Option<[u8; 8]>,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    pub attributes: Vec<(&'static str, Value)>,
    pub error: bool,
}

/// The trace id and parent span id of a W3C `traceparent` value (`00-TRACE-PARENT-FLAGS`);
/// `None` when it is malformed or all zeros (which the spec says to ignore).
pub fn parse_traceparent(value: &[u8]) -> Option<([u8; 16], [u8; 8])> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let mut parts = text.split('-');
    let version = parts.next()?;
    let (trace, parent, flags) = (parts.next()?, parts.next()?, parts.next()?);
    if version.len() != 2 || version == "ff" || flags.len() != 2 {
        return None;
    }
    let trace: [u8; 16] = hex(trace)?;
    let parent: [u8; 8] = hex(parent)?;
    if trace == [0; 16] || parent == [0; 8] {
        return None;
    }
    Some((trace, parent))
}

/// Lowercase or uppercase hex of exactly `N` bytes.
fn hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    if s.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(s.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

/// What a span of one request says, whoever served it (the proxy or the replay).
pub struct RequestSpan<'a> {
    pub protocol: Protocol,
    pub method: &'a str,
    /// The request target (origin or absolute form); only its path is kept.
    pub target: &'a str,
    /// Host or `:authority`.
    pub authority: &'a str,
    pub scheme: &'a str,
    /// `traceparent` as sent, if any.
    pub traceparent: Option<&'a [u8]>,
    /// 0 when no status was sent.
    pub status: u16,
    pub grpc_status: Option<u32>,
    pub start_unix_ns: u64,
    pub end_unix_ns: u64,
    /// Why the exchange failed, if it did (a stable error kind name).
    pub error: Option<&'static str>,
}

impl RequestSpan<'_> {
    /// The span, with the attributes of the semantic conventions.
    pub fn build(&self) -> SpanData {
        let path = split_target(origin_form(self.target)).0;
        let (trace_id, parent) = match self.traceparent.and_then(parse_traceparent) {
            Some((t, p)) => (t, Some(p)),
            None => (rand::random(), None),
        };
        let mut attributes = vec![
            ("http.request.method", Value::Str(self.method.to_string())),
            ("url.path", Value::Str(path.to_string())),
            ("url.scheme", Value::Str(self.scheme.to_string())),
            (
                "network.protocol.name",
                Value::Str(self.protocol.as_str().to_string()),
            ),
        ];
        let (host, port) = split_authority(self.authority);
        if !host.is_empty() {
            attributes.push(("server.address", Value::Str(host.to_string())));
        }
        if let Some(p) = port {
            attributes.push(("server.port", Value::Int(i64::from(p))));
        }
        if self.status != 0 {
            attributes.push((
                "http.response.status_code",
                Value::Int(i64::from(self.status)),
            ));
        }
        let mut error = self.status >= 500 || self.error.is_some();
        if let Some(kind) = self.error {
            attributes.push(("error.type", Value::Str(kind.to_string())));
        }
        let name = if self.protocol == Protocol::Grpc {
            let full = path.trim_start_matches('/');
            let (service, method) = full.rsplit_once('/').unwrap_or((full, ""));
            attributes.push(("rpc.system", Value::Str("grpc".into())));
            attributes.push(("rpc.service", Value::Str(service.to_string())));
            attributes.push(("rpc.method", Value::Str(method.to_string())));
            if let Some(code) = self.grpc_status {
                attributes.push(("rpc.grpc.status_code", Value::Int(i64::from(code))));
                // Server spans: these codes mean the server failed (semantic conventions).
                error |= matches!(code, 2 | 4 | 12 | 13 | 14 | 15);
            }
            full.to_string()
        } else {
            format!("{} {}", self.method, crate::vocab::route_template(path))
        };
        SpanData {
            name,
            trace_id,
            span_id: rand::random(),
            parent,
            start_unix_ns: self.start_unix_ns,
            end_unix_ns: self.end_unix_ns.max(self.start_unix_ns),
            attributes,
            error,
        }
    }
}

/// `host[:port]` (brackets of an IPv6 literal removed).
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (h, p.parse().ok()),
        _ => (authority, None),
    };
    (host.trim_start_matches('[').trim_end_matches(']'), port)
}

/// The span of one exchange the recording proxy finished.
pub fn exchange_span(ex: &Exchange) -> SpanData {
    let start = u64::try_from(ex.started_at_ns).unwrap_or(0);
    let took = ex
        .timings
        .response_end_ns
        .or(ex.timings.response_first_byte_ns)
        .or(ex.timings.request_end_ns)
        .unwrap_or(0);
    RequestSpan {
        protocol: ex.protocol(),
        method: &ex.request.method,
        target: &ex.request.target,
        authority: &ex.authority,
        scheme: &ex.scheme,
        traceparent: ex.request.headers.header("traceparent"),
        status: ex.response.as_ref().map_or(0, |r| r.status),
        grpc_status: grpc_status(ex),
        start_unix_ns: start,
        end_unix_ns: start + took,
        error: ex.error.as_ref().map(|e| e.kind.as_str()),
    }
    .build()
}

enum Item {
    Span(Box<SpanData>),
    Flush(oneshot::Sender<()>),
}

/// The span exporter: a bounded queue and the task that empties it.
pub struct Exporter {
    tx: mpsc::Sender<Item>,
    dropped: IntCounter,
}

impl Exporter {
    /// Starts exporting to the collector at `url` (`http://HOST:PORT`, `/v1/traces` added
    /// unless given) as service `service`; its counters join `metrics`. Must be called
    /// inside the tokio runtime that serves the traffic.
    ///
    /// # Errors
    /// A URL that is not `http://`, or counters that cannot be registered.
    pub fn start(url: &str, service: &str, metrics: &Metrics) -> Result<Arc<Exporter>, OtlpError> {
        let endpoint = endpoint(url)?;
        let dropped = IntCounter::new(
            "mf_otlp_spans_dropped_total",
            "Spans dropped because the export queue was full.",
        )?;
        let exported = IntCounter::new(
            "mf_otlp_spans_exported_total",
            "Spans the collector accepted.",
        )?;
        let failed = IntCounter::new(
            "mf_otlp_spans_failed_total",
            "Spans whose export failed (collector unreachable or refusing).",
        )?;
        for c in [&dropped, &exported, &failed] {
            metrics.register(Box::new(c.clone()))?;
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let sender = Sender {
            endpoint,
            resource: resource(service),
            exported,
            failed,
            warned: false,
        };
        tokio::spawn(sender.run(rx));
        Ok(Arc::new(Exporter { tx, dropped }))
    }

    /// Queues `span` for export, or drops and counts it when the queue is full: never waits.
    pub fn export(&self, span: SpanData) {
        if self.tx.try_send(Item::Span(Box::new(span))).is_err() {
            self.dropped.inc();
        }
    }

    /// Sends what is queued, waiting at most `within` (at shutdown).
    pub async fn flush(&self, within: Duration) {
        let (done, wait) = oneshot::channel();
        let _ = tokio::time::timeout(within, async {
            if self.tx.send(Item::Flush(done)).await.is_ok() {
                let _ = wait.await;
            }
        })
        .await;
    }
}

/// `URL/v1/traces` as a URI, for an `http://` URL.
fn endpoint(url: &str) -> Result<http::Uri, OtlpError> {
    let lower = url.to_ascii_lowercase();
    if !lower.starts_with("http://") {
        return Err(OtlpError::Scheme(url.to_string()));
    }
    let full = if lower.trim_end_matches('/').ends_with("/v1/traces") {
        url.to_string()
    } else {
        format!("{}/v1/traces", url.trim_end_matches('/'))
    };
    let uri: http::Uri = full.parse().map_err(|_| OtlpError::Url(url.to_string()))?;
    if uri.host().is_none_or(str::is_empty) {
        return Err(OtlpError::Url(url.to_string()));
    }
    Ok(uri)
}

fn resource(service: &str) -> Resource {
    Resource {
        attributes: vec![
            key_value("service.name", Value::Str(service.to_string())),
            key_value(
                "service.version",
                Value::Str(env!("CARGO_PKG_VERSION").to_string()),
            ),
        ],
        ..Default::default()
    }
}

fn key_value(key: &str, value: Value) -> KeyValue {
    let value = match value {
        Value::Str(s) => any_value::Value::StringValue(s),
        Value::Int(i) => any_value::Value::IntValue(i),
        Value::Bool(b) => any_value::Value::BoolValue(b),
    };
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

/// The protobuf of one span.
fn encode_span(s: SpanData) -> Span {
    Span {
        trace_id: s.trace_id.to_vec(),
        span_id: s.span_id.to_vec(),
        parent_span_id: s.parent.map(|p| p.to_vec()).unwrap_or_default(),
        name: s.name,
        kind: span::SpanKind::Server as i32,
        start_time_unix_nano: s.start_unix_ns,
        end_time_unix_nano: s.end_unix_ns,
        attributes: s
            .attributes
            .into_iter()
            .map(|(k, v)| key_value(k, v))
            .collect(),
        status: Some(Status {
            code: if s.error {
                status::StatusCode::Error
            } else {
                status::StatusCode::Unset
            } as i32,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn batch_request(resource: Resource, spans: Vec<SpanData>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(resource),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "mf".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                spans: spans.into_iter().map(encode_span).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
    }
}

/// The exporting task's state.
struct Sender {
    endpoint: http::Uri,
    resource: Resource,
    exported: IntCounter,
    failed: IntCounter,
    /// The first failure is logged; later ones are only counted.
    warned: bool,
}

impl Sender {
    async fn run(mut self, mut rx: mpsc::Receiver<Item>) {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut batch = Vec::with_capacity(BATCH);
        while let Some(first) = rx.recv().await {
            let mut flushed = Vec::new();
            let take = |item: Item, batch: &mut Vec<SpanData>, flushed: &mut Vec<_>| match item {
                Item::Span(s) => batch.push(*s),
                Item::Flush(done) => flushed.push(done),
            };
            take(first, &mut batch, &mut flushed);
            let deadline = tokio::time::Instant::now() + LINGER;
            while batch.len() < BATCH && flushed.is_empty() {
                match tokio::time::timeout_at(deadline, rx.recv()).await {
                    Ok(Some(item)) => take(item, &mut batch, &mut flushed),
                    Ok(None) | Err(_) => break,
                }
            }
            if !batch.is_empty() {
                let spans = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                self.post(&client, spans).await;
            }
            for done in flushed {
                let _ = done.send(());
            }
        }
    }

    async fn post<C>(&mut self, client: &Client<C, Full<Bytes>>, spans: Vec<SpanData>)
    where
        C: hyper_util::client::legacy::connect::Connect + Clone + Send + Sync + 'static,
    {
        let n = spans.len() as u64;
        let body = batch_request(self.resource.clone(), spans).encode_to_vec();
        let request = http::Request::post(self.endpoint.clone())
            .header(http::header::CONTENT_TYPE, "application/x-protobuf")
            .body(Full::new(Bytes::from(body)));
        let outcome = match request {
            Ok(r) => match tokio::time::timeout(POST_TIMEOUT, client.request(r)).await {
                Ok(Ok(resp)) if resp.status().is_success() => Ok(()),
                Ok(Ok(resp)) => Err(format!("the collector answered {}", resp.status())),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err("timed out".to_string()),
            },
            Err(e) => Err(e.to_string()),
        };
        match outcome {
            Ok(()) => self.exported.inc_by(n),
            Err(e) => {
                self.failed.inc_by(n);
                if !self.warned {
                    self.warned = true;
                    tracing::warn!(endpoint = %self.endpoint, error = %e, "exporting spans failed (further failures are only counted)");
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "otlp_tests.rs"]
mod tests;
