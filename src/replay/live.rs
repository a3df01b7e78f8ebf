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

/// What the live panels need of the metrics, read back from their text exposition (the one
/// view of them every metrics layout keeps: names and labels are the documented ones).
#[derive(Clone, Debug, Default, PartialEq)]
struct Scraped {
    /// Answers with a 5xx or no status at all.
    errors: u64,
    /// `(upper bound in seconds, cumulative count)`, by bound; `+Inf` last.
    buckets: Vec<(f64, u64)>,
    observed: u64,
    seconds: f64,
    ws_active: i64,
}

/// The value of label `key` in a series' `{…}` part.
fn label<'a>(labels: &'a str, key: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{key}=\""))? + key.len() + 2;
    let rest = &labels[start..];
    rest.find('"').map(|end| &rest[..end])
}

/// Reads the series the live panels use out of the Prometheus text `text`.
fn scrape(text: &str) -> Scraped {
    let mut s = Scraped::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let (name, labels) = series.split_once('{').unwrap_or((series, ""));
        match name {
            "mf_requests_total" => {
                let status = label(labels, "status").unwrap_or("");
                if status == "none" || status.parse::<u16>().is_ok_and(|c| c >= 500) {
                    s.errors += value as u64;
                }
            }
            "mf_request_duration_seconds_bucket" => {
                let le = match label(labels, "le") {
                    Some("+Inf") => f64::INFINITY,
                    Some(b) => b.parse().unwrap_or(f64::INFINITY),
                    None => continue,
                };
                match s.buckets.iter_mut().find(|(b, _)| *b == le) {
                    Some((_, c)) => *c += value as u64,
                    None => s.buckets.push((le, value as u64)),
                }
            }
            "mf_request_duration_seconds_count" => s.observed += value as u64,
            "mf_request_duration_seconds_sum" => s.seconds += value,
            "mf_websocket_connections_active" => s.ws_active = value as i64,
            _ => {}
        }
    }
    s.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    s
}

/// One snapshot of the replay: totals and the latency histogram.
fn snapshot(replay: &Replay) -> (Totals, serde_json::Value) {
    let m = scrape(&replay.metrics().render());
    // Per-bucket counts (the page draws bars), the last one for "slower than every bound".
    let mut buckets: Vec<serde_json::Value> = Vec::new();
    let mut below = 0u64;
    for (bound, c) in &m.buckets {
        let le_ms = bound.is_finite().then(|| bound * 1000.0);
        buckets.push(serde_json::json!({ "le_ms": le_ms, "count": c.saturating_sub(below) }));
        below = *c;
    }
    let faults: u64 = replay.metrics().fault_counts().values().sum();
    let s = &replay.stats;
    let totals = Totals {
        requests: s.requests.load(Ordering::Relaxed),
        errors: m.errors,
        faults,
    };
    let settings = replay.planner().settings();
    let mean_ms = if m.observed > 0 {
        m.seconds * 1000.0 / m.observed as f64
    } else {
        0.0
    };
    let body = serde_json::json!({
        "requests": totals.requests,
        "matched": s.matched.load(Ordering::Relaxed),
        "unmatched": s.unmatched.load(Ordering::Relaxed),
        "errors": totals.errors,
        "faults": totals.faults,
        "ws_active": m.ws_active,
        "mean_ms": mean_ms,
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
    fn the_panels_read_the_exposition() {
        let text = r#"# HELP mf_requests_total Requests served.
# TYPE mf_requests_total counter
mf_requests_total{match="matched",protocol="http/1.1",route="/a",status="200"} 7
mf_requests_total{match="matched",protocol="http/1.1",route="/a",status="503"} 2
mf_requests_total{match="unmatched",protocol="h2",route="unmatched",status="none"} 1
mf_request_duration_seconds_bucket{protocol="http/1.1",route="/a",le="0.001"} 4
mf_request_duration_seconds_bucket{protocol="http/1.1",route="/a",le="+Inf"} 9
mf_request_duration_seconds_bucket{protocol="h2",route="unmatched",le="0.001"} 1
mf_request_duration_seconds_bucket{protocol="h2",route="unmatched",le="+Inf"} 1
mf_request_duration_seconds_sum{protocol="http/1.1",route="/a"} 0.5
mf_request_duration_seconds_count{protocol="http/1.1",route="/a"} 9
mf_request_duration_seconds_count{protocol="h2",route="unmatched"} 1
mf_websocket_connections_active 3
"#;
        let s = scrape(text);
        assert_eq!(s.errors, 3);
        assert_eq!(s.buckets, vec![(0.001, 5), (f64::INFINITY, 10)]);
        assert_eq!((s.observed, s.seconds, s.ws_active), (10, 0.5, 3));
    }

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
