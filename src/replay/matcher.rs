//! Which recorded exchange answers a request: pure logic, no I/O.
//!
//! A request matches a recorded exchange when method, path, query (parameter order ignored)
//! and body (byte-exact, or semantically equal when both are JSON) are the same. Identical
//! requests form a group answered in recorded order — the 1st call gets the 1st recorded
//! response, the 2nd the 2nd, then the last repeats — which is what makes an offline
//! reproduction deterministic. With no match, every recorded exchange is scored and the
//! closest are reported with the reasons they failed, like WireMock's near-miss report.
//!
//! A recorded request whose query or body holds redaction placeholders (`mf-redacted-…`,
//! see [`crate::vocab::secrets`]) matches a live request with any value in their place: the
//! real client sends its real secret, which the recording never saw. Such requests form
//! groups with the placeholders blanked out, so that the same call made with several
//! secrets is still answered in recorded order.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

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

struct Entry {
    /// Normalised authority; empty unless the recording spans several hosts.
    authority: String,
    method: String,
    path: String,
    query: Vec<(String, String)>,
    body: BodyKey,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum BodyKey {
    Empty,
    /// Canonical JSON text (object keys sorted), so `{"a":1,"b":2}` equals `{"b":2,"a":1}`.
    Json(String),
    Raw(blake3::Hash),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct GroupKey {
    authority: String,
    method: String,
    path: String,
    query: Vec<(String, String)>,
    body: BodyKey,
}

/// What a placeholder is replaced with in the group key of a request that holds some.
const BLANK: &str = "mf-redacted";

/// The recorded request of a group whose query or body holds placeholders.
struct Wild {
    key: GroupKey,
    /// Recorded query pairs, placeholders as recorded.
    query: Vec<(String, String)>,
    body: WildBody,
}

enum WildBody {
    /// No placeholder in the body: it must match as usual.
    Exact(BodyKey),
    Json(serde_json::Value),
    Raw(Vec<u8>),
}

/// Matches requests against a recording. Thread-safe; counters live behind a mutex.
pub struct Matcher {
    entries: Vec<Entry>,
    ids: Vec<i64>,
    groups: HashMap<GroupKey, Vec<usize>>,
    /// One per group of requests with placeholders, in recorded order.
    wild: Vec<Wild>,
    calls: Mutex<HashMap<GroupKey, usize>>,
    repeat: RepeatPolicy,
    /// The recording holds several hosts (forward proxy): the authority is part of a match.
    multi_host: bool,
}

impl Matcher {
    /// Indexes `exchanges` (in recorded order).
    pub fn new(exchanges: &[Exchange], repeat: RepeatPolicy) -> Matcher {
        let mut entries = Vec::with_capacity(exchanges.len());
        let mut groups: HashMap<GroupKey, Vec<usize>> = HashMap::new();
        let mut hosts: Vec<String> = exchanges
            .iter()
            .map(|e| normalize_authority(&e.authority))
            .collect();
        hosts.sort();
        hosts.dedup();
        let multi_host = hosts.len() > 1;
        let mut wild = Vec::new();
        for (i, ex) in exchanges.iter().enumerate() {
            let entry = Entry {
                authority: if multi_host {
                    normalize_authority(&ex.authority)
                } else {
                    String::new()
                },
                method: ex.request.method.clone(),
                path: ex.request.path().to_string(),
                query: parse_query(ex.request.query()),
                body: body_key(&ex.request.body.data),
            };
            let key = match wild_of(&entry, &ex.request.body.data) {
                Some(w) => {
                    let key = w.key.clone();
                    if !groups.contains_key(&key) {
                        wild.push(w);
                    }
                    key
                }
                None => key_of(&entry),
            };
            groups.entry(key).or_default().push(i);
            entries.push(entry);
        }
        Matcher {
            entries,
            ids: exchanges.iter().map(|e| e.id).collect(),
            groups,
            wild,
            calls: Mutex::new(HashMap::new()),
            repeat,
            multi_host,
        }
    }

    /// Number of recorded exchanges.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when the recording is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets how often each request was seen: the next call gets the first answer again.
    pub fn reset(&self) {
        if let Ok(mut calls) = self.calls.lock() {
            calls.clear();
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
        let probe = Entry {
            authority: match authority {
                Some(a) if self.multi_host => normalize_authority(a),
                _ => String::new(),
            },
            method: req.method.to_string(),
            path: path.to_string(),
            query: parse_query(query),
            body: body_key(req.body),
        };
        let exact = key_of(&probe);
        let key = if self.groups.contains_key(&exact) {
            Some(exact)
        } else {
            self.wild_group(&probe, req.body)
        };
        if let Some((key, indices)) = key.and_then(|k| self.groups.get(&k).map(|i| (k, i))) {
            let call = {
                let mut calls = self.calls.lock().unwrap_or_else(|p| p.into_inner());
                let n = calls.entry(key).or_insert(0);
                *n += 1;
                *n
            };
            let pos = match self.repeat {
                RepeatPolicy::Last => Some((call - 1).min(indices.len() - 1)),
                RepeatPolicy::Cycle => Some((call - 1) % indices.len()),
                RepeatPolicy::NotFound => (call <= indices.len()).then(|| call - 1),
            };
            if let Some(pos) = pos {
                return MatchResult::Found {
                    index: indices[pos],
                    call,
                };
            }
            return MatchResult::NotFound {
                near_misses: vec![NearMiss {
                    id: self.ids[indices[indices.len() - 1]],
                    method: probe.method.clone(),
                    target: req.target.to_string(),
                    score: 100,
                    mismatches: vec![format!(
                        "all {} recorded answers were already served",
                        indices.len()
                    )],
                }],
            };
        }
        MatchResult::NotFound {
            near_misses: self.near_misses(&probe, 3),
        }
    }

    /// The group of recorded requests with placeholders that `probe` matches, if any.
    fn wild_group(&self, probe: &Entry, body: &[u8]) -> Option<GroupKey> {
        let mut live_json = None;
        self.wild
            .iter()
            .find(|w| {
                w.key.authority == probe.authority
                    && w.key.method == probe.method
                    && w.key.path == probe.path
                    && wild_query_matches(&w.query, &probe.query)
                    && match &w.body {
                        WildBody::Exact(k) => *k == probe.body,
                        WildBody::Raw(r) => secrets::raw_matches(r, body),
                        WildBody::Json(r) => live_json
                            .get_or_insert_with(|| {
                                serde_json::from_slice::<serde_json::Value>(body).ok()
                            })
                            .as_ref()
                            .is_some_and(|l| secrets::json_matches(r, l)),
                    }
            })
            .map(|w| w.key.clone())
    }

    fn near_misses(&self, probe: &Entry, count: usize) -> Vec<NearMiss> {
        let mut scored: Vec<NearMiss> = self
            .entries
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let mut score = 0u32;
                let mut mismatches = Vec::new();
                if e.authority != probe.authority {
                    mismatches.push(format!(
                        "host: recorded {}, got {}",
                        e.authority, probe.authority
                    ));
                }
                if e.method == probe.method {
                    score += 20;
                } else {
                    mismatches.push(format!(
                        "method: recorded {}, got {}",
                        e.method, probe.method
                    ));
                }
                if e.path == probe.path {
                    score += 50;
                } else {
                    score += 30 * path_similarity(&e.path, &probe.path) / 100;
                    mismatches.push(format!("path: recorded {}, got {}", e.path, probe.path));
                }
                if e.query == probe.query {
                    score += 15;
                } else {
                    mismatches.push(query_difference(&e.query, &probe.query));
                }
                if e.body == probe.body {
                    score += 15;
                } else {
                    mismatches.push(match (&e.body, &probe.body) {
                        (BodyKey::Empty, _) => "body: recorded request had no body".to_string(),
                        (_, BodyKey::Empty) => {
                            "body: recorded request had a body, got none".to_string()
                        }
                        (BodyKey::Json(_), BodyKey::Json(_)) => "body: JSON differs".to_string(),
                        _ => "body: bytes differ".to_string(),
                    });
                }
                let q = query_string(&e.query);
                NearMiss {
                    id: self.ids[i],
                    method: e.method.clone(),
                    target: if q.is_empty() {
                        e.path.clone()
                    } else {
                        format!("{}?{q}", e.path)
                    },
                    score,
                    mismatches,
                }
            })
            .collect();
        scored.sort_by(|a, b| b.score.cmp(&a.score).then(a.id.cmp(&b.id)));
        // One line per distinct request is enough; repeated recordings add nothing.
        scored.dedup_by(|a, b| {
            a.method == b.method && a.target == b.target && a.mismatches == b.mismatches
        });
        scored.truncate(count);
        scored
    }
}

/// Lowercase host with the scheme's default port dropped, so `Host: a.example` and
/// `CONNECT a.example:443` name the same origin.
fn normalize_authority(a: &str) -> String {
    let a = a.trim().to_ascii_lowercase();
    a.strip_suffix(":443")
        .or_else(|| a.strip_suffix(":80"))
        .unwrap_or(&a)
        .to_string()
}

/// The wildcard form of a recorded request that holds placeholders; `None` when it holds
/// none.
fn wild_of(e: &Entry, body: &[u8]) -> Option<Wild> {
    let wild_query = e.query.iter().any(|(_, v)| secrets::is_placeholder(v));
    let wild_body = secrets::contains_placeholder(body);
    if !wild_query && !wild_body {
        return None;
    }
    let mut key = key_of(e);
    for (_, v) in key.query.iter_mut() {
        if secrets::is_placeholder(v) {
            *v = BLANK.to_string();
        }
    }
    key.query.sort();
    let body = if !wild_body {
        WildBody::Exact(e.body.clone())
    } else if let BodyKey::Json(_) = e.body {
        let value: serde_json::Value = serde_json::from_slice(body).ok()?;
        key.body = BodyKey::Json(canonical_json(&blank_json(&value)));
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
        key.body = BodyKey::Raw(blake3::hash(&blanked));
        WildBody::Raw(body.to_vec())
    };
    Some(Wild {
        key,
        query: e.query.clone(),
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

fn key_of(e: &Entry) -> GroupKey {
    GroupKey {
        authority: e.authority.clone(),
        method: e.method.clone(),
        path: e.path.clone(),
        query: e.query.clone(),
        body: e.body.clone(),
    }
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

fn body_key(body: &[u8]) -> BodyKey {
    if body.is_empty() {
        return BodyKey::Empty;
    }
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if matches!(first, Some(b'{') | Some(b'[')) {
        if let Ok(value) = serde_json::from_slice::<serde_json::Value>(body) {
            return BodyKey::Json(canonical_json(&value));
        }
    }
    BodyKey::Raw(blake3::hash(body))
}

/// JSON text with object keys sorted at every level.
pub(crate) fn canonical_json(v: &serde_json::Value) -> String {
    crate::store::fixtures::sorted_json(v).to_string()
}

#[cfg(test)]
#[path = "matcher_tests.rs"]
mod tests;
