//! Which recorded exchange answers a request: pure logic, no I/O.
//!
//! A request matches a recorded exchange when method, path, query (parameter order ignored)
//! and body (byte-exact, or semantically equal when both are JSON) are the same. Identical
//! requests form a group answered in recorded order — the 1st call gets the 1st recorded
//! response, the 2nd the 2nd, then the last repeats — which is what makes an offline
//! reproduction deterministic. With no match, the recorded exchanges that can come close (all
//! of a small recording; see [`super::near`] for a big one) are scored and the closest are
//! reported with the reasons they failed, like WireMock's near-miss report.
//!
//! A recorded request whose query or body holds redaction placeholders (`mf-redacted-…`,
//! see [`crate::vocab::secrets`]) matches a live request with any value in their place: the
//! real client sends its real secret, which the recording never saw. Such requests form
//! groups with the placeholders blanked out, so that the same call made with several
//! secrets is still answered in recorded order.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};

use serde::Serialize;

use super::index::{body_key, canonical_json, short_hash, BodyKey, BodyKeys, Strings, UNKNOWN};
use crate::model::Exchange;
use crate::vocab::secrets;

/// The parts of an incoming request the matcher looks at.
#[derive(Clone, Debug)]
pub struct Incoming<'a> {
    pub method: &'a str,
    /// Origin-form target: path and optional query.
    pub target: &'a str,
    pub body: &'a [u8],
}

/// What to do once a group's recorded answers are used up.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RepeatPolicy {
    /// Keep answering with the last recorded response.
    #[default]
    Last,
    /// Start again from the first.
    Cycle,
    /// Answer as if nothing matched.
    NotFound,
}

/// A recorded exchange that came close, and why it did not match.
#[derive(Clone, Debug, Serialize)]
pub struct NearMiss {
    pub id: i64,
    pub method: String,
    pub target: String,
    pub score: u32,
    pub mismatches: Vec<String>,
}

/// The matcher's verdict.
#[derive(Debug)]
pub enum MatchResult {
    /// Index into the exchanges given to [`Matcher::new`], and the call number within its group
    /// (from 1).
    Found {
        index: usize,
        call: usize,
    },
    NotFound {
        near_misses: Vec<NearMiss>,
    },
}

/// A recorded request's exact key, every part an interned id: what groups and candidates
/// compare without touching a string.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    /// Normalised authority.
    pub authority: u32,
    pub method: u32,
    pub path: u32,
    /// Sorted, decoded query pairs (see [`encode_query`]).
    pub query: u32,
    pub body: u32,
}

/// What a placeholder is replaced with in the group key of a request that holds some.
const BLANK: &str = "mf-redacted";

/// The recorded request of a group whose query or body holds placeholders.
struct Wild {
    group: u32,
    key: Key,
    /// Recorded query pairs, placeholders as recorded.
    query: Vec<(String, String)>,
    body: WildBody,
}

enum WildBody {
    /// No placeholder in the body: it must match as usual.
    Exact(u32),
    Json(serde_json::Value),
    Raw(Vec<u8>),
}

/// The interned parts of a recording's requests, shared by matching and the near-miss
/// report.
#[derive(Default)]
pub(crate) struct Tables {
    pub strings: Strings,
    pub bodies: BodyKeys,
}

/// Indexes recorded requests one at a time (in recorded order), so that a recording too big
/// for memory can be indexed as it is read.
pub struct MatcherBuilder {
    tables: Tables,
    entries: Vec<Key>,
    ids: Vec<i64>,
    /// Per entry, its group.
    entry_group: Vec<u32>,
    groups: HashMap<Key, u32>,
    wild: Vec<Wild>,
    /// The authority of the first request, and whether another one was seen.
    first_authority: Option<u32>,
    multi_host: bool,
    /// Up to this many exchanges, near misses score the whole recording.
    full_scan: usize,
}

impl Default for MatcherBuilder {
    fn default() -> MatcherBuilder {
        MatcherBuilder {
            tables: Tables::default(),
            entries: Vec::new(),
            ids: Vec::new(),
            entry_group: Vec::new(),
            groups: HashMap::new(),
            wild: Vec::new(),
            first_authority: None,
            multi_host: false,
            full_scan: near::FULL_SCAN,
        }
    }
}

impl MatcherBuilder {
    /// Scores near misses over candidates once the recording has more than `n` exchanges
    /// (tests compare both ways on small recordings).
    #[cfg(test)]
    pub(crate) fn full_scan_up_to(mut self, n: usize) -> MatcherBuilder {
        self.full_scan = n;
        self
    }

    /// Adds the recorded request of `ex` (only its id, authority, method, target and body
    /// are read).
    pub fn push(&mut self, ex: &Exchange) {
        self.push_keyed(ex, None);
    }

    /// As [`MatcherBuilder::push`], with the key of the request body when the recording
    /// stored one (the body is then not read).
    pub fn push_keyed(&mut self, ex: &Exchange, body_key_stored: Option<BodyKey>) {
        let t = &mut self.tables;
        // Recorded authorities are nearly always normalised already: interned as they are,
        // they cost no lower-cased copy per row.
        let authority = if is_normalized_authority(&ex.authority) {
            t.strings.intern(&ex.authority)
        } else {
            t.strings.intern(&normalize_authority(&ex.authority))
        };
        match self.first_authority {
            None => self.first_authority = Some(authority),
            Some(a) if a != authority => self.multi_host = true,
            Some(_) => {}
        }
        let pairs = parse_query(ex.request.query());
        let body = &ex.request.body.data;
        let key = Key {
            authority,
            method: t.strings.intern(&ex.request.method),
            path: t.strings.intern(ex.request.path()),
            query: t.strings.intern(&encode_query(&pairs)),
            body: t
                .bodies
                .intern(body_key_stored.unwrap_or_else(|| body_key(body))),
        };
        let next = u32::try_from(self.groups.len()).unwrap_or(UNKNOWN);
        let group = match wild_of(t, key, &pairs, body) {
            Some(mut w) => {
                let wild_key = w.key;
                *self.groups.entry(wild_key).or_insert_with(|| {
                    w.group = next;
                    self.wild.push(w);
                    next
                })
            }
            None => *self.groups.entry(key).or_insert(next),
        };
        self.entry_group.push(group);
        self.entries.push(key);
        self.ids.push(ex.id);
    }

    /// Number of requests added.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when none was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The matcher; `repeat` says what happens once a group's answers are used up.
    pub fn finish(self, repeat: RepeatPolicy) -> Matcher {
        let n_groups = self.groups.len();
        // Members of each group in recorded order, one array for all groups.
        let mut starts = vec![0u32; n_groups + 1];
        for &g in &self.entry_group {
            starts[g as usize + 1] += 1;
        }
        for i in 0..n_groups {
            starts[i + 1] += starts[i];
        }
        let mut fill = starts.clone();
        let mut members = vec![0u32; self.entry_group.len()];
        for (i, &g) in self.entry_group.iter().enumerate() {
            members[fill[g as usize] as usize] = i as u32;
            fill[g as usize] += 1;
        }
        let near = Candidates::new(&self.tables, &self.entries, self.full_scan);
        Matcher {
            near,
            tables: self.tables,
            entries: self.entries,
            ids: self.ids,
            groups: self.groups,
            starts,
            members,
            calls: (0..n_groups).map(|_| AtomicU32::new(0)).collect(),
            wild: self.wild,
            repeat,
            multi_host: self.multi_host,
            single_authority: self.first_authority.unwrap_or(UNKNOWN),
        }
    }
}

/// Matches requests against a recording. Thread-safe; a group's counter is an atomic.
pub struct Matcher {
    tables: Tables,
    entries: Vec<Key>,
    ids: Vec<i64>,
    groups: HashMap<Key, u32>,
    /// Members of group `g`: `members[starts[g]..starts[g + 1]]`, entry indices in order.
    starts: Vec<u32>,
    members: Vec<u32>,
    /// Per group, how many live requests it answered.
    calls: Vec<AtomicU32>,
    /// One per group of requests with placeholders, in recorded order.
    wild: Vec<Wild>,
    repeat: RepeatPolicy,
    /// The recording holds several hosts (forward proxy): the authority is part of a match.
    multi_host: bool,
    /// With one host, every request is taken as addressed to it.
    single_authority: u32,
    near: Candidates,
}

/// A live request with its parts looked up in the recording's tables.
pub(crate) struct Probe<'a> {
    pub key: Key,
    pub authority: String,
    pub method: &'a str,
    pub path: &'a str,
    pub query: Vec<(String, String)>,
    pub body: BodyKey,
}

impl Matcher {
    /// Indexes `exchanges` (in recorded order).
    pub fn new(exchanges: &[Exchange], repeat: RepeatPolicy) -> Matcher {
        let mut b = MatcherBuilder::default();
        for ex in exchanges {
            b.push(ex);
        }
        b.finish(repeat)
    }

    /// Number of recorded exchanges.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the recording is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The recorded id of exchange `index`.
    pub fn id(&self, index: usize) -> Option<i64> {
        self.ids.get(index).copied()
    }

    /// Bytes the index holds (approximately), for the start-up report.
    pub fn heap_bytes(&self) -> usize {
        self.tables.strings.heap_bytes()
            + self.tables.bodies.heap_bytes()
            + self.entries.capacity() * std::mem::size_of::<Key>()
            + self.ids.capacity() * 8
            + self.groups.capacity() * (std::mem::size_of::<Key>() + 5)
            + (self.starts.capacity() + self.members.capacity() + self.calls.len()) * 4
            + self.near.heap_bytes()
    }

    /// Forgets how often each request was seen: the next call gets the first answer again.
    pub fn reset(&self) {
        for c in &self.calls {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Finds the answer for `req`, advancing its group's counter.
    pub fn find(&self, req: &Incoming<'_>) -> MatchResult {
        self.find_at(None, req)
    }

    /// As [`Matcher::find`], for a request addressed to `authority` (Host header, absolute
    /// URL or CONNECT target); it matters only when the recording spans several hosts.
    pub fn find_at(&self, authority: Option<&str>, req: &Incoming<'_>) -> MatchResult {
        let (path, query) = split_target(req.target);
        let strings = &self.tables.strings;
        let look = |s: &str| strings.get(s).unwrap_or(UNKNOWN);
        let (authority, authority_id) = if self.multi_host {
            let a = normalize_authority(authority.unwrap_or(""));
            let id = look(&a);
            (a, id)
        } else {
            (String::new(), self.single_authority)
        };
        let pairs = parse_query(query);
        let body = body_key(req.body);
        let probe = Probe {
            key: Key {
                authority: authority_id,
                method: look(req.method),
                path: look(path),
                query: look(&encode_query(&pairs)),
                body: self.tables.bodies.get(&body).unwrap_or(UNKNOWN),
            },
            authority,
            method: req.method,
            path,
            query: pairs,
            body,
        };
        let group = self
            .groups
            .get(&probe.key)
            .copied()
            .or_else(|| self.wild_group(&probe, req.body));
        let Some(group) = group else {
            return MatchResult::NotFound {
                near_misses: self.near.near_misses(self, &probe, 3),
            };
        };
        let g = group as usize;
        let indices = &self.members[self.starts[g] as usize..self.starts[g + 1] as usize];
        let call = self.calls[g].fetch_add(1, Ordering::Relaxed) as usize + 1;
        let pos = match self.repeat {
            RepeatPolicy::Last => Some((call - 1).min(indices.len() - 1)),
            RepeatPolicy::Cycle => Some((call - 1) % indices.len()),
            RepeatPolicy::NotFound => (call <= indices.len()).then(|| call - 1),
        };
        if let Some(pos) = pos {
            return MatchResult::Found {
                index: indices[pos] as usize,
                call,
            };
        }
        MatchResult::NotFound {
            near_misses: vec![NearMiss {
                id: self.ids[indices[indices.len() - 1] as usize],
                method: probe.method.to_string(),
                target: req.target.to_string(),
                score: 100,
                mismatches: vec![format!(
                    "all {} recorded answers were already served",
                    indices.len()
                )],
            }],
        }
    }

    /// The group of recorded requests with placeholders that `probe` matches, if any.
    fn wild_group(&self, probe: &Probe<'_>, body: &[u8]) -> Option<u32> {
        let mut live_json = None;
        self.wild
            .iter()
            .find(|w| {
                w.key.authority == probe.key.authority
                    && w.key.method == probe.key.method
                    && w.key.path == probe.key.path
                    && wild_query_matches(&w.query, &probe.query)
                    && match &w.body {
                        WildBody::Exact(k) => *k == probe.key.body,
                        WildBody::Raw(r) => secrets::raw_matches(r, body),
                        WildBody::Json(r) => live_json
                            .get_or_insert_with(|| {
                                serde_json::from_slice::<serde_json::Value>(body).ok()
                            })
                            .as_ref()
                            .is_some_and(|l| secrets::json_matches(r, l)),
                    }
            })
            .map(|w| w.group)
    }
}

/// Lowercase host with the scheme's default port dropped, so `Host: a.example` and
/// `CONNECT a.example:443` name the same origin.
/// True when [`normalize_authority`] would leave `a` as it is.
fn is_normalized_authority(a: &str) -> bool {
    a.trim().len() == a.len()
        && !a.bytes().any(|b| b.is_ascii_uppercase())
        && !a.ends_with(":443")
        && !a.ends_with(":80")
}

fn normalize_authority(a: &str) -> String {
    let a = a.trim().to_ascii_lowercase();
    a.strip_suffix(":443")
        .or_else(|| a.strip_suffix(":80"))
        .unwrap_or(&a)
        .to_string()
}

/// The wildcard form of a recorded request that holds placeholders; `None` when it holds
/// none.
fn wild_of(t: &mut Tables, key: Key, pairs: &[(String, String)], body: &[u8]) -> Option<Wild> {
    let wild_query = pairs.iter().any(|(_, v)| secrets::is_placeholder(v));
    let wild_body = secrets::contains_placeholder(body);
    if !wild_query && !wild_body {
        return None;
    }
    let mut blanked_query: Vec<(String, String)> = pairs.to_vec();
    for (_, v) in blanked_query.iter_mut() {
        if secrets::is_placeholder(v) {
            *v = BLANK.to_string();
        }
    }
    blanked_query.sort();
    let mut wild_key = Key {
        query: t.strings.intern(&encode_query(&blanked_query)),
        ..key
    };
    let body = if !wild_body {
        WildBody::Exact(key.body)
    } else if let BodyKey::Json(_) = t.bodies.key(key.body) {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        let blanked = canonical_json(&blank_json(&value));
        wild_key.body = t
            .bodies
            .intern(BodyKey::Json(short_hash(blanked.as_bytes())));
        WildBody::Json(value)
    } else {
        let mut blanked = Vec::with_capacity(body.len());
        let mut from = 0;
        for span in secrets::placeholder_spans(body) {
            blanked.extend_from_slice(&body[from..span.start]);
            blanked.extend_from_slice(BLANK.as_bytes());
            from = span.end;
        }
        blanked.extend_from_slice(&body[from..]);
        wild_key.body = t.bodies.intern(BodyKey::Raw(short_hash(&blanked)));
        WildBody::Raw(body.to_vec())
    };
    Some(Wild {
        group: UNKNOWN,
        key: wild_key,
        query: pairs.to_vec(),
        body,
    })
}

/// `v` with every placeholder string replaced by [`BLANK`].
fn blank_json(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::String(s) if secrets::is_placeholder(s) => Value::String(BLANK.to_string()),
        Value::Array(items) => Value::Array(items.iter().map(blank_json).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), blank_json(v)))
                .collect(),
        ),
        other => other.clone(),
    }
}

/// True when the live query has the recorded pairs, a placeholder value matching any value
/// of its parameter.
fn wild_query_matches(recorded: &[(String, String)], live: &[(String, String)]) -> bool {
    if recorded.len() != live.len() {
        return false;
    }
    let mut left: Vec<&(String, String)> = live.iter().collect();
    let (wild, exact): (Vec<_>, Vec<_>) = recorded
        .iter()
        .partition(|(_, v)| secrets::is_placeholder(v));
    for pair in exact.into_iter().chain(wild) {
        let found = left
            .iter()
            .position(|(k, v)| *k == pair.0 && (secrets::is_placeholder(&pair.1) || *v == pair.1));
        match found {
            Some(i) => {
                left.swap_remove(i);
            }
            None => return false,
        }
    }
    true
}

fn split_target(target: &str) -> (&str, Option<&str>) {
    match target.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (target, None),
    }
}

/// Query parameters, percent-decoded and sorted so that order does not matter.
fn parse_query(query: Option<&str>) -> Vec<(String, String)> {
    let Some(q) = query else { return Vec::new() };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut pairs: Vec<(String, String)> = q
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect();
    pairs.sort();
    pairs
}

/// Query pairs as one string to intern: JSON, so that no key or value can be mistaken for a
/// separator. Empty for no query.
fn encode_query(pairs: &[(String, String)]) -> String {
    if pairs.is_empty() {
        return String::new();
    }
    serde_json::to_string(pairs).unwrap_or_default()
}

/// The pairs [`encode_query`] wrote.
fn decode_query(s: &str) -> Vec<(String, String)> {
    if s.is_empty() {
        return Vec::new();
    }
    serde_json::from_str(s).unwrap_or_default()
}

#[path = "near.rs"]
mod near;
use near::Candidates;

#[cfg(test)]
#[path = "matcher_tests.rs"]
mod tests;
