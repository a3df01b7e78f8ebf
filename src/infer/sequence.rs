//! Sequence patterns per client session: ordering rules, transitions, value flows, retries.
//!
//! A session is a client connection, joined with a token: a request carrying a bearer token
//! (or cookie) that an earlier response of session S handed out belongs to S, whatever
//! connection it came on. Values are compared by 64-bit hash and sessions idle for a long
//! stretch of the recording are folded into the totals, so memory stays bounded on recordings
//! of millions of exchanges.

use std::hash::{BuildHasher, Hasher};

use crate::store::fixtures::{OrderingRule, Retry, Sequences, Transition, ValueFlow, FORMAT};

const MAX_VALUES: usize = 64;
const MAX_FIRST_SEEN: usize = 64;
const IDLE_EVICT: u64 = 100_000;
const MAX_TOKENS: usize = 200_000;
const MIN_SUPPORT: u64 = 3;
const MIN_CONFIDENCE_PERMILLE: u64 = 900;
const MAX_RULES: usize = 200;

/// The maps of this analysis, keyed by value hashes and ids: foldhash, not the standard
/// SipHash, which with `hash_str` below was ~2% of `mf infer` on the 1M synthetic recording.
type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// Fixed seed of [`hash_str`]: a value hashes the same in every run.
const VALUE_SEED: u64 = 0x6d66_7365_7175_656e;

/// Stable 64-bit hash of a value (foldhash with a fixed seed: identical across runs). Values
/// are only ever compared by it.
pub(crate) fn hash_str(s: &str) -> u64 {
    hash_parts(&[s.as_bytes()])
}

/// [`hash_str`] of several byte strings in turn, each with its length: no string to build
/// first (a request's method, target and body, say).
pub(crate) fn hash_parts(parts: &[&[u8]]) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(VALUE_SEED).build_hasher();
    for part in parts {
        h.write_usize(part.len());
        h.write(part);
    }
    h.finish()
}

/// What the sequence analysis needs from one exchange.
#[derive(Debug, Default)]
pub struct Observation {
    pub template: u32,
    pub connection: u64,
    /// Hash of the credential the request carried (bearer token, cookie), if any.
    pub credential: Option<u64>,
    /// Where each candidate value sat in the request (`path.id`, `header.Authorization`).
    pub request_values: Vec<(String, u64)>,
    /// Identifier-like values of the response: JSON path, hash, and whether it is a credential.
    pub response_values: Vec<(String, u64, bool)>,
    /// Method, target and body, hashed: equal for a retried request.
    pub request_hash: u64,
    /// `503`, `error`, when the exchange failed.
    pub failure: Option<String>,
}

#[derive(Debug, Default)]
struct Session {
    last_seen: u64,
    first_seen: Vec<u32>,
    last_template: Option<u32>,
    values: Vec<(u64, u32, u32)>,
    next_slot: usize,
    failed: Option<(u64, String)>,
}

#[derive(Debug, Default)]
struct Interner {
    ids: HashMap<String, u32>,
    names: Vec<String>,
}

impl Interner {
    fn id(&mut self, s: &str) -> u32 {
        if let Some(id) = self.ids.get(s) {
            return *id;
        }
        let id = self.names.len() as u32;
        self.names.push(s.to_string());
        self.ids.insert(s.to_string(), id);
        id
    }
}

/// Accumulates sessions over a stream of observations.
#[derive(Debug, Default)]
pub struct SequenceAnalyzer {
    n: u64,
    sessions: HashMap<u64, Session>,
    token_owner: HashMap<u64, u64>,
    sessions_total: u64,
    contains: HashMap<u32, u64>,
    precede: HashMap<(u32, u32), u64>,
    transitions: HashMap<(u32, u32), u64>,
    flows: HashMap<(u32, u32, u32, u32), u64>,
    retries: HashMap<(u32, String), u64>,
    names: Interner,
}

impl SequenceAnalyzer {
    /// Feeds one exchange (in recording order).
    pub fn observe(&mut self, obs: Observation) {
        self.n += 1;
        let conn_key = obs.connection;
        let key = obs
            .credential
            .and_then(|c| self.token_owner.get(&c).copied())
            .unwrap_or(conn_key);
        let mut s = self.sessions.remove(&key).unwrap_or_default();
        s.last_seen = self.n;
        let t = obs.template;
        if !s.first_seen.contains(&t) && s.first_seen.len() < MAX_FIRST_SEEN {
            s.first_seen.push(t);
        }
        if let Some(prev) = s.last_template {
            *self.transitions.entry((prev, t)).or_insert(0) += 1;
        }
        s.last_template = Some(t);
        // Retry: the same request right after a failure of it.
        if let Some((h, why)) = s.failed.take() {
            if h == obs.request_hash {
                *self.retries.entry((t, why)).or_insert(0) += 1;
            }
        }
        for (loc, h) in &obs.request_values {
            if let Some(&(_, src_t, src_f)) = s.values.iter().find(|(vh, _, _)| vh == h) {
                let loc = self.names.id(loc);
                *self.flows.entry((src_t, src_f, t, loc)).or_insert(0) += 1;
            }
        }
        for (field, h, credential) in &obs.response_values {
            let f = self.names.id(field);
            if let Some(slot) = s.values.iter_mut().find(|(vh, _, _)| vh == h) {
                *slot = (*h, t, f);
            } else if s.values.len() < MAX_VALUES {
                s.values.push((*h, t, f));
            } else {
                s.values[s.next_slot] = (*h, t, f);
                s.next_slot = (s.next_slot + 1) % MAX_VALUES;
            }
            if *credential && self.token_owner.len() < MAX_TOKENS {
                self.token_owner.insert(*h, key);
            }
        }
        s.failed = obs.failure.map(|f| (obs.request_hash, f));
        self.sessions.insert(key, s);
        if self.n.is_multiple_of(4096) {
            let cutoff = self.n.saturating_sub(IDLE_EVICT);
            let idle: Vec<u64> = self
                .sessions
                .iter()
                .filter(|(_, s)| s.last_seen < cutoff)
                .map(|(k, _)| *k)
                .collect();
            for k in idle {
                if let Some(s) = self.sessions.remove(&k) {
                    self.fold(s);
                }
            }
        }
    }

    fn fold(&mut self, s: Session) {
        self.sessions_total += 1;
        for (i, b) in s.first_seen.iter().enumerate() {
            *self.contains.entry(*b).or_insert(0) += 1;
            for a in &s.first_seen[..i] {
                *self.precede.entry((*a, *b)).or_insert(0) += 1;
            }
        }
    }

    /// The patterns, with templates named by `labels` (`POST /login`).
    pub fn finish(mut self, labels: &[String]) -> Sequences {
        let mut rest: Vec<(u64, Session)> = self.sessions.drain().collect();
        rest.sort_by_key(|(k, _)| *k);
        for (_, s) in rest {
            self.fold(s);
        }
        let label = |t: u32| labels.get(t as usize).cloned().unwrap_or_default();
        let mut ordering: Vec<(u64, OrderingRule)> = self
            .precede
            .iter()
            .filter_map(|(&(a, b), &holds)| {
                let support = *self.contains.get(&b)?;
                let permille = holds * 1000 / support.max(1);
                (a != b && support >= MIN_SUPPORT && permille >= MIN_CONFIDENCE_PERMILLE).then(
                    || {
                        (
                            permille,
                            OrderingRule {
                                before: label(a),
                                after: label(b),
                                support,
                                holds,
                                confidence: permille as f64 / 1000.0,
                            },
                        )
                    },
                )
            })
            .collect();
        ordering.sort_by(|(pa, a), (pb, b)| {
            pb.cmp(pa)
                .then(b.support.cmp(&a.support))
                .then((&a.before, &a.after).cmp(&(&b.before, &b.after)))
        });
        ordering.truncate(MAX_RULES);

        let mut out_total: HashMap<u32, u64> = HashMap::default();
        for (&(a, _), &c) in &self.transitions {
            *out_total.entry(a).or_insert(0) += c;
        }
        let mut transitions: Vec<Transition> = self
            .transitions
            .iter()
            .map(|(&(a, b), &count)| Transition {
                from: label(a),
                to: label(b),
                count,
                probability: round3(
                    count as f64 / out_total.get(&a).copied().unwrap_or(1).max(1) as f64,
                ),
            })
            .collect();
        transitions.sort_by(|a, b| {
            a.from
                .cmp(&b.from)
                .then(b.count.cmp(&a.count))
                .then(a.to.cmp(&b.to))
        });

        let mut flows: Vec<ValueFlow> = self
            .flows
            .iter()
            .filter(|(_, &c)| c >= 2)
            .map(|(&(st, sf, dt, dl), &count)| ValueFlow {
                from: label(st),
                from_field: self.names.names[sf as usize].clone(),
                to: label(dt),
                to_location: self.names.names[dl as usize].clone(),
                count,
            })
            .collect();
        flows.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then((&a.from, &a.from_field, &a.to, &a.to_location).cmp(&(
                    &b.from,
                    &b.from_field,
                    &b.to,
                    &b.to_location,
                )))
        });

        let mut retries: Vec<Retry> = self
            .retries
            .iter()
            .map(|((t, why), &count)| Retry {
                endpoint: label(*t),
                after: why.clone(),
                count,
            })
            .collect();
        retries.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then((&a.endpoint, &a.after).cmp(&(&b.endpoint, &b.after)))
        });

        Sequences {
            format: FORMAT,
            session_key:
                "connection, joined by a bearer token or cookie handed out in an earlier response"
                    .into(),
            sessions: self.sessions_total,
            ordering: ordering.into_iter().map(|(_, r)| r).collect(),
            transitions,
            flows,
            retries,
        }
    }
}

fn round3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

/// Human-readable one-liners for `mf patterns` and the recording's patterns table.
pub fn summaries(seq: &Sequences) -> Vec<(String, String, serde_json::Value)> {
    let mut out = Vec::new();
    for r in &seq.ordering {
        out.push((
            "ordering".to_string(),
            format!(
                "`{}` precedes `{}` in {:.0}% of {} sessions",
                r.before,
                r.after,
                r.confidence * 100.0,
                r.support
            ),
            serde_json::to_value(r).unwrap_or_default(),
        ));
    }
    for f in &seq.flows {
        out.push((
            "value_flow".to_string(),
            format!(
                "`{}` response {} reappears in `{}` {} ({} times)",
                f.from, f.from_field, f.to, f.to_location, f.count
            ),
            serde_json::to_value(f).unwrap_or_default(),
        ));
    }
    for r in &seq.retries {
        out.push((
            "retry".to_string(),
            format!(
                "`{}` is retried after {} ({} times)",
                r.endpoint, r.after, r.count
            ),
            serde_json::to_value(r).unwrap_or_default(),
        ));
    }
    for t in &seq.transitions {
        out.push((
            "transition".to_string(),
            format!(
                "`{}` → `{}` p={:.3} ({} times)",
                t.from, t.to, t.probability, t.count
            ),
            serde_json::to_value(t).unwrap_or_default(),
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_ordering_flows_and_retries() {
        let mut a = SequenceAnalyzer::default();
        for conn in 0..5u64 {
            let token = hash_str(&format!("tok{conn}"));
            a.observe(Observation {
                template: 0,
                connection: conn,
                response_values: vec![("token".into(), token, true)],
                request_hash: 1,
                ..Default::default()
            });
            // A later connection of the same client, carrying the token.
            a.observe(Observation {
                template: 1,
                connection: 100 + conn,
                credential: Some(token),
                request_values: vec![("header.Authorization".into(), token)],
                request_hash: 2,
                failure: Some("503".into()),
                ..Default::default()
            });
            a.observe(Observation {
                template: 1,
                connection: 100 + conn,
                credential: Some(token),
                request_hash: 2,
                ..Default::default()
            });
        }
        let s = a.finish(&["POST /login".into(), "GET /orders".into()]);
        assert_eq!(s.sessions, 5);
        assert_eq!(s.ordering[0].before, "POST /login");
        assert_eq!(s.ordering[0].after, "GET /orders");
        assert_eq!((s.ordering[0].support, s.ordering[0].holds), (5, 5));
        assert_eq!(s.flows[0].to_location, "header.Authorization");
        assert_eq!(s.flows[0].count, 5);
        assert_eq!(s.retries[0].count, 5);
        assert_eq!(s.retries[0].after, "503");
    }
}
