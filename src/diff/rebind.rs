//! Rebinding: ids and tokens that recorded answers created are replaced, in later requests,
//! by the values the target returned in this run — otherwise every write flow (create, then
//! read what was created) fails against a fresh service.
//!
//! Which values are ids is `vocab::volatile`'s call, as for `mf infer`'s value flows.

use std::collections::HashMap;

use bytes::Bytes;
use serde_json::Value;

use super::{Ignored, Verdict};
use crate::model::{Body, Direction, Exchange, Header, HeaderList};
use crate::vocab::volatile::{self, Form};
use crate::vocab::{self as v};

/// Pairs remembered; a run that creates more ids than this stops learning new ones (a replay
/// of a million exchanges must not grow without bound).
const MAX_PAIRS: usize = 200_000;

/// Recorded value → the value the target returned instead.
#[derive(Debug, Default)]
pub(crate) struct Rebinder {
    map: HashMap<String, String>,
}

/// True when `value` may be rebound wherever it appears as a whole value; short numbers are
/// only rebound where the context says they are ids (path segments, `id` fields).
fn rebindable_anywhere(value: &str) -> bool {
    !value.bytes().all(|b| b.is_ascii_digit()) || value.len() >= 6
}

/// True for a header named like one that hands out a token or session: what
/// `volatile::identifier_like` calls a credential field (a value such as `xxxx` makes it
/// decide by the name alone), without the two lower-cased copies of every recorded header's
/// name that asking it cost (~4% of a `replay --to --speed max` profile).
fn hands_out_tokens(name: &str) -> bool {
    let leaf = name.rsplit('.').next().unwrap_or(name).as_bytes();
    let has = |word: &[u8]| {
        leaf.windows(word.len())
            .any(|w| w.eq_ignore_ascii_case(word))
    };
    has(b"token") || has(b"session")
}

impl Rebinder {
    /// An empty rebinder.
    pub(crate) fn new() -> Rebinder {
        Rebinder::default()
    }

    /// How many pairs it knows.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    fn insert(&mut self, recorded: &str, observed: &str) {
        if recorded == observed || recorded.is_empty() || observed.is_empty() {
            return;
        }
        if self.map.len() < MAX_PAIRS || self.map.contains_key(recorded) {
            self.map.insert(recorded.to_string(), observed.to_string());
        }
    }

    /// After an answer: learn recorded→observed value pairs (JSON leaves, Location, Set-Cookie…).
    pub(crate) fn learn(&mut self, recorded: &Exchange, observed: &Exchange) {
        let (Some(a), Some(b)) = (&recorded.response, &observed.response) else {
            return;
        };
        // Equal bodies pair every value with itself, which teaches nothing: skip parsing them
        // (most answers of a healthy target are equal; parsing both showed as ~7% of a
        // `replay --to --speed max` profile).
        // (The test comes first on its own: a tuple pattern would parse both before testing.)
        let same_body = a.body.data == b.body.data;
        let parsed = (!same_body)
            .then(|| v::parse_json(&a.body.data).zip(v::parse_json(&b.body.data)))
            .flatten();
        if let Some((ja, jb)) = parsed {
            let mut pairs = Vec::new();
            learn_json("", &ja, &jb, &mut pairs);
            for (x, y) in pairs {
                // A value the request named (`GET /users/3` answering `"id": 3`) was not
                // created by this answer: if it changed, that is a difference, not a new id.
                if !in_request(recorded, &x) {
                    self.insert(&x, &y);
                }
            }
        }
        // Location: the id segments of the created resource's URL.
        if let (Some(la), Some(lb)) = (
            a.headers.header_str("location"),
            b.headers.header_str("location"),
        ) {
            let (pa, pb) = (v::origin_form(&la), v::origin_form(&lb));
            let (sa, sb): (Vec<&str>, Vec<&str>) =
                (pa.split('/').collect(), pb.split('/').collect());
            if sa.len() == sb.len() {
                for (x, y) in sa.iter().zip(&sb) {
                    if x != y && v::is_id_segment(x) {
                        self.insert(x, y);
                    }
                }
            }
        }
        // Cookies by name, and headers that hand out tokens.
        let cookies = |hs: &[Header]| -> HashMap<String, String> {
            hs.header_all("set-cookie")
                .filter_map(|c| {
                    let c = String::from_utf8_lossy(c);
                    let (name, value) = c.split(';').next()?.split_once('=')?;
                    Some((name.trim().to_string(), value.trim().to_string()))
                })
                .collect()
        };
        let cb = cookies(&b.headers);
        for (name, value) in cookies(&a.headers) {
            if let Some(now) = cb.get(&name) {
                self.insert(&value, now);
            }
        }
        for h in &a.headers {
            if hands_out_tokens(&h.name) {
                if let Some(now) = b.headers.header_str(&h.name) {
                    self.insert(h.value_str().trim(), &now);
                }
            }
        }
    }

    /// Moves the differences that are rebound ids (the recorded value became the one this
    /// run created, learned from this answer or an earlier one) to the ignored values.
    pub(crate) fn absorb(&self, verdict: &mut Verdict) {
        if self.map.is_empty() {
            return;
        }
        let unquote = |s: &str| s.trim_matches('"').to_string();
        verdict.differences.retain(|d| {
            let rebound = self
                .map
                .get(&unquote(&d.recorded))
                .is_some_and(|now| *now == unquote(&d.now));
            if rebound {
                verdict.ignored.push(Ignored {
                    path: d.path.clone(),
                    rule: "rebound: an id or token this run created".into(),
                });
            }
            !rebound
        });
    }
}

// Rewriting: before each send by `mf replay --to`, before pairing by `mf diff`.
impl Rebinder {
    /// The value that replaces `s` anywhere, if any.
    fn anywhere(&self, s: &str) -> Option<&String> {
        rebindable_anywhere(s).then(|| self.map.get(s)).flatten()
    }

    /// Before sending: replace recorded ids/tokens in the outgoing request (path segments,
    /// query, headers incl. Authorization/Cookie, JSON/form body, gRPC/WS messages).
    pub(crate) fn rewrite(&self, outgoing: &mut Exchange) {
        if self.map.is_empty() {
            return;
        }
        let req = &mut outgoing.request;
        if let Some(t) = self.rewrite_target(&req.target) {
            req.target = t.into();
        }
        for h in &mut req.headers {
            if let Some(value) = self.rewrite_header(&h.name, &h.value_str()) {
                h.value = value.into_bytes().into();
            }
        }
        let form = req
            .headers
            .header_str("content-type")
            .is_some_and(|t| t.starts_with("application/x-www-form-urlencoded"));
        let new_body = if form {
            std::str::from_utf8(&req.body.data)
                .ok()
                .and_then(|s| self.rewrite_query(s))
                .map(String::into_bytes)
        } else {
            self.rewrite_json(&req.body.data)
        };
        if let Some(data) = new_body {
            req.body = Body::full(data);
            let len = req.body.data.len().to_string();
            for h in &mut req.headers {
                if h.name.eq_ignore_ascii_case("content-length") {
                    h.value = crate::model::HeaderValue::from_slice(len.as_bytes());
                }
            }
        }
        for m in &mut outgoing.messages {
            if m.direction == Direction::ClientToServer {
                if let Some(data) = self.rewrite_json(&m.data) {
                    m.data = Bytes::from(data);
                }
            }
        }
    }

    fn rewrite_target(&self, target: &str) -> Option<String> {
        let (path, query) = v::split_target(target);
        let mut changed = false;
        let segments: Vec<&str> = path
            .split('/')
            .map(|s| match self.map.get(s) {
                Some(now) if v::is_id_segment(s) => {
                    changed = true;
                    now.as_str()
                }
                _ => s,
            })
            .collect();
        let mut out = segments.join("/");
        match query.map(|q| (q, self.rewrite_query(q))) {
            Some((_, Some(q))) => {
                changed = true;
                out.push('?');
                out.push_str(&q);
            }
            Some((q, None)) => {
                out.push('?');
                out.push_str(q);
            }
            None => {}
        }
        changed.then_some(out)
    }

    /// `a=1&b=tok` with values rebound; `None` when nothing changed.
    fn rewrite_query(&self, q: &str) -> Option<String> {
        let mut changed = false;
        let pairs: Vec<String> = q
            .split('&')
            .map(|pair| match pair.split_once('=') {
                Some((k, val)) => {
                    let id_key = volatile::identifier_like(k, "xxxx", 1).is_some();
                    match self.map.get(val) {
                        Some(now) if id_key || rebindable_anywhere(val) => {
                            changed = true;
                            format!("{k}={now}")
                        }
                        _ => pair.to_string(),
                    }
                }
                None => pair.to_string(),
            })
            .collect();
        changed.then(|| pairs.join("&"))
    }

    fn rewrite_header(&self, name: &str, value: &str) -> Option<String> {
        if name.eq_ignore_ascii_case("host") || name.eq_ignore_ascii_case("content-length") {
            return None;
        }
        if name.eq_ignore_ascii_case("authorization") {
            let (scheme, token) = value.split_once(' ')?;
            return self
                .map
                .get(token.trim())
                .map(|now| format!("{scheme} {now}"));
        }
        if name.eq_ignore_ascii_case("cookie") {
            let mut changed = false;
            let parts: Vec<String> = value
                .split(';')
                .map(|c| match c.split_once('=') {
                    Some((k, val)) => match self.map.get(val.trim()) {
                        Some(now) => {
                            changed = true;
                            format!("{}={now}", k.trim())
                        }
                        None => c.trim().to_string(),
                    },
                    None => c.trim().to_string(),
                })
                .collect();
            return changed.then(|| parts.join("; "));
        }
        self.anywhere(value.trim()).cloned()
    }

    /// A JSON payload with its id leaves rebound, re-serialised; `None` when nothing changed
    /// (the bytes then go out exactly as recorded).
    fn rewrite_json(&self, data: &[u8]) -> Option<Vec<u8>> {
        let mut value = v::parse_json(data)?;
        self.rewrite_value("", &mut value)
            .then(|| serde_json::to_vec(&value).ok())?
    }

    fn rewrite_value(&self, key: &str, value: &mut Value) -> bool {
        match value {
            Value::Object(m) => {
                let mut changed = false;
                for (k, item) in m.iter_mut() {
                    changed |= self.rewrite_value(k, item);
                }
                changed
            }
            Value::Array(items) => {
                let mut changed = false;
                for item in items {
                    changed |= self.rewrite_value(key, item);
                }
                changed
            }
            _ => {
                let Some(text) = scalar(value) else {
                    return false;
                };
                let id_key = volatile::identifier_like(key, &text, 1).is_some();
                let Some(now) = self
                    .map
                    .get(&text)
                    .filter(|_| id_key || rebindable_anywhere(&text))
                else {
                    return false;
                };
                *value = match (&*value, now.parse::<serde_json::Number>()) {
                    (Value::Number(_), Ok(n)) => Value::Number(n),
                    _ => Value::String(now.clone()),
                };
                true
            }
        }
    }
}

/// Pairs of differing id leaves at the same place of two answers.
fn learn_json(key: &str, a: &Value, b: &Value, out: &mut Vec<(String, String)>) {
    match (a, b) {
        (Value::Object(ma), Value::Object(mb)) => {
            for (k, va) in ma {
                if let Some(vb) = mb.get(k) {
                    learn_json(k, va, vb, out);
                }
            }
        }
        (Value::Array(xa), Value::Array(xb)) => {
            for (va, vb) in xa.iter().zip(xb) {
                learn_json(key, va, vb, out);
            }
        }
        _ => {
            let (Some(ta), Some(tb)) = (scalar(a), scalar(b)) else {
                return;
            };
            // An id by its name (`id`, `user_id`, `access_token`) or by its form (a UUID, a
            // JWT); not a timestamp, which changes without being reused.
            let by_name = volatile::identifier_like(key, &ta, 1).is_some();
            let by_form =
                volatile::form_of(&ta).is_some_and(|f| !f.is_time() && f != Form::EpochDigits);
            if (by_name || by_form) && ta != tb {
                out.push((ta, tb));
            }
        }
    }
}

/// True when the request carried `value`: a path segment, a query value, or in the body.
fn in_request(ex: &Exchange, value: &str) -> bool {
    let (path, query) = v::split_target(ex.request.origin_form());
    path.split('/').any(|s| s == value)
        || query.is_some_and(|q| {
            q.split('&')
                .any(|p| p.split_once('=').is_some_and(|(_, x)| x == value))
        })
        || (!ex.request.body.data.is_empty()
            && ex
                .request
                .body
                .data
                .windows(value.len().max(1))
                .any(|w| w == value.as_bytes()))
}

/// A string or number leaf as text.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod name_tests {
    use super::*;

    #[test]
    fn token_headers_are_the_credentials_identifier_like_names() {
        for name in [
            "X-Auth-Token",
            "x-session-id",
            "Set-Cookie",
            "content-type",
            "X-Request-Id",
            "a.SessionKey",
            "token.x",
            "Refresh_TOKEN",
            "",
        ] {
            let asked =
                volatile::identifier_like(&name.to_ascii_lowercase().replace('-', "_"), "xxxx", 1)
                    == Some(true);
            assert_eq!(hands_out_tokens(name), asked, "{name}");
        }
    }
}
