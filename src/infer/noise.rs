//! Noise: request parts (query parameters, JSON fields, headers) whose values differ on every
//! request by construction — cache busters, timestamps, request ids — and so must not take
//! part in matching a replayed request.

use std::collections::HashSet;

use super::sequence::hash_str;
use crate::vocab::volatile::is_volatile;

/// Memory bound on distinct values remembered per request part.
const DISTINCT_CAP: usize = 4096;

/// Conventional names of per-request values; they need less evidence than a shape alone.
const NOISY_NAMES: &[&str] = &[
    "_",
    "t",
    "ts",
    "time",
    "timestamp",
    "now",
    "nonce",
    "cb",
    "cachebuster",
    "cache_buster",
    "request_id",
    "requestid",
    "req_id",
    "rid",
    "correlation_id",
    "x-request-id",
    "x-correlation-id",
    "traceparent",
    "x-nonce",
    "x-timestamp",
    "idempotency-key",
];

/// How one request part varies across the requests of an endpoint.
#[derive(Debug)]
pub(super) struct Variation {
    occurrences: u64,
    distinct: HashSet<u64>,
    all_noisy: bool,
}

impl Default for Variation {
    fn default() -> Self {
        Variation {
            occurrences: 0,
            distinct: HashSet::new(),
            all_noisy: true,
        }
    }
}

impl Variation {
    /// Records one value of the part.
    pub(super) fn add(&mut self, v: &str) {
        self.occurrences += 1;
        if self.distinct.len() < DISTINCT_CAP {
            self.distinct.insert(hash_str(v));
        }
        self.all_noisy &= is_volatile(v);
    }

    /// True when the part named `name` (a dotted JSON path's last key counts) is noise.
    pub(super) fn is_noise(&self, name: &str) -> bool {
        let seen = self.occurrences.min(DISTINCT_CAP as u64);
        let distinct = self.distinct.len() as u64;
        let leaf = name.rsplit('.').next().unwrap_or(name).to_ascii_lowercase();
        // A conventional name (`_`, `nonce`, `ts`) needs less evidence than a shape alone:
        // concurrent clients can send the same millisecond cache buster.
        let named = NOISY_NAMES.contains(&leaf.as_str()) && distinct * 2 >= seen;
        let shaped = self.all_noisy && distinct * 10 >= seen * 9;
        self.occurrences >= 3 && distinct >= 2 && (named || shaped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variation(values: &[&str]) -> Variation {
        let mut v = Variation::default();
        for value in values {
            v.add(value);
        }
        v
    }

    #[test]
    fn names_and_shapes_make_noise() {
        assert!(variation(&["1", "2", "3"]).is_noise("body._"));
        assert!(!variation(&["1", "2", "3"]).is_noise("body.count"));
        let epochs = ["1700000000001", "1700000000002", "1700000000003"];
        assert!(variation(&epochs).is_noise("anything"));
        assert!(!variation(&["a", "a", "a"]).is_noise("nonce"));
        assert!(
            !variation(&epochs[..2]).is_noise("ts"),
            "two samples are no evidence"
        );
    }
}
