//! The listening side of every mf server: an accept loop with graceful shutdown, the
//! shutdown signal, the termination signal and the HTTP/2 preface sniff.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::threads::ConnThreads;

/// A cloneable "stop now" flag that connection tasks can await.
#[derive(Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

/// The sending side of [`Shutdown`].
pub struct ShutdownTrigger {
    tx: watch::Sender<bool>,
}

/// A new trigger and the signal it controls.
pub fn shutdown_pair() -> (ShutdownTrigger, Shutdown) {
    let (tx, rx) = watch::channel(false);
    (ShutdownTrigger { tx }, Shutdown { rx })
}

impl ShutdownTrigger {
    /// Asks every holder of the signal to stop.
    pub fn trigger(&self) {
        let _ = self.tx.send(true);
    }
}

impl Shutdown {
    /// True once shutdown was requested.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves when shutdown is requested (immediately if it already was).
    pub async fn wait(&mut self) {
        let _ = self.rx.wait_for(|stop| *stop).await;
    }
}

/// A [`Shutdown`] watched for a whole connection: one waiter registered with the signal for
/// the connection's life, polled again by each wait.
///
/// Why: a connection waits for shutdown beside every request head and every exchange, and a
/// fresh [`Shutdown::wait`] each time registered a waiter and removed it again, about 900
/// instructions of each proxied request (callgrind, small JSON answers).
pub(crate) struct StopSignal {
    signal: Shutdown,
    fired: bool,
    wait: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl StopSignal {
    /// Starts watching `signal`.
    pub(crate) fn new(signal: Shutdown) -> StopSignal {
        let mut watched = signal.clone();
        StopSignal {
            signal,
            fired: false,
            wait: Box::pin(async move { watched.wait().await }),
        }
    }

    /// True once shutdown was requested.
    pub(crate) fn is_triggered(&self) -> bool {
        self.fired || self.signal.is_triggered()
    }

    /// Resolves when shutdown is requested, and at once every time after that. Dropping the
    /// returned future leaves the registration in place for the next wait.
    pub(crate) async fn wait(&mut self) {
        if !self.fired {
            self.wait.as_mut().await;
            self.fired = true;
        }
    }
}

/// Accepts connections until `shutdown`, running `handle` for each one; then gives open
/// connections `grace` to finish what they are doing before dropping them.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    shutdown: Shutdown,
    grace: Duration,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, Shutdown) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    accept_loop_on(listener, shutdown, grace, None, handle).await;
}

/// [`accept_loop`], with each connection run on one of `threads` (round robin) instead of
/// the caller's runtime when they are given.
pub(crate) async fn accept_loop_on<F, Fut>(
    listener: TcpListener,
    mut shutdown: Shutdown,
    grace: Duration,
    threads: Option<&ConnThreads>,
    handle: F,
) where
    F: Fn(TcpStream, SocketAddr, Shutdown) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let handle = Arc::new(handle);
    let mut tasks = JoinSet::new();
    let mut failures = AcceptFailures::default();
    loop {
        tokio::select! {
            _ = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    failures.succeeded();
                    let _ = stream.set_nodelay(true);
                    let Some(threads) = threads else {
                        tasks.spawn(handle(stream, peer, shutdown.clone()));
                        continue;
                    };
                    // The socket leaves this runtime's reactor and joins the thread's, so
                    // that its readiness wakes that thread alone.
                    match stream.into_std() {
                        Ok(stream) => {
                            let handle = handle.clone();
                            let shutdown = shutdown.clone();
                            tasks.spawn_on(
                                async move {
                                    match TcpStream::from_std(stream) {
                                        Ok(stream) => handle(stream, peer, shutdown).await,
                                        Err(e) => tracing::warn!(peer = %peer, error = %e, "cannot take an accepted connection on"),
                                    }
                                },
                                threads.next(),
                            );
                        }
                        Err(e) => tracing::warn!(peer = %peer, error = %e, "cannot hand an accepted connection on"),
                    }
                }
                // Out of file descriptors and the like: back off instead of spinning, and
                // say so at most once a second (it was one line per 50 ms attempt).
                Err(e) => {
                    let (pause, report) = failures.failed(std::time::Instant::now());
                    if let Some(count) = report {
                        tracing::warn!(error = %e, failures = count, "accept failed; backing off");
                    }
                    tokio::time::sleep(pause).await;
                }
            },
            Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(grace, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
    // Wait for the aborted ones to be dropped, so that what they hold (a recording's sink,
    // say) is released when this returns.
    while tasks.join_next().await.is_some() {}
}

/// The accept loop's memory of consecutive failures: how long to pause, and when to log.
///
/// Sans-IO (time is an argument) so the policy is tested without exhausting descriptors.
#[derive(Debug, Default)]
struct AcceptFailures {
    /// Consecutive failures since the last success.
    streak: u32,
    /// Failures not yet reported.
    unreported: u64,
    /// When a failure was last reported.
    reported_at: Option<std::time::Instant>,
}

impl AcceptFailures {
    /// The longest pause between attempts: a freed descriptor is picked up within it.
    const MAX_PAUSE: Duration = Duration::from_millis(500);
    /// How often a run of failures is reported.
    const REPORT_EVERY: Duration = Duration::from_secs(1);

    /// A failure at `now`: the pause before the next attempt (doubling from 10 ms up to
    /// [`Self::MAX_PAUSE`]), and the count to report when a report is due.
    fn failed(&mut self, now: std::time::Instant) -> (Duration, Option<u64>) {
        self.streak = self.streak.saturating_add(1);
        self.unreported += 1;
        let due = self
            .reported_at
            .is_none_or(|at| now.duration_since(at) >= Self::REPORT_EVERY);
        let report = due.then(|| {
            self.reported_at = Some(now);
            std::mem::take(&mut self.unreported)
        });
        let pause = Duration::from_millis(10)
            .saturating_mul(1 << self.streak.min(6))
            .min(Self::MAX_PAUSE);
        (pause, report)
    }

    /// An accept succeeded: pauses start small again (the report clock keeps running, so a
    /// flapping limit still logs at most once a second).
    fn succeeded(&mut self) {
        self.streak = 0;
    }
}

/// Resolves on SIGINT or SIGTERM (Ctrl-C only, off Unix).
///
/// The handlers are installed when this is called, not when the future is first polled: a
/// server calls it before announcing that it listens, so that a signal sent right after the
/// announcement is a clean stop rather than the default action (being killed). Must be
/// called inside a Tokio runtime.
pub fn termination_signal() -> impl std::future::Future<Output = ()> + Send {
    #[cfg(unix)]
    let installed = {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) {
            (Ok(int), Ok(term)) => Some((int, term)),
            _ => None,
        }
    };
    async move {
        #[cfg(unix)]
        if let Some((mut int, mut term)) = installed {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
            return;
        }
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// The HTTP/2 client connection preface (RFC 9113 §3.4).
pub const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// True when the client starts with the HTTP/2 preface. Looks without consuming, so an
/// HTTP/1 connection is handed on untouched.
pub async fn starts_with_h2_preface(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 24];
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let n = match stream.peek(&mut buf).await {
            Ok(n) => n,
            Err(_) => return false,
        };
        if n == 0 || buf[..n] != H2_PREFACE[..n] {
            return false;
        }
        if n == H2_PREFACE.len() {
            return true;
        }
        // A preface split across segments: peek returns at once with the same bytes, so
        // wait a little for the rest rather than spin.
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
}

#[cfg(test)]
mod accept_tests {
    use super::*;
    use std::time::Instant;

    #[test]
    fn failures_are_reported_once_a_second_with_their_count() {
        let mut f = AcceptFailures::default();
        let t0 = Instant::now();
        assert_eq!(
            f.failed(t0).1,
            Some(1),
            "the first failure is reported at once"
        );
        let mut reports = Vec::new();
        // 100 failures 20 ms apart: two seconds.
        for i in 1..=100u64 {
            if let Some(n) = f.failed(t0 + Duration::from_millis(20 * i)).1 {
                reports.push(n);
            }
        }
        assert_eq!(
            reports,
            vec![50, 50],
            "one line a second, each with its count"
        );
    }

    #[test]
    fn pauses_grow_to_a_ceiling_and_reset_on_success() {
        let mut f = AcceptFailures::default();
        let now = Instant::now();
        let pauses: Vec<Duration> = (0..10).map(|_| f.failed(now).0).collect();
        assert!(pauses.windows(2).all(|w| w[0] <= w[1]));
        assert_eq!(pauses.last().copied(), Some(AcceptFailures::MAX_PAUSE));
        f.succeeded();
        assert_eq!(f.failed(now).0, Duration::from_millis(20));
    }

    #[tokio::test]
    async fn a_stop_signal_fires_once_triggered_however_often_it_is_awaited() {
        use futures_util::FutureExt;
        let (trigger, shutdown) = shutdown_pair();
        let mut stop = StopSignal::new(shutdown);
        // A wait abandoned before the trigger (a request arrived first) leaves it watching.
        assert!(stop.wait().now_or_never().is_none());
        assert!(stop.wait().now_or_never().is_none());
        assert!(!stop.is_triggered());
        trigger.trigger();
        stop.wait().await;
        assert!(stop.is_triggered());
        assert!(stop.wait().now_or_never().is_some(), "and again at once");
    }
}
