//! The Prometheus metrics of the replay and of the recording proxy, served as `GET /metrics`
//! on their admin listeners. One metric set for both, so one dashboard reads either.
//!
//! The exposition format is the `prometheus` crate's; mf only decides names and labels.
//! Every label is bounded: route labels are templates (`/users/{id}`), never raw paths, and
//! labels whose values come from clients (unmatched routes, gRPC methods, close codes) keep
//! their first [`MAX_LABELS`] values and fold the rest into one.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

use crate::model::{Direction, Exchange, Protocol};
use crate::vocab::route_template;

/// Distinct values a client-driven label may take before the rest share one value. Matched
/// routes are bounded by the recording; paths and methods come from clients, and one label per
/// path let a scanner grow `/metrics` without bound (257k paths made 2.35M series).
pub const MAX_LABELS: usize = 100;

/// A label whose values come from clients: its first `cap` values are kept, later ones
/// become `overflow`. The lock is taken only where a label is not known up front (unmatched
/// requests, the proxy's finished exchanges), off the hot path of matched answers.
pub struct LabelCap {
    seen: Mutex<HashSet<String>>,
    cap: usize,
    overflow: &'static str,
}

impl LabelCap {
    /// At most `cap` distinct values; the rest are `overflow`.
    pub fn new(cap: usize, overflow: &'static str) -> LabelCap {
        LabelCap {
            seen: Mutex::new(HashSet::new()),
            cap,
            overflow,
        }
    }

    /// `value` while it is one of the first `cap` seen, else the overflow value.
    pub fn label(&self, value: String) -> String {
        let Ok(mut seen) = self.seen.lock() else {
            return self.overflow.into();
        };
        if seen.contains(&value) {
            return value;
        }
        if seen.len() < self.cap {
            seen.insert(value.clone());
            return value;
        }
        self.overflow.into()
    }
}

/// Every metric mf exports.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    faults: IntCounterVec,
    grpc_calls: IntCounterVec,
    /// WebSocket session metrics, shared with the tasks of each session.
    pub ws: Arc<WsMetrics>,
    grpc_methods: LabelCap,
    /// Route labels of requests no recording bounds (unmatched, or through the proxy).
    routes: LabelCap,
}

pub(crate) const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

/// WebSocket sessions last longer than requests.
const SESSION_BUCKETS: [f64; 12] = [
    0.01, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0, 14400.0,
];

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Errors
    /// Only on inconsistent metric definitions (a bug), reported rather than panicking.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "mf_requests_total",
                "Requests served, by protocol, route template, status and match result \
                 (`proxied` through the recording proxy).",
            ),
            &["protocol", "route", "status", "match"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "mf_request_duration_seconds",
                "Time from the start of a request to the end of its answer.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["protocol", "route"],
        )?;
        let faults = IntCounterVec::new(
            Opts::new("mf_faults_injected_total", "Faults injected, by kind."),
            &["kind"],
        )?;
        let grpc_calls = IntCounterVec::new(
            Opts::new(
                "mf_grpc_calls_total",
                "gRPC calls, by method and grpc-status.",
            ),
            &["method", "code"],
        )?;
        let ws = WsMetrics::new()?;
        for c in [&requests, &faults, &grpc_calls] {
            registry.register(Box::new(c.clone()))?;
        }
        registry.register(Box::new(duration.clone()))?;
        ws.register(&registry)?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            faults,
            grpc_calls,
            ws: Arc::new(ws),
            grpc_methods: LabelCap::new(MAX_LABELS, "other"),
            routes: LabelCap::new(MAX_LABELS, "unmatched"),
        })
    }

    /// Counts one answered request. `status` is 0 when no status was sent (reset, hang).
    pub fn request(&self, protocol: &str, route: &str, status: u16, matched: bool, took: Duration) {
        let verdict = if matched { "matched" } else { "unmatched" };
        let (count, duration) = self.series(protocol, route, status, verdict);
        count.inc();
        duration.observe(took.as_secs_f64());
    }

    /// The two series one answered request updates (its count, its duration), for callers
    /// that keep them: looking a series up hashes its labels, which showed in the profile of
    /// replayed gRPC calls.
    pub(crate) fn request_series(
        &self,
        protocol: &str,
        route: &str,
        status: u16,
        matched: bool,
    ) -> (IntCounter, Histogram) {
        let verdict = if matched { "matched" } else { "unmatched" };
        self.series(protocol, route, status, verdict)
    }

    fn series(
        &self,
        protocol: &str,
        route: &str,
        status: u16,
        verdict: &str,
    ) -> (IntCounter, Histogram) {
        // The common statuses need no allocation.
        let text;
        let status = match status {
            0 => "none",
            101 => "101",
            200 => "200",
            201 => "201",
            204 => "204",
            304 => "304",
            404 => "404",
            500 => "500",
            502 => "502",
            503 => "503",
            504 => "504",
            other => {
                text = other.to_string();
                &text
            }
        };
        let count = self
            .requests
            .with_label_values(&[protocol, route, status, verdict]);
        (count, self.duration.with_label_values(&[protocol, route]))
    }

    /// The route label of a request to `path` that no recording bounds: its template while
    /// fewer than [`MAX_LABELS`] have been seen, else `unmatched`.
    pub fn bounded_route(&self, path: &str) -> String {
        self.routes.label(route_template(path))
    }

    /// Counts one injected fault.
    pub fn fault(&self, kind: &str) {
        self.faults.with_label_values(&[kind]).inc();
    }

    /// Counts one gRPC call of `method` (`package.Service/Method`, a leading `/` ignored)
    /// that ended with grpc-status `code` (`None`: no status, the stream was reset).
    pub fn grpc_call(&self, method: &str, code: Option<u32>) {
        self.grpc_series(method, code).inc();
    }

    /// The series [`Metrics::grpc_call`] updates, for callers that keep it.
    pub fn grpc_series(&self, method: &str, code: Option<u32>) -> IntCounter {
        let method = self
            .grpc_methods
            .label(method.trim_start_matches('/').to_string());
        let code = match code {
            Some(c @ 0..=16) => c.to_string(),
            Some(_) => "other".into(),
            None => "none".into(),
        };
        self.grpc_calls.with_label_values(&[&method, &code])
    }

    /// Counts one exchange the recording proxy finished: its request, and for gRPC its call.
    /// WebSocket frames were counted live, by the session's [`WsSession`].
    pub fn proxied(&self, ex: &Exchange) {
        let protocol = ex.protocol();
        let path = crate::vocab::split_target(crate::vocab::origin_form(&ex.request.target)).0;
        let route = self.bounded_route(path);
        let status = ex.response.as_ref().map_or(0, |r| r.status);
        // A WebSocket exchange lasts the session; its request is the handshake.
        let took_ns = match protocol {
            Protocol::WebSocket => ex.timings.response_first_byte_ns,
            _ => ex
                .timings
                .response_end_ns
                .or(ex.timings.response_first_byte_ns),
        };
        let (count, duration) = self.series(protocol.as_str(), &route, status, "proxied");
        count.inc();
        if let Some(ns) = took_ns {
            duration.observe(ns as f64 / 1e9);
        }
        if protocol == Protocol::Grpc {
            self.grpc_call(path, grpc_status(ex));
        }
    }

    /// Injected faults so far, by kind.
    pub fn fault_counts(&self) -> std::collections::BTreeMap<String, u64> {
        self.registry
            .gather()
            .iter()
            .filter(|f| f.name() == "mf_faults_injected_total")
            .flat_map(|f| f.get_metric().iter())
            .map(|m| {
                let kind = m
                    .get_label()
                    .iter()
                    .find(|l| l.name() == "kind")
                    .map(|l| l.value().to_string())
                    .unwrap_or_default();
                (kind, m.get_counter().get_value() as u64)
            })
            .collect()
    }

    /// Registers `metric` beside mf's own (the span exporter's counters).
    pub(crate) fn register(
        &self,
        metric: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), prometheus::Error> {
        self.registry.register(metric)
    }

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on a malformed metric family, which registration rules out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The grpc-status an exchange ended with: from its trailers, or from the head of a
/// trailers-only answer.
pub fn grpc_status(ex: &Exchange) -> Option<u32> {
    let r = ex.response.as_ref()?;
    r.trailers
        .iter()
        .chain(&r.headers)
        .find(|h| h.name.eq_ignore_ascii_case("grpc-status"))
        .and_then(|h| std::str::from_utf8(&h.value).ok()?.trim().parse().ok())
}

/// WebSocket opcodes (RFC 6455 §5.2) as label values; reserved ones share `other`. The
/// decoder's constants live in `decode`, which `net` does not import.
const OPCODES: [(u8, &str); 6] = [
    (0, "continuation"),
    (1, "text"),
    (2, "binary"),
    (8, "close"),
    (9, "ping"),
    (10, "pong"),
];
const CLOSE: u8 = 8;

/// The WebSocket lifecycle: sessions opened and open, how long they lasted, frames and bytes
/// by sender and opcode, close codes, and sessions that ended without a close frame.
pub struct WsMetrics {
    opened: IntCounter,
    active: IntGauge,
    duration: Histogram,
    frames: IntCounterVec,
    bytes: IntCounterVec,
    closes: IntCounterVec,
    abnormal: IntCounter,
    /// `frames`/`bytes` series per sender and opcode, looked up once (a frame costs two
    /// atomic adds, not two label hashes).
    per_frame: [[(IntCounter, IntCounter); 7]; 2],
}

impl WsMetrics {
    fn new() -> Result<WsMetrics, prometheus::Error> {
        let opened = IntCounter::new(
            "mf_websocket_connections_total",
            "WebSocket connections opened.",
        )?;
        let active = IntGauge::new(
            "mf_websocket_connections_active",
            "WebSocket connections open now.",
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "mf_websocket_connection_duration_seconds",
                "How long WebSocket connections lasted.",
            )
            .buckets(SESSION_BUCKETS.to_vec()),
        )?;
        let frames = IntCounterVec::new(
            Opts::new(
                "mf_websocket_frames_total",
                "WebSocket frames, by sender (client, server) and opcode.",
            ),
            &["direction", "opcode"],
        )?;
        let bytes = IntCounterVec::new(
            Opts::new(
                "mf_websocket_frame_bytes_total",
                "WebSocket payload bytes as sent on the wire, by sender and opcode.",
            ),
            &["direction", "opcode"],
        )?;
        let closes = IntCounterVec::new(
            Opts::new(
                "mf_websocket_closes_total",
                "WebSocket close frames, by sender and close code.",
            ),
            &["direction", "code"],
        )?;
        let abnormal = IntCounter::new(
            "mf_websocket_abnormal_closures_total",
            "WebSocket connections that ended without a close frame (1006).",
        )?;
        let pair = |dir: &str, op: &str| {
            (
                frames.with_label_values(&[dir, op]),
                bytes.with_label_values(&[dir, op]),
            )
        };
        let per_dir = |dir: &str| {
            let mut i = OPCODES.iter().map(|(_, name)| pair(dir, name));
            let mut next = || i.next().unwrap_or_else(|| pair(dir, "other"));
            [
                next(),
                next(),
                next(),
                next(),
                next(),
                next(),
                pair(dir, "other"),
            ]
        };
        let per_frame = [per_dir("client"), per_dir("server")];
        Ok(WsMetrics {
            opened,
            active,
            duration,
            frames,
            bytes,
            closes,
            abnormal,
            per_frame,
        })
    }

    fn register(&self, registry: &Registry) -> Result<(), prometheus::Error> {
        registry.register(Box::new(self.opened.clone()))?;
        registry.register(Box::new(self.active.clone()))?;
        registry.register(Box::new(self.duration.clone()))?;
        registry.register(Box::new(self.frames.clone()))?;
        registry.register(Box::new(self.bytes.clone()))?;
        registry.register(Box::new(self.closes.clone()))?;
        registry.register(Box::new(self.abnormal.clone()))
    }

    /// A session opened: counted open until the returned guard drops.
    pub fn open(self: &Arc<Self>) -> WsSession {
        self.opened.inc();
        self.active.inc();
        WsSession {
            metrics: self.clone(),
            opened: Instant::now(),
            closed: AtomicBool::new(false),
        }
    }
}

/// One open WebSocket session in the metrics. Dropping it ends the session: the active
/// gauge goes down, the duration is observed, and a session that saw no close frame counts
/// as an abnormal closure.
pub struct WsSession {
    metrics: Arc<WsMetrics>,
    opened: Instant,
    closed: AtomicBool,
}

impl WsSession {
    /// Counts one frame sent by `from` (`payload`: its payload as on the wire).
    pub fn frame(&self, from: Direction, opcode: u8, payload: &[u8]) {
        let dir = match from {
            Direction::ClientToServer => 0,
            Direction::ServerToClient => 1,
        };
        let slot = OPCODES
            .iter()
            .position(|(op, _)| *op == opcode)
            .unwrap_or(OPCODES.len());
        let (frames, bytes) = &self.metrics.per_frame[dir][slot];
        frames.inc();
        bytes.inc_by(payload.len() as u64);
        if opcode == CLOSE {
            self.close(from, payload);
        }
    }

    fn close(&self, from: Direction, payload: &[u8]) {
        self.closed.store(true, Ordering::Relaxed);
        // RFC 6455 §7.4: an empty close body means no code (1005); the registered codes are
        // 1000-1015, 3000-3999 are registered by libraries, 4000-4999 private.
        let code = match payload {
            [a, b, ..] => match u16::from_be_bytes([*a, *b]) {
                c @ 1000..=1015 => c.to_string(),
                3000..=3999 => "3xxx".into(),
                4000..=4999 => "4xxx".into(),
                _ => "invalid".into(),
            },
            _ => "1005".into(),
        };
        let dir = match from {
            Direction::ClientToServer => "client",
            Direction::ServerToClient => "server",
        };
        self.metrics.closes.with_label_values(&[dir, &code]).inc();
    }
}

impl Drop for WsSession {
    fn drop(&mut self) {
        let m = &self.metrics;
        m.active.dec();
        m.duration.observe(self.opened.elapsed().as_secs_f64());
        if !self.closed.load(Ordering::Relaxed) {
            m.abnormal.inc();
        }
    }
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
mod tests;
