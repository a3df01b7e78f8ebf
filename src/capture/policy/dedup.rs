//! `--dedup N`: at most N stored exchanges per identical request and response.
//!
//! "Identical" is method, authority, target, request body, status, response body and stream
//! messages: headers are left out, since a `Date` or a request id makes every answer differ.
//! The N-th kept exchange of a group is held back until the end of the recording, so that the
//! number of duplicates dropped after it can be written on it (tag `dedup_dropped`); at most
//! [`MAX_HELD`] are held at once, the oldest being stored early (later drops of its group are
//! then only counted in the summary).

use std::collections::{HashMap, VecDeque};

use crate::model::Exchange;

/// Exchanges held back at most (each is one exchange in memory).
const MAX_HELD: usize = 1024;

/// Groups remembered at most; beyond this, new kinds of exchange are stored without dedup
/// (32 bytes and a few counters each).
const MAX_GROUPS: usize = 200_000;

/// The tag on the last kept exchange of a group: how many identical ones were dropped.
pub const DEDUP_TAG: &str = "dedup_dropped";

#[derive(Default)]
struct Group {
    kept: usize,
    dropped: u64,
    held: Option<Box<Exchange>>,
}

/// Dedup state of one recording.
pub(crate) struct Dedup {
    limit: usize,
    groups: HashMap<[u8; 32], Group>,
    held_order: VecDeque<[u8; 32]>,
}

/// What to do with an exchange.
pub(crate) enum Verdict {
    /// Store it now.
    Store(Box<Exchange>),
    /// Dropped as a duplicate.
    Dropped,
    /// Held back; `evicted`, when some, is to be stored now.
    Held { evicted: Option<Box<Exchange>> },
}

impl Dedup {
    pub(crate) fn new(limit: usize) -> Dedup {
        Dedup {
            limit: limit.max(1),
            groups: HashMap::new(),
            held_order: VecDeque::new(),
        }
    }

    pub(crate) fn offer(&mut self, ex: Box<Exchange>) -> Verdict {
        let key = identity(&ex);
        if !self.groups.contains_key(&key) && self.groups.len() >= MAX_GROUPS {
            return Verdict::Store(ex);
        }
        let limit = self.limit;
        let group = self.groups.entry(key).or_default();
        if group.kept >= limit {
            group.dropped += 1;
            return Verdict::Dropped;
        }
        group.kept += 1;
        if group.kept < limit {
            return Verdict::Store(ex);
        }
        group.held = Some(ex);
        self.held_order.push_back(key);
        let evicted = if self.held_order.len() > MAX_HELD {
            self.held_order
                .pop_front()
                .and_then(|k| self.groups.get_mut(&k).and_then(release))
        } else {
            None
        };
        Verdict::Held { evicted }
    }

    /// Every held exchange, tagged with its group's drops, in the order they were held.
    // Boxed on purpose: each goes on to a sink, which takes exchanges boxed.
    #[allow(clippy::vec_box)]
    pub(crate) fn drain(&mut self) -> Vec<Box<Exchange>> {
        let order = std::mem::take(&mut self.held_order);
        order
            .into_iter()
            .filter_map(|k| self.groups.get_mut(&k).and_then(release))
            .collect()
    }
}

/// Takes the held exchange of `g`, tagged with the drops so far.
fn release(g: &mut Group) -> Option<Box<Exchange>> {
    let mut ex = g.held.take()?;
    if g.dropped > 0 {
        ex.tags.insert(DEDUP_TAG.to_string(), g.dropped.to_string());
    }
    Some(ex)
}

fn identity(ex: &Exchange) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    let mut field = |b: &[u8]| {
        h.update(&(b.len() as u64).to_le_bytes());
        h.update(b);
    };
    field(ex.protocol().as_str().as_bytes());
    field(ex.request.method.as_bytes());
    field(ex.authority.as_bytes());
    field(ex.request.target.as_bytes());
    field(&ex.request.body.data);
    match &ex.response {
        Some(r) => {
            field(&r.status.to_le_bytes());
            field(&r.body.data);
        }
        None => field(ex.error.as_ref().map_or("", |e| e.kind.as_str()).as_bytes()),
    }
    for m in &ex.messages {
        field(&[m.direction as u8]);
        field(&m.data);
    }
    *h.finalize().as_bytes()
}
