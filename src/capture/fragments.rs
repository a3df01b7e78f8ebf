//! IP fragment reassembly for passive capture, IPv4 (RFC 791) and IPv6 (RFC 8200 §4.5)
//! alike: one table, bounded in datagrams and in bytes, with a timeout (in capture time) on
//! datagrams whose fragments never all arrive.
//!
//! Written here rather than taken from a crate: etherparse parses fragment headers but does
//! not reassemble, and the crates that do are tied to a live socket stack.

use std::collections::HashMap;
use std::net::IpAddr;

/// Datagrams being reassembled at once; a new one beyond this evicts the oldest.
const MAX_SETS: usize = 1024;
/// Fragment bytes held at once, all datagrams together.
const MAX_BYTES: usize = 32 * 1024 * 1024;
/// The largest datagram payload fragments can describe (13-bit offset in 8-byte units plus
/// a 16-bit length; jumbograms are never fragmented).
const MAX_DATAGRAM: usize = 65_535;
/// Linux's default `ipfrag_time`: an incomplete datagram older than this is given up.
const TIMEOUT_NS: i64 = 30_000_000_000;
/// How often (in capture time) timed-out datagrams are looked for.
const SWEEP_NS: i64 = 1_000_000_000;

/// What identifies the fragments of one datagram: addresses, identification and, for IPv4,
/// the protocol (IPv6 keys on addresses and identification only; the protocol is the first
/// fragment's).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub(crate) struct Key {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    pub proto: u8,
}

/// One fragment as the IP layer found it.
pub(crate) struct Fragment<'a> {
    /// Offset of `data` in the datagram's payload, in bytes.
    pub offset: usize,
    /// More fragments follow (the MF flag / M bit).
    pub more: bool,
    /// The protocol of the payload, as this fragment's header says it.
    pub proto: u8,
    pub data: &'a [u8],
    /// The snaplen cut it: the datagram can never be whole.
    pub cut: bool,
}

struct Set {
    first_ts: i64,
    /// The protocol, known once the fragment at offset 0 arrived.
    proto: Option<u8>,
    /// The payload length, known once the last fragment arrived.
    total: Option<usize>,
    parts: Vec<(usize, Vec<u8>)>,
    held: usize,
}

/// The reassembly table.
#[derive(Default)]
pub(crate) struct Reassembly {
    sets: HashMap<Key, Set>,
    held: usize,
    last_sweep: i64,
    /// Datagrams given up on: timed out, evicted for room, or inconsistent.
    pub dropped: u64,
}

impl Reassembly {
    /// Datagrams still incomplete.
    pub fn pending(&self) -> usize {
        self.sets.len()
    }

    /// Adds a fragment; returns the datagram's protocol and payload once it is complete.
    pub fn add(&mut self, ts_ns: i64, key: Key, f: Fragment<'_>) -> Option<(u8, Vec<u8>)> {
        if ts_ns - self.last_sweep >= SWEEP_NS {
            self.expire(ts_ns);
        }
        let end = f.offset + f.data.len();
        if end > MAX_DATAGRAM || f.cut {
            self.drop_set(&key);
            return None;
        }
        if !self.sets.contains_key(&key) {
            while self.sets.len() >= MAX_SETS || self.held + f.data.len() > MAX_BYTES {
                if !self.evict_oldest() {
                    break;
                }
            }
        }
        let set = self.sets.entry(key).or_insert_with(|| Set {
            first_ts: ts_ns,
            proto: None,
            total: None,
            parts: Vec::new(),
            held: 0,
        });
        if f.offset == 0 {
            set.proto = Some(f.proto);
        }
        let inconsistent = if f.more {
            set.total.is_some_and(|t| end > t)
        } else {
            let bad = set.total.is_some_and(|t| t != end)
                || set.parts.iter().any(|(o, d)| o + d.len() > end);
            set.total = Some(end);
            bad
        };
        // Retransmitted or overlapping fragments may at most double what a datagram holds.
        if inconsistent || set.held + f.data.len() > 2 * MAX_DATAGRAM {
            self.drop_set(&key);
            return None;
        }
        set.parts.push((f.offset, f.data.to_vec()));
        set.held += f.data.len();
        self.held += f.data.len();
        let (Some(proto), Some(total)) = (set.proto, set.total) else {
            return None;
        };
        set.parts.sort_by_key(|(o, _)| *o);
        let mut covered = 0;
        for (o, d) in &set.parts {
            if *o > covered {
                return None;
            }
            covered = covered.max(o + d.len());
        }
        if covered < total {
            return None;
        }
        let set = self.sets.remove(&key)?;
        self.held -= set.held;
        // Later fragments overwrite earlier ones where they overlap (what Linux does for
        // IPv4; overlapping IPv6 fragments are rare enough not to treat apart).
        let mut whole = vec![0u8; total];
        for (o, d) in &set.parts {
            whole[*o..o + d.len()].copy_from_slice(d);
        }
        Some((proto, whole))
    }

    fn expire(&mut self, ts_ns: i64) {
        self.last_sweep = ts_ns;
        let before = self.sets.len();
        let mut freed = 0;
        self.sets.retain(|_, s| {
            let keep = ts_ns - s.first_ts < TIMEOUT_NS;
            if !keep {
                freed += s.held;
            }
            keep
        });
        self.held -= freed;
        self.dropped += (before - self.sets.len()) as u64;
    }

    fn evict_oldest(&mut self) -> bool {
        let Some(key) = self
            .sets
            .iter()
            .min_by_key(|(_, s)| s.first_ts)
            .map(|(k, _)| *k)
        else {
            return false;
        };
        self.drop_set(&key);
        true
    }

    fn drop_set(&mut self, key: &Key) {
        if let Some(s) = self.sets.remove(key) {
            self.held -= s.held;
        }
        self.dropped += 1;
    }
}
