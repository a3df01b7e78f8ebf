//! One pass over the recording: exchanges arrive in recorded order and are handed to one
//! task per recorded connection, each started at its connection's scaled recorded offset and
//! holding one of `--concurrency` slots while it runs.
//!
//! Memory stays bounded by how far the reading may run ahead of the sending: at most
//! [`AHEAD`] exchanges wait in the connections' queues — unless every running connection is
//! waiting for an exchange that comes later in the recording (its queue empty), when reading
//! on is the only way forward (a connection capped out by `--concurrency` cannot be allowed
//! to hold up the ones running).

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use tokio::sync::{mpsc, Notify, Semaphore};

use super::{run_connection, ConnectionCounts, DriveSummary, Observer, TargetConfig};
use crate::model::Exchange;

/// Exchanges read ahead of the sending, across all connections, before the reading waits
/// (a handful in unit tests, so that they go through the waiting).
const AHEAD: usize = if cfg!(test) { 8 } else { 4096 };

/// A recorded connection's task as the dispatcher sees it.
struct Lane {
    tx: Option<mpsc::UnboundedSender<Exchange>>,
    /// Exchanges handed over and not yet sent.
    queued: Arc<AtomicUsize>,
    /// The task holds a `--concurrency` slot.
    running: Arc<AtomicBool>,
    /// Exchanges of this connection still to come in the pass (`None`: unknown).
    left: Option<u64>,
}

/// Shared progress: the queued total, and a wake-up each time an exchange was sent.
struct Progress {
    queued: AtomicUsize,
    sent: Notify,
}

/// Reads `feed` to its end, handing every exchange to its connection's task; returns once
/// every task is done.
pub(super) async fn one_pass(
    mut feed: mpsc::Receiver<Vec<Exchange>>,
    counts: &ConnectionCounts,
    cfg: &Arc<TargetConfig>,
    observer: &Arc<dyn Observer>,
) -> DriveSummary {
    let mut pass = Pass {
        slots: Arc::new(Semaphore::new(cfg.concurrency)),
        progress: Arc::new(Progress {
            queued: AtomicUsize::new(0),
            sent: Notify::new(),
        }),
        lanes: HashMap::new(),
        draining: Vec::new(),
        tasks: tokio::task::JoinSet::new(),
        summary: DriveSummary::default(),
        start: tokio::time::Instant::now(),
        first_at: None,
        counts,
        cfg,
        observer,
    };
    while let Some(batch) = feed.recv().await {
        for exchange in batch {
            pass.dispatch(exchange).await;
        }
    }
    let Pass {
        lanes,
        draining,
        mut tasks,
        mut summary,
        ..
    } = pass;
    // Closing the last queues lets every task end.
    drop((lanes, draining));
    while let Some(done) = tasks.join_next().await {
        add(&mut summary, done);
    }
    summary
}

/// The state of one pass.
struct Pass<'a> {
    slots: Arc<Semaphore>,
    progress: Arc<Progress>,
    lanes: HashMap<u64, Lane>,
    /// Lanes handed their last exchange, while they still have some to send.
    draining: Vec<Lane>,
    tasks: tokio::task::JoinSet<(u64, u64)>,
    summary: DriveSummary,
    start: tokio::time::Instant,
    first_at: Option<i64>,
    counts: &'a ConnectionCounts,
    cfg: &'a Arc<TargetConfig>,
    observer: &'a Arc<dyn Observer>,
}

impl Pass<'_> {
    /// Hands one exchange to its connection's task, starting the task (at the connection's
    /// scaled recorded offset from the pass's first) when it is the connection's first.
    async fn dispatch(&mut self, exchange: Exchange) {
        self.draining
            .retain(|l| l.queued.load(Ordering::SeqCst) > 0);
        wait_for_room(self.lanes.values().chain(&self.draining), &self.progress).await;
        let id = exchange.connection_id;
        let lane = match self.lanes.entry(id) {
            Entry::Occupied(lane) => lane.into_mut(),
            Entry::Vacant(slot) => {
                let first = *self.first_at.get_or_insert(exchange.started_at_ns);
                let offset = self.cfg.speed.scale(exchange.started_at_ns - first);
                tokio::time::sleep_until(self.start + offset).await;
                let lane = spawn_lane(
                    &mut self.tasks,
                    &self.slots,
                    &self.progress,
                    self.cfg,
                    self.observer,
                );
                slot.insert(Lane {
                    left: self.counts.get(&id).copied(),
                    ..lane
                })
            }
        };
        lane.queued.fetch_add(1, Ordering::SeqCst);
        self.progress.queued.fetch_add(1, Ordering::SeqCst);
        if let Some(tx) = &lane.tx {
            if tx.send(exchange).is_err() {
                // The task is gone (it panicked); its exchange is not sent.
                lane.queued.fetch_sub(1, Ordering::SeqCst);
                self.progress.queued.fetch_sub(1, Ordering::SeqCst);
            }
        }
        if let Some(left) = lane.left.as_mut() {
            *left = left.saturating_sub(1);
            if *left == 0 {
                // Its last exchange: the task ends after it, freeing its slot. The same
                // connection id seen again (a later pass) is a new connection.
                lane.tx = None;
                if let Some(lane) = self.lanes.remove(&id) {
                    self.draining.push(lane);
                }
            }
        }
        while let Some(done) = self.tasks.try_join_next() {
            add(&mut self.summary, done);
        }
    }
}

fn add(summary: &mut DriveSummary, done: Result<(u64, u64), tokio::task::JoinError>) {
    // A panicking connection task loses only its own counts; the pass goes on.
    if let Ok((sent, failed)) = done {
        summary.sent += sent;
        summary.failed += failed;
        summary.connections += 1;
    }
}

/// Once [`AHEAD`] exchanges are queued, waits until half of them are sent while some running
/// connection has one to send (so that waiting cannot hold up a connection that needs a
/// later exchange).
async fn wait_for_room<'a>(lanes: impl Iterator<Item = &'a Lane> + Clone, progress: &Progress) {
    if progress.queued.load(Ordering::SeqCst) < AHEAD {
        return;
    }
    loop {
        if progress.queued.load(Ordering::SeqCst) <= AHEAD / 2 {
            return;
        }
        let busy = lanes
            .clone()
            .any(|l| l.running.load(Ordering::SeqCst) && l.queued.load(Ordering::SeqCst) > 0);
        if !busy {
            return;
        }
        progress.sent.notified().await;
    }
}

/// Starts a connection's task: it waits for a slot, then sends what it is handed.
fn spawn_lane(
    tasks: &mut tokio::task::JoinSet<(u64, u64)>,
    slots: &Arc<Semaphore>,
    progress: &Arc<Progress>,
    cfg: &Arc<TargetConfig>,
    observer: &Arc<dyn Observer>,
) -> Lane {
    let (tx, rx) = mpsc::unbounded_channel();
    let queued = Arc::new(AtomicUsize::new(0));
    let running = Arc::new(AtomicBool::new(false));
    let (slots, progress, cfg, observer) = (
        slots.clone(),
        progress.clone(),
        cfg.clone(),
        observer.clone(),
    );
    let (q, r) = (queued.clone(), running.clone());
    tasks.spawn(async move {
        let Ok(_slot) = slots.acquire_owned().await else {
            return (0, 0);
        };
        r.store(true, Ordering::SeqCst);
        let done = || {
            let left_here = q.fetch_sub(1, Ordering::SeqCst) - 1;
            let left_all = progress.queued.fetch_sub(1, Ordering::SeqCst) - 1;
            // The reading waits for room (half the read-ahead sent) or for this connection to
            // run dry; waking it for every exchange would cost a thread wake-up each.
            if left_here == 0 || left_all == AHEAD / 2 {
                progress.sent.notify_one();
            }
        };
        let counts = run_connection(rx, &cfg, &observer, done).await;
        r.store(false, Ordering::SeqCst);
        // A finished connection may be what the reading waits on.
        progress.sent.notify_one();
        counts
    });
    Lane {
        tx: Some(tx),
        queued,
        running,
        left: None,
    }
}
