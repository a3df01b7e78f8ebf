//! The writer's queue bound, both producer behaviours, and recovery from failed writes, over
//! a backend whose speed and failures the test controls.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::*;
use crate::model::{Body, Exchange, ExchangeSink, Request};
use crate::store::{PatternRow, StoreError};

/// What the fake backend was asked to do, and how it behaves.
#[derive(Default)]
struct Control {
    appended: AtomicU64,
    /// Each batch takes this long.
    delay_ms: AtomicU64,
    /// While set, every batch fails as a full disk does.
    full: AtomicBool,
}

struct Fake(Arc<Control>);

impl RecordingWrite for Fake {
    fn connection_id_base(&self) -> Result<u64, StoreError> {
        Ok(1)
    }

    fn append(
        &mut self,
        batch: &[Exchange],
        _rejected: &mut dyn FnMut(&Exchange, StoreError),
    ) -> Result<(), StoreError> {
        std::thread::sleep(Duration::from_millis(
            self.0.delay_ms.load(Ordering::SeqCst),
        ));
        if self.0.full.load(Ordering::SeqCst) {
            return Err(StoreError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
                None,
            )));
        }
        self.0
            .appended
            .fetch_add(batch.len() as u64, Ordering::SeqCst);
        Ok(())
    }

    fn replace_patterns(&mut self, _: &[PatternRow]) -> Result<(), StoreError> {
        Ok(())
    }

    fn close(&mut self) {}
}

fn exchange(body: usize) -> Exchange {
    Exchange {
        request: Request {
            method: "POST".into(),
            target: "/".into(),
            body: Body::full(vec![b'x'; body]),
            ..Request::default()
        },
        ..Exchange::default()
    }
}

fn start(config: WriterConfig) -> (Writer, WriterHandle, Arc<Control>) {
    let control = Arc::new(Control::default());
    let (writer, handle) = Writer::start(
        Box::new(Fake(control.clone())),
        Path::new("fake.db"),
        config,
    )
    .unwrap();
    (writer, handle, control)
}

fn small_queue(when_full: WhenFull) -> WriterConfig {
    WriterConfig {
        max_batch: 4,
        max_delay: Duration::from_millis(1),
        queue_exchanges: 8,
        queue_bytes: 10_000,
        when_full,
        retry_every: Duration::from_millis(50),
        bulk_load: false,
    }
}

#[test]
fn a_blocking_producer_waits_and_never_holds_more_than_the_bound() {
    let (writer, handle, control) = start(small_queue(WhenFull::Block));
    control.delay_ms.store(2, Ordering::SeqCst);
    for sent in 1..=200u64 {
        // 3 KB each: the byte bound (10 KB) binds before the count bound.
        handle.record(Box::new(exchange(3000)));
        let in_flight = sent - control.appended.load(Ordering::SeqCst);
        assert!(in_flight <= 5, "{in_flight} exchanges held in memory");
    }
    drop(handle);
    let summary = writer.finish().unwrap();
    assert_eq!(summary.exchanges, 200);
    assert_eq!(summary.not_stored(), 0);
}

#[test]
fn a_live_producer_never_waits_and_counts_what_it_dropped() {
    let (writer, handle, control) = start(small_queue(WhenFull::Drop));
    control.delay_ms.store(50, Ordering::SeqCst);
    let started = std::time::Instant::now();
    for _ in 0..500 {
        handle.record(Box::new(exchange(10)));
    }
    // 500 sends against a writer taking 50 ms a batch: waiting would take seconds.
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(handle);
    let summary = writer.finish().unwrap();
    assert!(summary.dropped > 0, "{summary:?}");
    assert_eq!(summary.exchanges + summary.dropped, 500, "{summary:?}");
    assert_eq!(control.appended.load(Ordering::SeqCst), summary.exchanges);
    assert!(summary
        .not_stored_line()
        .unwrap()
        .contains("could not keep up"));
}

#[test]
fn a_failing_disk_loses_what_arrives_meanwhile_and_storing_resumes() {
    let (writer, handle, control) = start(small_queue(WhenFull::Drop));
    control.full.store(true, Ordering::SeqCst);
    for _ in 0..6 {
        handle.record(Box::new(exchange(10)));
        std::thread::sleep(Duration::from_millis(5));
    }
    // Every one of them is counted as lost, none is stored.
    wait_until(|| control.appended.load(Ordering::SeqCst) == 0);
    control.full.store(false, Ordering::SeqCst);
    // After the next retry, exchanges are stored again.
    let mut later = 0;
    while control.appended.load(Ordering::SeqCst) == 0 {
        handle.record(Box::new(exchange(10)));
        later += 1;
        std::thread::sleep(Duration::from_millis(10));
        assert!(later < 500, "storing never resumed");
    }
    handle.record(Box::new(exchange(10)));
    drop(handle);
    let summary = writer.finish().unwrap();
    assert!(summary.lost >= 6, "{summary:?}");
    assert_eq!(
        summary.exchanges + summary.lost,
        6 + later + 1,
        "{summary:?}"
    );
    assert!(summary.exchanges >= 2);
    assert_eq!(summary.dropped, 0);
}

fn wait_until(cond: impl Fn() -> bool) {
    for _ in 0..200 {
        if cond() {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    panic!("condition not reached");
}

#[test]
fn drops_are_warned_about_at_most_once_a_second() {
    assert!(warning_due(u64::MAX, 0), "the first drop is said at once");
    assert!(!warning_due(5_000, 5_999));
    assert!(warning_due(5_000, 6_000));
}
