//! The near-miss report of the matcher: which recorded requests came closest to one that
//! matched nothing, and why they failed.
//!
//! A small recording is scored whole. A big one would cost every unmatched request a pass
//! over all its exchanges (a second on a million), so its distinct paths are indexed once:
//! sorted (the neighbours of a path share its first segments) and by shape (segment count
//! and last segment: `/v1/users/7` and `/v2/users/7`). An unmatched request scores only the
//! exchanges of its own path, its neighbours and its shape. Scores are the same either way
//! and are compared as integers; only the few lines reported are written out.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};

use super::{decode_query, Key, Matcher, NearMiss, Probe, Tables};
use crate::replay::index::BodyKey;

/// Recordings with up to this many exchanges are scored whole.
pub(super) const FULL_SCAN: usize = 10_000;
/// Sorted neighbours scored on each side of an unmatched path.
const NEIGHBOURS: usize = 32;
/// Paths kept per shape.
const PER_SHAPE: usize = 64;
/// Exchanges scored per candidate path, the first in recorded order (a path can hold most
/// of a recording; its exchanges differ only in method, query and body, and the report
/// prefers the earliest of equal scores anyway).
const PER_PATH: usize = 20_000;

/// The candidate index of a big recording; empty for a small one.
pub(super) struct Candidates {
    big: Option<Big>,
}

struct Big {
    /// Distinct recorded paths (string ids), sorted by text.
    paths: Vec<u32>,
    /// Exchanges of `paths[p]`: `entries[starts[p]..starts[p + 1]]`, in recorded order.
    starts: Vec<u32>,
    entries: Vec<u32>,
    /// Positions in `paths` by [`shape`], at most [`PER_SHAPE`] each.
    shapes: HashMap<u64, Vec<u32>>,
}

/// Segment count and last segment of `path`, hashed.
fn shape(path: &str) -> u64 {
    let mut h = DefaultHasher::new();
    path.split('/').count().hash(&mut h);
    path.rsplit('/').next().unwrap_or("").hash(&mut h);
    h.finish()
}

impl Candidates {
    /// Indexes `entries` when there are more than `full_scan`.
    pub(super) fn new(tables: &Tables, entries: &[Key], full_scan: usize) -> Candidates {
        if entries.len() <= full_scan {
            return Candidates { big: None };
        }
        let strings = &tables.strings;
        // Path string id -> position in the sorted list.
        let mut paths: Vec<u32> = entries.iter().map(|e| e.path).collect();
        paths.sort_unstable();
        paths.dedup();
        let ids = paths.last().map_or(0, |&id| id as usize + 1);
        paths.sort_unstable_by(|a, b| strings.str(*a).cmp(strings.str(*b)));
        // By string id: ids are dense, so a vector does what a SipHash map did, without
        // hashing twice per recorded exchange.
        let mut position = vec![0u32; ids];
        for (p, &id) in paths.iter().enumerate() {
            position[id as usize] = p as u32;
        }
        let mut starts = vec![0u32; paths.len() + 1];
        for e in entries {
            starts[position[e.path as usize] as usize + 1] += 1;
        }
        for p in 0..paths.len() {
            starts[p + 1] += starts[p];
        }
        let mut fill = starts.clone();
        let mut members = vec![0u32; entries.len()];
        for (i, e) in entries.iter().enumerate() {
            let p = position[e.path as usize] as usize;
            members[fill[p] as usize] = i as u32;
            fill[p] += 1;
        }
        let mut shapes: HashMap<u64, Vec<u32>> = HashMap::new();
        for (p, &id) in paths.iter().enumerate() {
            let v = shapes.entry(shape(strings.str(id))).or_default();
            if v.len() < PER_SHAPE {
                v.push(p as u32);
            }
        }
        Candidates {
            big: Some(Big {
                paths,
                starts,
                entries: members,
                shapes,
            }),
        }
    }

    /// Bytes held.
    pub(super) fn heap_bytes(&self) -> usize {
        self.big.as_ref().map_or(0, |b| {
            (b.paths.capacity() + b.starts.capacity() + b.entries.capacity()) * 4
                + b.shapes.len() * 48
                + b.shapes.values().map(|v| v.capacity() * 4).sum::<usize>()
        })
    }

    /// The `count` recorded requests closest to `probe`, best first, one line per distinct
    /// request and mismatch.
    pub(super) fn near_misses(
        &self,
        m: &Matcher,
        probe: &Probe<'_>,
        count: usize,
    ) -> Vec<NearMiss> {
        // (score, id, entry): sorted by score, then recorded id.
        let mut scored: Vec<(u32, i64, u32)> = Vec::new();
        match &self.big {
            None => {
                for i in 0..m.entries.len() {
                    scored.push((m.score(i, probe, None), m.ids[i], i as u32));
                }
            }
            Some(big) => {
                let strings = &m.tables.strings;
                let at = big
                    .paths
                    .partition_point(|&id| strings.str(id) < probe.path);
                let mut positions: Vec<u32> = (at.saturating_sub(NEIGHBOURS)
                    ..(at + NEIGHBOURS).min(big.paths.len()))
                    .map(|p| p as u32)
                    .collect();
                if let Some(same) = big.shapes.get(&shape(probe.path)) {
                    positions.extend(same);
                }
                positions.sort_unstable();
                positions.dedup();
                for p in positions {
                    let p = p as usize;
                    let path_score = m.path_score(big.paths[p], probe);
                    let members = &big.entries[big.starts[p] as usize..big.starts[p + 1] as usize];
                    for &i in members.iter().take(PER_PATH) {
                        let i = i as usize;
                        scored.push((m.score(i, probe, Some(path_score)), m.ids[i], i as u32));
                    }
                }
            }
        }
        scored.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        // One line per distinct request is enough; repeated recordings add nothing. Equal
        // lines have equal scores, so only neighbours in this order can be equal.
        let mut lines: Vec<(Key, u8)> = Vec::with_capacity(count);
        let mut picked: Vec<usize> = Vec::with_capacity(count);
        for &(_, _, i) in &scored {
            let key = m.line_key(i as usize, probe);
            if lines.last() == Some(&key) {
                continue;
            }
            if picked.len() == count {
                break;
            }
            lines.push(key);
            picked.push(i as usize);
        }
        picked.into_iter().map(|i| m.near_miss(i, probe)).collect()
    }
}

impl Matcher {
    /// The near miss of entry `i` against `probe`, with its score.
    pub(super) fn near_miss(&self, i: usize, probe: &Probe<'_>) -> NearMiss {
        let e = self.entries[i];
        let s = &self.tables.strings;
        let mut mismatches = Vec::new();
        if e.authority != probe.key.authority && self.multi_host {
            mismatches.push(format!(
                "host: recorded {}, got {}",
                s.str(e.authority),
                probe.authority
            ));
        }
        let method = s.str(e.method);
        if e.method != probe.key.method {
            mismatches.push(format!("method: recorded {method}, got {}", probe.method));
        }
        let path = s.str(e.path);
        if e.path != probe.key.path {
            mismatches.push(format!("path: recorded {path}, got {}", probe.path));
        }
        let query = decode_query(s.str(e.query));
        if e.query != probe.key.query {
            mismatches.push(query_difference(&query, &probe.query));
        }
        if e.body != probe.key.body {
            mismatches.push(
                match (self.tables.bodies.key(e.body), &probe.body) {
                    (BodyKey::Empty, _) => "body: recorded request had no body",
                    (_, BodyKey::Empty) => "body: recorded request had a body, got none",
                    (BodyKey::Json(_), BodyKey::Json(_)) => "body: JSON differs",
                    _ => "body: bytes differ",
                }
                .to_string(),
            );
        }
        let q = query_string(&query);
        NearMiss {
            id: self.ids[i],
            method: method.to_string(),
            target: if q.is_empty() {
                path.to_string()
            } else {
                format!("{path}?{q}")
            },
            score: self.score(i, probe, None),
            mismatches,
        }
    }

    /// The near-miss score of entry `i` (`path_score`: its path's part, when known).
    pub(super) fn score(&self, i: usize, probe: &Probe<'_>, path_score: Option<u32>) -> u32 {
        let e = self.entries[i];
        let mut score = 0;
        if e.method == probe.key.method {
            score += 20;
        }
        score += path_score.unwrap_or_else(|| self.path_score(e.path, probe));
        if e.query == probe.key.query {
            score += 15;
        }
        if e.body == probe.key.body {
            score += 15;
        }
        score
    }

    /// The part of the score a recorded path earns against `probe`.
    pub(super) fn path_score(&self, path: u32, probe: &Probe<'_>) -> u32 {
        if path == probe.key.path {
            50
        } else {
            30 * path_similarity(self.tables.strings.str(path), probe.path) / 100
        }
    }

    /// What makes two near-miss lines of entries the same line (the report keeps one):
    /// the recorded request line and which mismatches it has.
    pub(super) fn line_key(&self, i: usize, probe: &Probe<'_>) -> (Key, u8) {
        let e = self.entries[i];
        let body = if e.body == probe.key.body {
            0
        } else {
            match (self.tables.bodies.key(e.body), &probe.body) {
                (BodyKey::Empty, _) => 1,
                (_, BodyKey::Empty) => 2,
                (BodyKey::Json(_), BodyKey::Json(_)) => 3,
                _ => 4,
            }
        };
        let host = if self.multi_host { e.authority } else { 0 };
        (
            Key {
                authority: host,
                body: 0,
                ..e
            },
            body,
        )
    }
}

fn query_string(q: &[(String, String)]) -> String {
    q.iter()
        .map(|(k, v)| {
            if v.is_empty() {
                k.clone()
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join("&")
}

fn query_difference(recorded: &[(String, String)], got: &[(String, String)]) -> String {
    let missing: Vec<String> = recorded
        .iter()
        .filter(|p| !got.contains(p))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let extra: Vec<String> = got
        .iter()
        .filter(|p| !recorded.contains(p))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut parts = vec![];
    if !missing.is_empty() {
        parts.push(format!("missing {}", missing.join("&")));
    }
    if !extra.is_empty() {
        parts.push(format!("unexpected {}", extra.join("&")));
    }
    format!("query: {}", parts.join("; "))
}

/// Percentage of path segments equal at the same position.
fn path_similarity(a: &str, b: &str) -> u32 {
    let sa: Vec<&str> = a.split('/').collect();
    let sb: Vec<&str> = b.split('/').collect();
    let same = sa.iter().zip(&sb).filter(|(x, y)| x == y).count();
    let total = sa.len().max(sb.len()).max(1);
    (same * 100 / total) as u32
}
