//! Prometheus metrics of a replay, served as `GET /metrics` on the admin listener.
//!
//! The exposition format is the `prometheus` crate's; mf only decides names and labels.
//! Route labels are templates (`/users/{id}`), never raw paths, to keep cardinality bounded.

use std::time::Duration;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// Every metric mf exports.
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    faults: IntCounterVec,
    /// Open WebSocket connections (for the WebSocket replay path).
    pub ws_active: IntGauge,
    /// WebSocket connections accepted.
    pub ws_total: IntCounter,
    /// How long WebSocket connections lasted.
    pub ws_duration: Histogram,
    /// WebSocket messages, by `direction` (`in`: from the client, `out`: to it).
    pub ws_messages: IntCounterVec,
    /// gRPC calls by `method` and `code` (the grpc-status sent).
    pub grpc_calls: IntCounterVec,
}

const LATENCY_BUCKETS: [f64; 14] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
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
                "Requests served, by protocol, route template, status and match result.",
            ),
            &["protocol", "route", "status", "match"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "mf_request_duration_seconds",
                "Time from the end of a request to the end of its answer.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["protocol", "route"],
        )?;
        let faults = IntCounterVec::new(
            Opts::new("mf_faults_injected_total", "Faults injected, by kind."),
            &["kind"],
        )?;
        let ws_active = IntGauge::new(
            "mf_websocket_connections_active",
            "WebSocket connections open now.",
        )?;
        let ws_total = IntCounter::new(
            "mf_websocket_connections_total",
            "WebSocket connections accepted.",
        )?;
        let ws_duration = Histogram::with_opts(
            HistogramOpts::new(
                "mf_websocket_connection_duration_seconds",
                "How long WebSocket connections lasted.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )?;
        let ws_messages = IntCounterVec::new(
            Opts::new(
                "mf_websocket_messages_total",
                "WebSocket messages, by direction.",
            ),
            &["direction"],
        )?;
        let grpc_calls = IntCounterVec::new(
            Opts::new(
                "mf_grpc_calls_total",
                "gRPC calls, by method and grpc-status.",
            ),
            &["method", "code"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(faults.clone()))?;
        registry.register(Box::new(ws_active.clone()))?;
        registry.register(Box::new(ws_total.clone()))?;
        registry.register(Box::new(ws_duration.clone()))?;
        registry.register(Box::new(ws_messages.clone()))?;
        registry.register(Box::new(grpc_calls.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            faults,
            ws_active,
            ws_total,
            ws_duration,
            ws_messages,
            grpc_calls,
        })
    }

    /// Counts one answered request. `status` is 0 when no status was sent (reset, hang).
    pub fn request(&self, protocol: &str, route: &str, status: u16, matched: bool, took: Duration) {
        let (count, duration) = self.request_series(protocol, route, status, matched);
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
    ) -> (prometheus::IntCounter, Histogram) {
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
        let count = self.requests.with_label_values(&[
            protocol,
            route,
            status,
            if matched { "matched" } else { "unmatched" },
        ]);
        (count, self.duration.with_label_values(&[protocol, route]))
    }

    /// Counts one injected fault.
    pub fn fault(&self, kind: &str) {
        self.faults.with_label_values(&[kind]).inc();
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

    /// The text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec only fails on a malformed metric family, which registration rules out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposition_has_the_counted_series() {
        let m = Metrics::new().unwrap();
        m.request(
            "http/1.1",
            "/users/{id}",
            200,
            true,
            Duration::from_millis(3),
        );
        m.request(
            "http/1.1",
            "/users/{id}",
            200,
            true,
            Duration::from_millis(3),
        );
        m.fault("reset");
        let text = m.render();
        assert!(
            text.contains(
                r#"mf_requests_total{match="matched",protocol="http/1.1",route="/users/{id}",status="200"} 2"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"mf_faults_injected_total{kind="reset"} 1"#),
            "{text}"
        );
        assert!(
            text.contains("mf_request_duration_seconds_bucket"),
            "{text}"
        );
        assert_eq!(m.fault_counts().get("reset"), Some(&1));
    }
}
