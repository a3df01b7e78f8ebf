//! The clock the capture drivers read and hand to the recorder as `at`.
//!
//! Wall-clock nanoseconds, so that `started_at_ns` means a date, but advanced by a monotonic
//! clock from one reading taken at first use, so that the durations derived from two readings
//! never go negative when the system clock is stepped.

use std::sync::OnceLock;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

static ANCHOR: OnceLock<(Instant, i64)> = OnceLock::new();

/// Now, in nanoseconds since the Unix epoch.
pub(crate) fn now_ns() -> i64 {
    let (instant, wall) = ANCHOR.get_or_init(|| {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        (Instant::now(), wall)
    });
    let since = i64::try_from(instant.elapsed().as_nanos()).unwrap_or(i64::MAX);
    wall.saturating_add(since)
}
