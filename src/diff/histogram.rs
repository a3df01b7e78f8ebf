//! A latency histogram with bounded memory: logarithmic buckets 2% wide, kept sparse, so a
//! million samples cost a few hundred counters. Written here rather than taken from a crate
//! because the report needs only `add` and `percentile` at this precision.

use std::collections::BTreeMap;

/// Bucket width: each bucket spans a factor of this.
const GROWTH: f64 = 1.02;

/// Counts of latencies (ns) in logarithmic buckets.
#[derive(Clone, Debug, Default)]
pub(super) struct Histogram {
    buckets: BTreeMap<u32, u64>,
    count: u64,
    max: u64,
}

fn bucket(ns: u64) -> u32 {
    if ns <= 1 {
        return 0;
    }
    ((ns as f64).ln() / GROWTH.ln()) as u32 + 1
}

/// The middle of a bucket, in ns.
fn value(b: u32) -> u64 {
    if b == 0 {
        return 1;
    }
    GROWTH.powf(f64::from(b) - 0.5) as u64
}

impl Histogram {
    pub(super) fn add(&mut self, ns: u64) {
        *self.buckets.entry(bucket(ns)).or_default() += 1;
        self.count += 1;
        self.max = self.max.max(ns);
    }

    pub(super) fn count(&self) -> u64 {
        self.count
    }

    /// The latency at percentile `p` (0–100), within 2%; the exact maximum at 100.
    pub(super) fn percentile(&self, p: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        if p >= 100.0 {
            return Some(self.max);
        }
        let rank = ((p / 100.0) * self.count as f64).ceil().max(1.0) as u64;
        let mut seen = 0;
        for (b, n) in &self.buckets {
            seen += n;
            if seen >= rank {
                return Some(value(*b).min(self.max));
            }
        }
        Some(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_within_two_percent() {
        let mut h = Histogram::default();
        for ms in 1..=1000u64 {
            h.add(ms * 1_000_000);
        }
        let near = |p: f64, want: f64| {
            let got = h.percentile(p).unwrap() as f64 / 1e6;
            assert!((got - want).abs() / want < 0.02, "p{p}: {got} vs {want}");
        };
        near(50.0, 500.0);
        near(99.0, 990.0);
        assert_eq!(h.percentile(100.0), Some(1_000_000_000));
        assert_eq!(Histogram::default().percentile(50.0), None);
    }
}
