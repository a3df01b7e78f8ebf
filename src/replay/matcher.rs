//! Which recorded exchange answers a request: pure logic, no I/O.
//!
//! A request matches a recorded exchange when method, path, query (parameter order ignored)
//! and body (byte-exact, or semantically equal when both are JSON) are the same. Identical
//! requests form a group answered in recorded order — the 1st call gets the 1st recorded
//! response, the 2nd the 2nd, then the last repeats — which is what makes an offline
//! reproduction deterministic. With no match, every recorded exchange is scored and the
//! closest are reported with the reasons they failed, like WireMock's near-miss report.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Serialize;

use crate::model::Exchange;

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

/// Matches requests against a recording. Thread-safe; counters live behind a mutex.
pub struct Matcher {
    entries: Vec<Entry>,
    ids: Vec<i64>,
    groups: HashMap<GroupKey, Vec<usize>>,
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
            groups.entry(key_of(&entry)).or_default().push(i);
            entries.push(entry);
        }
        Matcher {
            entries,
            ids: exchanges.iter().map(|e| e.id).collect(),
            groups,
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
        let key = key_of(&probe);
        if let Some(indices) = self.groups.get(&key) {
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
mod tests {
    use super::*;
    use crate::model::{Body, Request};

    fn ex(id: i64, method: &str, target: &str, body: &str) -> Exchange {
        Exchange {
            id,
            request: Request {
                method: method.into(),
                target: target.into(),
                body: Body::full(body.as_bytes().to_vec()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    fn found(r: MatchResult) -> usize {
        match r {
            MatchResult::Found { index, .. } => index,
            MatchResult::NotFound { near_misses } => panic!("no match: {near_misses:?}"),
        }
    }

    #[test]
    fn identical_requests_get_recorded_order_then_last_repeats() {
        let recs = [
            ex(1, "GET", "/n", ""),
            ex(2, "GET", "/other", ""),
            ex(3, "GET", "/n", ""),
        ];
        let m = Matcher::new(&recs, RepeatPolicy::Last);
        let req = Incoming {
            method: "GET",
            target: "/n",
            body: b"",
        };
        assert_eq!(found(m.find(&req)), 0);
        assert_eq!(found(m.find(&req)), 2);
        assert_eq!(found(m.find(&req)), 2);
        m.reset();
        assert_eq!(found(m.find(&req)), 0);
    }

    #[test]
    fn query_order_and_json_key_order_do_not_matter() {
        let recs = [ex(
            1,
            "POST",
            "/s?a=1&b=2",
            r#"{"x": 1, "y": [1, {"k": 2, "j": 3}]}"#,
        )];
        let m = Matcher::new(&recs, RepeatPolicy::Last);
        let req = Incoming {
            method: "POST",
            target: "/s?b=2&a=1",
            body: br#"{"y":[1,{"j":3,"k":2}],"x":1}"#,
        };
        assert_eq!(found(m.find(&req)), 0);
    }

    #[test]
    fn near_miss_names_what_differs() {
        let recs = [
            ex(7, "POST", "/users?page=1", "{}"),
            ex(8, "GET", "/orders", ""),
        ];
        let m = Matcher::new(&recs, RepeatPolicy::Last);
        let MatchResult::NotFound { near_misses } = m.find(&Incoming {
            method: "POST",
            target: "/users?page=2",
            body: b"{}",
        }) else {
            panic!("matched")
        };
        assert_eq!(near_misses[0].id, 7);
        assert_eq!(
            near_misses[0].mismatches,
            vec!["query: missing page=1; unexpected page=2".to_string()]
        );
    }

    #[test]
    fn repeat_not_found_stops_after_the_recorded_answers() {
        let recs = [ex(1, "GET", "/n", "")];
        let m = Matcher::new(&recs, RepeatPolicy::NotFound);
        let req = Incoming {
            method: "GET",
            target: "/n",
            body: b"",
        };
        assert_eq!(found(m.find(&req)), 0);
        assert!(matches!(m.find(&req), MatchResult::NotFound { .. }));
    }
}
