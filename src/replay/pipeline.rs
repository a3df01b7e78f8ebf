//! The replay pipeline every protocol goes through: a protocol-neutral [`RequestView`] →
//! the answer source (the recording's matcher, the gRPC call index, or a fixtures folder) →
//! the plan (rules, latency, faults, scenario) → the protocol renders → [`Replay::finish`]
//! counts it. Matching, planning, fault logging, the near-miss report and the metrics exist
//! here once; a protocol file only reads requests and writes answers.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use tokio::time::Instant;

use super::cache::{AnswerCache, Recorded, Series, DEFAULT_CACHE_BYTES};
use super::grpc_index::GrpcIndex;
use super::matcher::{Incoming, MatchResult, Matcher, RepeatPolicy};
use super::metrics::Metrics;
use super::miss::{MissHook, MissRequest, Misses};
use super::plan::{Plan, Planner, Settings};
use super::rules::RequestInfo;
use super::source::{Answer as SourceAnswer, AnswerSource};
use crate::decode::h1;
use crate::model::{Exchange, Header, Protocol, Response};
use crate::vocab::secrets::log_target;
use crate::vocab::{origin_form, split_target};

/// Replay settings, validated by the CLI.
#[derive(Clone, Debug)]
pub struct ReplayConfig {
    pub repeat: RepeatPolicy,
    pub max_head: usize,
    /// Larger request bodies are refused with 413.
    pub max_request_body: usize,
    /// Replay stream messages (gRPC, WebSocket) and Server-Sent Events bodies with their
    /// recorded relative timing, whatever the latency mode (off for `--latency none`).
    pub recorded_latency: bool,
    /// Latency, scenario and rules at start (changed live through the admin API).
    pub realism: Settings,
    /// Seeds every random choice of the planner.
    pub seed: u64,
    /// How long HTTP/1 clients may take (slow or silent ones are closed).
    pub timeouts: crate::net::ClientTimeouts,
    /// Bytes of recorded answers kept loaded and rendered (the rest stay in the recording).
    pub cache_bytes: usize,
}

impl Default for ReplayConfig {
    fn default() -> Self {
        ReplayConfig {
            repeat: RepeatPolicy::Last,
            max_head: h1::DEFAULT_MAX_HEAD,
            max_request_body: 64 << 20,
            recorded_latency: true,
            realism: Settings::default(),
            seed: 0,
            timeouts: crate::net::ClientTimeouts::default(),
            cache_bytes: DEFAULT_CACHE_BYTES,
        }
    }
}

/// Live counters.
#[derive(Debug, Default)]
pub struct ReplayStats {
    pub requests: AtomicU64,
    pub matched: AtomicU64,
    pub unmatched: AtomicU64,
    pub bad_requests: AtomicU64,
}

impl ReplayStats {
    /// The one-line summary a replay prints when it stops.
    pub fn summary(&self) -> String {
        format!(
            "served {} requests ({} matched, {} unmatched, {} bad)",
            self.requests.load(Ordering::Relaxed),
            self.matched.load(Ordering::Relaxed),
            self.unmatched.load(Ordering::Relaxed),
            self.bad_requests.load(Ordering::Relaxed)
        )
    }
}

/// A request as every protocol describes it to the pipeline.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RequestView<'a> {
    pub protocol: Protocol,
    pub method: &'a str,
    /// The target as the client sent it (origin or absolute form).
    pub target: &'a str,
    /// Who the request is addressed to: absolute URL, `:authority`, CONNECT tunnel or Host.
    pub authority: Option<&'a str>,
    pub headers: &'a [Header],
    pub body: &'a [u8],
    /// gRPC: `package.Service/Method`.
    pub grpc_method: Option<&'a str>,
    /// gRPC: the first request message, which picks among recorded calls of the method.
    pub grpc_first: Option<&'a Bytes>,
}

impl RequestView<'_> {
    /// Path and query.
    pub fn origin_target(&self) -> &str {
        origin_form(self.target)
    }

    /// The path without query.
    pub fn path(&self) -> &str {
        split_target(self.origin_target()).0
    }
}

/// Where the answer comes from.
pub(crate) enum Found {
    /// A recorded exchange, loaded.
    Recorded(Arc<Recorded>),
    /// A response from the answer source (a fixtures folder).
    Sourced(Box<Response>),
    /// Nothing matched; this JSON says why (the near-miss report, served with a 404).
    Missing(serde_json::Value),
}

/// The pipeline's verdict on one request.
pub(crate) struct Decision {
    pub found: Found,
    pub plan: Plan,
    /// The protocol the answer speaks (a matched WebSocket handshake is `WebSocket`).
    pub protocol: Protocol,
    pub started: Instant,
    /// Where the request's span began (only when spans are exported).
    pub span: Option<Box<super::spans::SpanStart>>,
}

impl Decision {
    /// The recorded exchange answering, if any.
    pub fn matched(&self) -> Option<usize> {
        self.recorded().map(|r| r.index)
    }

    /// The recorded exchange answering, loaded, if any.
    pub fn recorded(&self) -> Option<&Recorded> {
        match &self.found {
            Found::Recorded(r) => Some(r),
            _ => None,
        }
    }
}

/// A matched WebSocket handshake, handed from the HTTP/1 reader to the WebSocket player
/// (the one place two protocols meet, so it lives here rather than in either).
pub(crate) struct Upgrade<S> {
    pub stream: S,
    pub headers: Vec<Header>,
    /// Bytes after the handshake request (the client's first frames).
    pub early: Bytes,
    pub path: String,
    pub decision: Decision,
}

/// A replay of one recording, or of a fixtures folder.
pub struct Replay {
    matcher: Matcher,
    /// When set, answers come from here instead of `matcher` (a fixtures folder).
    source: Option<Arc<dyn AnswerSource>>,
    planner: Planner,
    metrics: Metrics,
    config: ReplayConfig,
    pub stats: ReplayStats,
    /// Where recorded exchanges are loaded from when an answer needs one.
    exchanges: Exchanges,
    /// Recorded answers loaded and rendered, bounded in bytes.
    cache: AnswerCache,
    grpc: GrpcIndex,
    /// Some recorded exchange spoke HTTP/2 (or gRPC).
    spoke_h2: bool,
    /// Record-on-miss: who answers what nothing else does, and what it taught.
    misses: std::sync::OnceLock<Misses>,
    /// `--otlp`: where each answered request's span goes.
    spans: std::sync::OnceLock<Arc<crate::net::otlp::Exporter>>,
}

impl Replay {
    /// Sends requests that nothing answers to `hook` (record-on-miss); what it keeps is
    /// served from then on. Set once, before serving; a second hook is ignored.
    pub fn set_miss_hook(&self, hook: Arc<dyn MissHook>) {
        let _ = self.misses.set(Misses::new(hook));
    }

    /// Exports one span per answered request to `exporter`. Set once, before serving.
    pub(crate) fn set_exporter(&self, exporter: Arc<crate::net::otlp::Exporter>) {
        let _ = self.spans.set(exporter);
    }

    /// Whether spans are exported (the protocols then keep the `traceparent` header).
    pub(crate) fn traced(&self) -> bool {
        self.spans.get().is_some()
    }

    /// Exchanges the miss hook kept, and misses it could not answer.
    pub fn miss_counts(&self) -> Option<(u64, u64)> {
        let m = self.misses.get()?;
        Some((
            m.kept.load(Ordering::Relaxed),
            m.failed.load(Ordering::Relaxed),
        ))
    }

    /// As [`Replay::decide`]; a request nothing answers goes to the miss hook, when there is
    /// one, and its answer is served (gRPC calls take their own path: `grpc::MissedCall`).
    pub(crate) async fn decide_or_fetch(&self, view: &RequestView<'_>) -> Decision {
        let mut decision = self.decide(view).await;
        let Some(misses) = self.misses.get() else {
            return decision;
        };
        if matches!(decision.found, Found::Missing(_)) && view.grpc_method.is_none() {
            let req = MissRequest {
                method: view.method,
                target: view.origin_target(),
                headers: view.headers,
                body: view.body,
                grpc: false,
            };
            decision.found = Found::Sourced(Box::new(misses.fetch(req).await));
        }
        decision
    }

    /// Record-on-miss, when a miss hook was set.
    pub(crate) fn misses(&self) -> Option<&Misses> {
        self.misses.get()
    }

    /// The latency and fault planner, shared by every protocol and the admin API.
    pub fn planner(&self) -> &Planner {
        &self.planner
    }

    /// The Prometheus metrics.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The matcher, for control endpoints (reset counters).
    pub fn matcher(&self) -> &Matcher {
        &self.matcher
    }

    /// The settings the replay started with.
    pub(crate) fn config(&self) -> &ReplayConfig {
        &self.config
    }

    /// The recorded gRPC calls.
    pub(crate) fn grpc(&self) -> &GrpcIndex {
        &self.grpc
    }

    /// Counts a request read from a client (before it is answered).
    pub(crate) fn received(&self) {
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request that could not be read (malformed, too large).
    pub(crate) fn refused(&self) {
        self.stats.bad_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Finds the answer to `view` and plans it: the pipeline's one question.
    pub(crate) async fn decide(&self, view: &RequestView<'_>) -> Decision {
        let started = Instant::now();
        let found = match self.find(view) {
            Ok(index) => self.load(index).await,
            Err(found) => found,
        };
        let recorded = match &found {
            Found::Recorded(r) => Some(r),
            _ => None,
        };
        let protocol = match recorded {
            Some(r) if is_websocket_answer(&r.exchange) => Protocol::WebSocket,
            _ => view.protocol,
        };
        let info = RequestInfo {
            protocol,
            method: view.method,
            path: view.path(),
            grpc_method: view.grpc_method,
            headers: view.headers,
        };
        let mut plan = self.plan_for(&info, recorded.map(|r| r.index));
        if let Some(timed) = recorded.and_then(|r| r.rendered.timed.as_deref()) {
            plan.pacing = super::latency::body_pacing(
                plan.pacing,
                plan.message_scale,
                timed.event_stream,
                self.config.recorded_latency,
            );
        }
        Decision {
            found,
            plan,
            protocol,
            started,
            span: self.traced().then(|| {
                Box::new(super::spans::SpanStart::new(
                    view.protocol,
                    view.method,
                    view.path(),
                    view.authority,
                    view.headers,
                ))
            }),
        }
    }

    /// The recorded exchange answering `view` (`Ok`), or the answer when none does.
    fn find(&self, view: &RequestView<'_>) -> Result<usize, Found> {
        if let Some(method) = view.grpc_method {
            let path = view.path();
            return match self.grpc.find(path, view.grpc_first) {
                Some(index) => {
                    self.stats.matched.fetch_add(1, Ordering::Relaxed);
                    Ok(index)
                }
                None => {
                    self.stats.unmatched.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(method, "no recorded grpc call matches");
                    Err(Found::Missing(serde_json::Value::Null))
                }
            };
        }
        // Live requests carry real credentials: logs show their target redacted (evaluated
        // only when the line is logged).
        let incoming = Incoming {
            method: view.method,
            target: view.origin_target(),
            body: view.body,
        };
        if let Some(source) = &self.source {
            return Err(match source.answer(&incoming) {
                SourceAnswer::Response { response, label } => {
                    self.stats.matched.fetch_add(1, Ordering::Relaxed);
                    tracing::debug!(method = %view.method, target = %log_target(view.target), %label, "matched");
                    Found::Sourced(Box::new(response))
                }
                SourceAnswer::NotFound(report) => {
                    if let Some(found) = self.learned(&incoming) {
                        return Err(found);
                    }
                    self.stats.unmatched.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(method = %view.method, target = %log_target(view.target), "no fixture matches");
                    Found::Missing(report)
                }
            });
        }
        match self.matcher.find_at(view.authority, &incoming) {
            MatchResult::Found { index, call } => {
                self.stats.matched.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(method = %view.method, target = %log_target(view.target), index, call, "matched");
                Ok(index)
            }
            MatchResult::NotFound { near_misses } => {
                if let Some(found) = self.learned(&incoming) {
                    return Err(found);
                }
                self.stats.unmatched.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(method = %view.method, target = %log_target(view.target), "no recorded exchange matches");
                Err(Found::Missing(serde_json::json!({
                    "error": "no recorded exchange matches this request",
                    "request": { "method": view.method, "target": view.target },
                    "closest": near_misses,
                })))
            }
        }
    }

    /// What to do with the answer to `info` (exchange `matched`). Counts the injected fault
    /// in the metrics and logs it.
    pub fn plan_for(&self, info: &RequestInfo<'_>, matched: Option<usize>) -> Plan {
        let plan = self.planner.plan(info, matched);
        if let Some(f) = &plan.fault {
            self.metrics.fault(f.kind());
            tracing::info!(
                fault = f.kind(),
                rule = plan.rule.as_deref().unwrap_or("-"),
                path = info.path,
                "injecting fault"
            );
        }
        plan
    }

    /// Counts an answered request to `path`: `status` 0 when none was sent (reset, hang,
    /// cut off).
    pub(crate) fn finish(&self, path: &str, decision: &Decision, status: u16) {
        self.finish_call(path, decision, status, None);
    }

    /// As [`Replay::finish`], for a gRPC call that ended with `grpc_status` (`None`: reset).
    pub(crate) fn finish_grpc(
        &self,
        path: &str,
        decision: &Decision,
        status: u16,
        grpc_status: Option<u32>,
    ) {
        self.metrics.grpc_call(path, grpc_status);
        self.finish_call(path, decision, status, grpc_status);
    }

    /// As [`Replay::finish_grpc`], for a call answered as its recorded call was: with that
    /// call's grpc-status, counted in a series looked up once per loaded recorded call.
    pub(crate) fn finish_recorded_grpc(&self, path: &str, decision: &Decision, status: u16) {
        let Some(recorded) = decision.recorded() else {
            return self.finish_grpc(path, decision, status, None);
        };
        let (code, calls) = recorded.grpc_series.get_or_init(|| {
            let code = crate::net::metrics::grpc_status(&recorded.exchange);
            (code, self.metrics.grpc_series(path, code))
        });
        calls.inc();
        self.finish_call(path, decision, status, *code);
    }

    fn finish_call(&self, path: &str, decision: &Decision, status: u16, grpc: Option<u32>) {
        if let (Some(start), Some(exporter)) = (&decision.span, self.spans.get()) {
            exporter.export(start.finish(&super::spans::SpanEnd {
                elapsed: decision.started.elapsed(),
                websocket: decision.protocol == Protocol::WebSocket,
                matched: !matches!(decision.found, Found::Missing(_)),
                fault: decision.plan.fault.as_ref().map(|f| f.kind()),
                status,
                grpc_status: grpc,
            }));
        }
        let recorded = decision.recorded();
        if let Some(r) = recorded {
            let s = r.series.get_or_init(|| {
                let (count, duration) = self.metrics.request_series(
                    decision.protocol.as_str(),
                    &r.rendered.route,
                    status,
                    true,
                );
                Series {
                    protocol: decision.protocol,
                    status,
                    count,
                    duration,
                }
            });
            if s.protocol == decision.protocol && s.status == status {
                s.count.inc();
                s.duration.observe(decision.started.elapsed().as_secs_f64());
                return;
            }
        }
        let unmatched_route;
        let route: &str = match recorded {
            Some(r) => &r.rendered.route,
            None => {
                unmatched_route = self.metrics.bounded_route(path);
                &unmatched_route
            }
        };
        self.metrics.request(
            decision.protocol.as_str(),
            route,
            status,
            recorded.is_some(),
            decision.started.elapsed(),
        );
    }
}

impl Replay {
    /// The answer an earlier miss taught for `incoming`, counted as matched.
    fn learned(&self, incoming: &Incoming<'_>) -> Option<Found> {
        let response = self.misses.get()?.find(incoming)?;
        self.stats.matched.fetch_add(1, Ordering::Relaxed);
        Some(Found::Sourced(Box::new(response)))
    }
}

/// True for a recorded WebSocket handshake that the server accepted.
pub(crate) fn is_websocket_answer(ex: &Exchange) -> bool {
    ex.protocol == Some(Protocol::WebSocket)
        && ex.response.as_ref().is_some_and(|r| r.status == 101)
}

/// The text of a near-miss (or no-fixture) report, as served in a 404 body.
pub(crate) fn report_text(report: &serde_json::Value) -> String {
    let mut text = serde_json::to_string_pretty(report).unwrap_or_default();
    text.push('\n');
    text
}

#[path = "pipeline_setup.rs"]
mod setup;
use setup::Exchanges;
pub use setup::SetupError;

#[cfg(test)]
#[path = "pipeline_tests.rs"]
mod tests;
