//! `GET /api/live` on the admin port: a Server-Sent Events stream of what the replay is
//! doing, one event a second, for the control center's live panels (request rate, latency
//! histogram, error and fault rate, open WebSocket connections, active scenario).
//!
//! Each event is one JSON object; rates are per second over the last interval, counts are
//! since the start (the page keeps its own history for the sparklines).

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body::Frame;

use super::pipeline::Replay;
use crate::net::Shutdown;

/// How often an event goes out.
const EVERY: Duration = Duration::from_secs(1);

/// Counters the rates are computed from.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Totals {
    requests: u64,
    errors: u64,
    faults: u64,
}

/// One snapshot of the replay: totals and the latency histogram, read from the counters
/// and the metrics registry.
fn snapshot(replay: &Replay) -> (Totals, serde_json::Value) {
    let mut errors = 0u64;
    let mut bounds: Vec<f64> = Vec::new();
    let mut cumulative: Vec<u64> = Vec::new();
    let mut observed = 0u64;
    let mut seconds = 0f64;
    for family in replay.metrics().gather() {
        match family.name() {
            "mf_requests_total" => {
                for m in family.get_metric() {
                    let failed = m.get_label().iter().any(|l| {
                        l.name() == "status"
                            && (l.value() == "none"
                                || l.value().parse::<u16>().is_ok_and(|s| s >= 500))
                    });
                    if failed {
                        errors += m.get_counter().get_value() as u64;
                    }
                }
            }
            "mf_request_duration_seconds" => {
                for m in family.get_metric() {
                    let h = m.get_histogram();
                    observed += h.get_sample_count();
                    seconds += h.get_sample_sum();
                    for (i, b) in h.get_bucket().iter().enumerate() {
                        if bounds.len() <= i {
                            bounds.push(b.upper_bound());
                            cumulative.push(0);
                        }
                        cumulative[i] += b.cumulative_count();
                    }
                }
            }
            _ => {}
        }
    }
    // Per-bucket counts (the page draws bars), the last one for "slower than every bound".
    let mut buckets: Vec<serde_json::Value> = Vec::new();
    let mut below = 0u64;
    for (bound, c) in bounds.iter().zip(&cumulative) {
        buckets.push(serde_json::json!({ "le_ms": bound * 1000.0, "count": c - below }));
        below = *c;
    }
    buckets.push(serde_json::json!({ "le_ms": null, "count": observed.saturating_sub(below) }));
    let faults: u64 = replay.metrics().fault_counts().values().sum();
    let s = &replay.stats;
    let totals = Totals {
        requests: s.requests.load(Ordering::Relaxed),
        errors,
        faults,
    };
    let settings = replay.planner().settings();
    let body = serde_json::json!({
        "requests": totals.requests,
        "matched": s.matched.load(Ordering::Relaxed),
        "unmatched": s.unmatched.load(Ordering::Relaxed),
        "errors": totals.errors,
        "faults": totals.faults,
        "ws_active": replay.metrics().ws_active.get(),
        "mean_ms": if observed > 0 { seconds * 1000.0 / observed as f64 } else { 0.0 },
        "latency_buckets": buckets,
        "mode": settings.scenario.mode,
        "error_rate": settings.scenario.error_rate,
    });
    (totals, body)
}

/// The rates between two snapshots `dt` apart, per second.
fn rates(before: Totals, now: Totals, dt: Duration) -> serde_json::Value {
    let secs = dt.as_secs_f64().max(1e-3);
    let per = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs;
    serde_json::json!({
        "request_rate": per(before.requests, now.requests),
        "error_rate_per_s": per(before.errors, now.errors),
        "fault_rate": per(before.faults, now.faults),
    })
}

/// One `data:` event of the stream.
fn event(replay: &Replay, last: &mut (Totals, Instant)) -> Bytes {
    let (totals, mut body) = snapshot(replay);
    let now = Instant::now();
    if let (serde_json::Value::Object(m), serde_json::Value::Object(r)) =
        (&mut body, rates(last.0, totals, now.duration_since(last.1)))
    {
        m.extend(r);
    }
    *last = (totals, now);
    Bytes::from(format!("data: {body}\n\n"))
}

/// The body of `GET /api/live`: an event now, then one every second, until the client goes
/// away or the replay shuts down (so a graceful shutdown never waits on an open page).
pub(crate) fn stream(
    replay: Arc<Replay>,
    shutdown: Shutdown,
) -> impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>> + Send + 'static {
    let start = (snapshot(&replay).0, Instant::now());
    let mut ticker = tokio::time::interval(EVERY);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    futures_util::stream::unfold(
        (replay, shutdown, ticker, start),
        |(replay, mut shutdown, mut ticker, mut last)| async move {
            let stop = tokio::select! {
                _ = shutdown.wait() => true,
                _ = ticker.tick() => false,
            };
            if stop {
                return None;
            }
            let data = event(&replay, &mut last);
            Some((Ok(Frame::data(data)), (replay, shutdown, ticker, last)))
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_are_per_second_over_the_interval() {
        let a = Totals {
            requests: 10,
            errors: 1,
            faults: 0,
        };
        let b = Totals {
            requests: 30,
            errors: 5,
            faults: 2,
        };
        let r = rates(a, b, Duration::from_secs(2));
        assert_eq!(r["request_rate"], 10.0);
        assert_eq!(r["error_rate_per_s"], 2.0);
        assert_eq!(r["fault_rate"], 1.0);
        // Counters reset (the page's reset button) give 0, not a huge number.
        assert_eq!(rates(b, a, Duration::from_secs(1))["request_rate"], 0.0);
    }
}
