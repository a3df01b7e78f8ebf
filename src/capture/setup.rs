//! What a recording proxy is: its configuration, the upstream it forwards to, where its
//! exchanges go and its counters. Shared by the HTTP/1 driver (`proxy`) and the HTTP/2 one
//! (`h2`), which is why it sits below both.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::model::{Exchange, ExchangeSink};
use crate::net::metrics::{Metrics, WsSession};
use crate::net::otlp;

/// Where the proxy forwards to: the upstream type lives in `net::dial`, shared with replay's
/// driver.
pub use crate::net::dial::Upstream;

/// Which HTTP version the proxy speaks to upstreams (`--upstream-http2`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Http2Policy {
    /// Learn it per upstream: ALPN for https (h2 when the upstream picks it), a
    /// prior-knowledge probe for http; HTTP/2 clients are translated to HTTP/1.1 for an
    /// upstream that speaks only that.
    #[default]
    Auto,
    /// HTTP/2 (h2 or h2c prior knowledge) for HTTP/2 clients, whatever the upstream says.
    Always,
    /// HTTP/1.1 to every upstream.
    Never,
}

/// Proxy settings, validated by the CLI.
#[derive(Clone, Debug)]
pub struct ProxyConfig {
    /// The reverse-proxy target; `None` makes mf a forward proxy.
    pub upstream: Option<Upstream>,
    /// TLS settings for `https` upstreams (ALPN http/1.1).
    pub upstream_tls: Arc<rustls::ClientConfig>,
    /// The same for the connections of HTTP/2 clients: ALPN h2 and http/1.1 (the upstream
    /// picks), or one of them as [`ProxyConfig::upstream_http2`] says.
    pub upstream_tls_h2: Arc<rustls::ClientConfig>,
    /// Which HTTP version upstreams are spoken to in.
    pub upstream_http2: Http2Policy,
    /// Certificates for intercepted `CONNECT` tunnels (forward proxy).
    pub intercept_tls: Option<Arc<rustls::ServerConfig>>,
    /// Hosts whose `CONNECT` tunnels are relayed untouched (recorded as opaque tunnels).
    pub passthrough: Vec<String>,
    /// Bodies longer than this are forwarded whole but stored truncated.
    pub max_body: usize,
    pub x_forwarded_for: bool,
    /// Keep the client's Host header instead of naming the upstream.
    pub keep_host: bool,
    pub connect_timeout: Duration,
    /// How long to wait for the upstream's response head.
    pub response_timeout: Duration,
    pub max_head: usize,
    /// How long clients may take to send a request (slow or silent ones are closed).
    pub client_timeouts: crate::net::ClientTimeouts,
    /// Threads client connections are dealt to, each with its own event loop; 0 runs them
    /// on the runtime that accepts them.
    pub threads: usize,
}

/// Live counters, read for the summary line.
#[derive(Debug, Default)]
pub struct ProxyStats {
    pub connections: AtomicU64,
    pub exchanges: AtomicU64,
    pub upstream_errors: AtomicU64,
    pub bad_requests: AtomicU64,
}

/// What the proxy learned about the cleartext upstreams it spoke to: whether each answers
/// HTTP/2 with prior knowledge (RFC 9113 §3.3). Keyed by `host:port`; https upstreams need
/// no entry, ALPN says it on every connection.
#[derive(Debug, Default)]
pub(crate) struct Learned(Mutex<HashMap<String, bool>>);

impl Learned {
    /// What `up` was found to speak: `Some(true)` for h2c, `Some(false)` for HTTP/1 only.
    pub(crate) fn h2c(&self, up: &Upstream) -> Option<bool> {
        self.0.lock().ok()?.get(&learned_key(up)).copied()
    }

    /// Remembers what `up` speaks.
    pub(crate) fn set_h2c(&self, up: &Upstream, h2c: bool) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(learned_key(up), h2c);
        }
    }
}

fn learned_key(up: &Upstream) -> String {
    format!("{}:{}", up.host.to_ascii_lowercase(), up.port)
}

/// A recording proxy: configuration, where exchanges go, and counters.
pub struct Proxy {
    pub(crate) config: ProxyConfig,
    sink: Arc<dyn ExchangeSink>,
    next_connection: AtomicU64,
    pub stats: ProxyStats,
    /// What each cleartext upstream speaks, learned on first use.
    pub(crate) learned: Learned,
    /// Who else watches finished exchanges (set once, before serving; none by default).
    observers: std::sync::OnceLock<Observers>,
}

/// What watches the proxy's finished exchanges besides the recording: counters only, so the
/// exchange path pays a few atomic adds (and a queue push for a span).
#[derive(Default)]
pub(crate) struct Observers {
    /// `--admin`: the Prometheus metrics served on `/metrics`.
    pub metrics: Option<Arc<Metrics>>,
    /// `--otlp`: one span per exchange.
    pub spans: Option<Arc<otlp::Exporter>>,
}

impl Proxy {
    /// A proxy numbering its connections from `first_connection_id`.
    pub fn new(
        config: ProxyConfig,
        sink: Arc<dyn ExchangeSink>,
        first_connection_id: u64,
    ) -> Arc<Proxy> {
        Arc::new(Proxy {
            config,
            sink,
            next_connection: AtomicU64::new(first_connection_id),
            stats: ProxyStats::default(),
            learned: Learned::default(),
            observers: std::sync::OnceLock::new(),
        })
    }

    /// Sets who watches finished exchanges; only the first call counts.
    pub(crate) fn set_observers(&self, observers: Observers) {
        let _ = self.observers.set(observers);
    }

    /// A WebSocket session opened: counted in the metrics until the guard drops.
    pub(crate) fn ws_session(&self) -> Option<WsSession> {
        let metrics = self.observers.get()?.metrics.as_ref()?;
        Some(metrics.ws.open())
    }

    /// Numbers a new client connection and counts it.
    pub(crate) fn open_connection(&self) -> u64 {
        self.stats.connections.fetch_add(1, Ordering::Relaxed);
        self.next_connection.fetch_add(1, Ordering::Relaxed)
    }

    /// Hands a finished exchange to the sink and counts it.
    pub(crate) fn record(&self, exchange: Box<Exchange>) {
        if let Some(o) = self.observers.get() {
            if let Some(m) = &o.metrics {
                m.proxied(&exchange);
            }
            if let Some(s) = &o.spans {
                s.export(otlp::exchange_span(&exchange));
            }
        }
        self.sink.record(exchange);
        self.stats.exchanges.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an exchange the upstream failed.
    pub(crate) fn upstream_failed(&self) {
        self.stats.upstream_errors.fetch_add(1, Ordering::Relaxed);
    }
}
