//! Replay to a live target (`mf replay FILE|DIR --to URL`): the driver. It sends every
//! recorded client request to the target — HTTP/1.1 with keep-alive per recorded connection,
//! one HTTP/2 connection per recorded one, each message of a gRPC stream, WebSocket sessions
//! frame by frame — and hands what the target answered to an [`Observer`].
//!
//! The driver knows nothing about comparing: the CLI's observer does that (and rewrites ids
//! before each send). Each recorded connection keeps its order; connections run concurrently
//! as recorded, at most [`TargetConfig::concurrency`] at once, their starts and the gaps
//! between their requests scaled by [`Speed`].
//!
//! - `wire`: the outgoing request's head (target URL, Host, `--set-header`), the answer as an
//!   [`Exchange`], and why a send failed as an [`ErrorKind`].
//! - `lean_h1`: HTTP/1.1, written and read by the connection's own task.
//! - `http`: HTTP/2 and gRPC over hyper's client connections.
//! - `ws`: WebSocket sessions (handshake, recorded client frames, the server's frames).
//! - `examples`: a fixtures folder's examples as exchanges to send.

mod dispatch;
mod examples;
mod http;
mod lean_h1;
mod wire;
mod ws;

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::model::{Exchange, ExchangeError, Protocol};
use crate::net::dial::Upstream;

pub(crate) use examples::exchanges_from_fixtures;

/// How fast recorded timing is replayed: a factor (`2x` halves every gap), or `max`: no
/// waiting at all.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) enum Speed {
    Factor(f64),
    Max,
}

impl Speed {
    /// The wait before something recorded `gap_ns` after its reference point.
    fn scale(self, gap_ns: i64) -> Duration {
        match self {
            Speed::Max => Duration::ZERO,
            Speed::Factor(f) => Duration::from_secs_f64(gap_ns.max(0) as f64 / 1e9 / f),
        }
    }
}

impl FromStr for Speed {
    type Err = String;
    /// `max`, `2x`, `0.5x` or a bare factor (`2`).
    fn from_str(s: &str) -> Result<Speed, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("max") {
            return Ok(Speed::Max);
        }
        let n = s.strip_suffix(['x', 'X']).unwrap_or(s);
        match n.parse::<f64>() {
            Ok(f) if f.is_finite() && f > 0.0 => Ok(Speed::Factor(f)),
            _ => Err(format!(
                "{s:?} is not a speed: use a positive factor such as 2x or 0.5x, or max"
            )),
        }
    }
}

/// TLS to the target: whether to speak it, and client configs offering HTTP/1.1 only
/// (HTTP/1 and WebSocket connections) and h2 (HTTP/2 and gRPC ones).
#[derive(Clone, Debug)]
pub(crate) struct TlsMode {
    pub enabled: bool,
    pub h1: Arc<rustls::ClientConfig>,
    pub h2: Arc<rustls::ClientConfig>,
}

/// Where and how to send, validated by the CLI.
#[derive(Clone, Debug)]
pub(crate) struct TargetConfig {
    /// The target; its path prefix is put before every recorded path.
    pub url: Upstream,
    /// The Host (`:authority`) to send instead of the target's authority.
    pub host_override: Option<String>,
    /// Headers set on every request, replacing recorded ones of the same name.
    pub set_headers: Vec<(String, String)>,
    pub tls: TlsMode,
    pub speed: Speed,
    /// Send the whole recording this many times (default once).
    pub times: Option<u32>,
    /// Keep sending the recording over again until this long has passed.
    pub for_duration: Option<Duration>,
    /// At most this many connections at once.
    pub concurrency: usize,
    /// How long the target may keep us waiting: to connect, for an answer's head, between
    /// pieces of an answer.
    pub timeout: Duration,
}

/// What the driver tells about each exchange it sent.
pub(crate) trait Observer: Send + Sync {
    /// May rewrite the request about to be sent (the cli calls diff::Rebinder here).
    fn before_send(&self, recorded: &Exchange, outgoing: &mut Exchange);
    /// What the target answered (response/messages filled in an Exchange), or why it failed.
    fn answered(
        &self,
        recorded: &Exchange,
        observed: Result<Exchange, ExchangeError>,
        latency_ns: u64,
    );
}

/// Counts of a finished drive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct DriveSummary {
    /// Exchanges sent (each loop counted).
    pub sent: u64,
    /// Of those, how many got no usable answer.
    pub failed: u64,
    /// Connections opened as recorded (each loop counted).
    pub connections: u64,
    /// Passes over the recording.
    pub passes: u32,
}

/// Why the drive could not run at all (a failing exchange is not one of these: it is told to
/// the observer and the run continues).
#[derive(Debug, thiserror::Error)]
pub(crate) enum DriveError {
    #[error("nothing to send: the selection holds no client request")]
    Nothing,
    #[error("--concurrency must be at least 1")]
    NoConcurrency,
}

/// Where the exchanges to send come from: each call starts one pass over them, in recorded
/// order, through a channel the caller fills as the driver takes them (so that a large
/// recording is never all in memory), in batches (one wake-up per batch, not per exchange).
pub(crate) trait Feed: Send {
    fn pass(&mut self) -> tokio::sync::mpsc::Receiver<Vec<Exchange>>;
}

/// How many exchanges each recorded connection holds in one pass: a connection is closed
/// (and its slot under `--concurrency` freed) once its last one is sent.
pub(crate) type ConnectionCounts = HashMap<u64, u64>;

/// Sends every pass of `feed` to the target, as often as `cfg.times`/`cfg.for_duration`
/// say, telling `observer` about every exchange.
///
/// # Errors
/// Nothing to send, or a zero concurrency.
pub(crate) async fn drive(
    feed: &mut dyn Feed,
    counts: &ConnectionCounts,
    cfg: TargetConfig,
    observer: Arc<dyn Observer>,
) -> Result<DriveSummary, DriveError> {
    if counts.values().all(|n| *n == 0) {
        return Err(DriveError::Nothing);
    }
    if cfg.concurrency == 0 {
        return Err(DriveError::NoConcurrency);
    }
    let cfg = Arc::new(cfg);
    let began = Instant::now();
    let mut summary = DriveSummary::default();
    loop {
        let pass = dispatch::one_pass(feed.pass(), counts, &cfg, &observer).await;
        summary.sent += pass.sent;
        summary.failed += pass.failed;
        summary.connections += pass.connections;
        summary.passes += 1;
        let more_times = cfg.times.is_some_and(|n| summary.passes < n);
        let more_time = cfg.for_duration.is_some_and(|d| began.elapsed() < d);
        if !more_times && !more_time {
            return Ok(summary);
        }
    }
}

/// One recorded connection, replayed in order on as few target connections as its
/// protocols allow: HTTP/1 requests share a keep-alive connection (a new one when the target
/// closed it), HTTP/2 and gRPC streams share one HTTP/2 connection, and each WebSocket
/// session takes a connection of its own. `next` yields its exchanges; `done` is called after
/// each. Returns (sent, failed).
async fn run_connection(
    mut next: tokio::sync::mpsc::UnboundedReceiver<Exchange>,
    cfg: &TargetConfig,
    observer: &Arc<dyn Observer>,
    done: impl Fn(),
) -> (u64, u64) {
    let start = tokio::time::Instant::now();
    let mut first_at: Option<i64> = None;
    let mut h1: Option<lean_h1::Conn> = None;
    let mut h2: Option<http::H2> = None;
    let (mut sent, mut failed) = (0, 0);
    while let Some(recorded) = next.recv().await {
        let first = *first_at.get_or_insert(recorded.started_at_ns);
        let due = start + cfg.speed.scale(recorded.started_at_ns - first);
        // At `--speed max` nothing is ever due later: no timer for every exchange.
        if due > start {
            tokio::time::sleep_until(due).await;
        }
        let recorded = &recorded;
        let mut outgoing = wire::outgoing_of(recorded);
        observer.before_send(recorded, &mut outgoing);
        let began = Instant::now();
        let result = match recorded.protocol() {
            Protocol::WebSocket => ws::session(&outgoing, cfg).await,
            Protocol::H2 | Protocol::Grpc => http::send_h2(&mut h2, &outgoing, cfg).await,
            Protocol::Http10 | Protocol::Http11 => lean_h1::send(&mut h1, outgoing, cfg).await,
        };
        let latency = u64::try_from(began.elapsed().as_nanos()).unwrap_or(u64::MAX);
        sent += 1;
        // Method and path only: a recorded request's headers may carry credentials.
        match &result {
            Ok(o) => tracing::debug!(
                method = %recorded.request.method,
                path = recorded.request.path(),
                status = o.response.as_ref().map_or(0, |r| r.status),
                messages = o.messages.len(),
                "answered"
            ),
            Err(e) => {
                failed += 1;
                tracing::debug!(
                    method = %recorded.request.method,
                    path = recorded.request.path(),
                    kind = %e.kind,
                    "failed: {}", e.message
                );
            }
        }
        observer.answered(recorded, result, latency);
        done();
    }
    (sent, failed)
}

#[cfg(test)]
mod tests;

#[cfg(test)]
mod speed_tests {
    use super::*;

    #[test]
    fn speeds_parse_and_scale() {
        assert_eq!("max".parse::<Speed>(), Ok(Speed::Max));
        assert_eq!("2x".parse::<Speed>(), Ok(Speed::Factor(2.0)));
        assert_eq!("0.5".parse::<Speed>(), Ok(Speed::Factor(0.5)));
        assert!("0x".parse::<Speed>().is_err());
        assert!("fast".parse::<Speed>().is_err());
        assert_eq!(
            Speed::Factor(2.0).scale(1_000_000_000),
            Duration::from_millis(500)
        );
        assert_eq!(Speed::Max.scale(1_000_000_000), Duration::ZERO);
        assert_eq!(Speed::Factor(1.0).scale(-5), Duration::ZERO);
    }
}
