//! What is noise: volatile headers, volatile value forms, values learned to vary between
//! recorded answers to identical requests, and `ignore:` rules by JSON path.

use std::collections::{BTreeSet, HashMap};

use super::judge::{endpoint_of, raw_compare};
use crate::model::Exchange;
use crate::vocab::volatile::{self, Form};

/// Headers whose values change on every answer by construction.
const VOLATILE_HEADERS: &[&str] = &[
    "date",
    "x-request-id",
    "request-id",
    "x-trace-id",
    "traceparent",
    "tracestate",
    "etag",
    "last-modified",
    "expires",
    "age",
    "server-timing",
    "x-correlation-id",
    "x-amzn-requestid",
    "x-amzn-trace-id",
    "cf-ray",
    "x-runtime",
    "x-response-time",
    // Derived from the client's random Sec-WebSocket-Key.
    "sec-websocket-accept",
];

/// A timestamp within this distance of its exchange's start is "the time of the answer".
const NEAR_NS: i64 = 24 * 3600 * 1_000_000_000;

/// Endpoints remembered by noise learning; a recording with more distinct routes than this
/// keeps learning only for the first ones.
const MAX_LEARNED_ENDPOINTS: usize = 10_000;
/// Paths remembered per endpoint.
const MAX_LEARNED_PATHS: usize = 1_000;

/// The judge's rules for telling noise from differences.
#[derive(Clone, Debug, Default)]
pub(crate) struct Rules {
    pub(super) volatile_headers: BTreeSet<String>,
    /// `(endpoint, path pattern)`; `None` applies to every endpoint.
    ignores: Vec<(Option<String>, Vec<Token>)>,
    /// Endpoint (`METHOD /route/{id}`) → normalised paths whose values varied in the recording.
    learned: HashMap<String, BTreeSet<String>>,
    /// Ignore volatile forms (UUID, ULID, JWT, timestamps, request-id hex).
    forms: bool,
}

/// One step of a path pattern: `$.a[*].b` is `Key(a)`, `Index(None)`, `Key(b)`.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Token {
    /// Everything before the JSON part (`header x-a`, `grpc message 2`), compared as text.
    Prefix(String),
    Key(String),
    /// `None` is `[*]` (or `[]`), any index.
    Index(Option<usize>),
}

/// Splits `grpc message 2 $.a[0].b` into its tokens; a path without `$` is one prefix token.
fn tokens(path: &str) -> Vec<Token> {
    let (prefix, json) = match path.find('$') {
        Some(i) => (path[..i].trim(), &path[i + 1..]),
        None => return vec![Token::Prefix(path.trim().to_ascii_lowercase())],
    };
    let mut out = Vec::new();
    if !prefix.is_empty() {
        out.push(Token::Prefix(prefix.to_ascii_lowercase()));
    }
    let mut rest = json;
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            out.push(Token::Key(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("[\"") {
            let end = r.find("\"]").unwrap_or(r.len());
            out.push(Token::Key(r[..end].replace("\\\"", "\"")));
            rest = r.get(end + 2..).unwrap_or("");
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').unwrap_or(r.len());
            out.push(Token::Index(r[..end].trim().parse().ok()));
            rest = r.get(end + 1..).unwrap_or("");
        } else {
            // A pattern written without the leading `.` (`$name`, or `name.x` after `$`).
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            out.push(Token::Key(rest[..end].to_string()));
            rest = &rest[end..];
        }
    }
    out
}

/// True when `pattern` names `path` or one of its ancestors (ignoring `$.meta` ignores all
/// of `meta`); a pattern without prefix matches the JSON part of any prefixed path.
fn pattern_matches(pattern: &[Token], path: &[Token]) -> bool {
    let path = match (pattern.first(), path.first()) {
        (Some(Token::Prefix(_)), _) | (_, None) => path,
        (_, Some(Token::Prefix(_))) => &path[1..],
        _ => path,
    };
    pattern.len() <= path.len()
        && pattern.iter().zip(path).all(|(p, t)| match (p, t) {
            (Token::Index(None), Token::Index(_)) => true,
            _ => p == t,
        })
}

/// The path with array indices and message numbers replaced by `*`: what learned noise keys on.
pub(super) fn normalise(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut chars = path.chars().peekable();
    while let Some(c) = chars.next() {
        out.push(c);
        if c == '[' && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('*');
        }
        let numbered = out.ends_with("message ") || out.ends_with("frame ");
        if numbered && chars.peek().is_some_and(char::is_ascii_digit) {
            while chars.peek().is_some_and(char::is_ascii_digit) {
                chars.next();
            }
            out.push('*');
        }
    }
    out
}

impl Rules {
    /// Defaults (Date, X-Request-Id, ETag, … ignored; UUID/ULID/JWT/timestamp forms ignored).
    pub(crate) fn defaults() -> Rules {
        Rules {
            volatile_headers: VOLATILE_HEADERS.iter().map(|s| s.to_string()).collect(),
            forms: true,
            ..Rules::default()
        }
    }

    /// Rules that ignore nothing but the volatile headers: what noise learning compares with.
    pub(super) fn bare() -> Rules {
        Rules {
            forms: false,
            ..Rules::defaults()
        }
    }

    /// Learns noise from the recording: values that vary between answers to identical requests
    /// (same method, target and body). Only values that changed are learned, not answers
    /// whose status or shape changed: those are the service's state moving on, which a
    /// replay should reproduce.
    pub(crate) fn learn<'a>(&mut self, recorded: impl IntoIterator<Item = &'a Exchange>) {
        let bare = Rules::bare();
        let mut first: HashMap<[u8; 32], &'a Exchange> = HashMap::new();
        for ex in recorded {
            if ex.response.is_none() {
                continue;
            }
            let key = request_key(ex);
            let Some(earlier) = first.get(&key).copied() else {
                first.insert(key, ex);
                continue;
            };
            self.learn_pair(&bare, earlier, ex);
        }
        self.learned.retain(|_, paths| !paths.is_empty());
    }

    /// What `ex` teaches, compared with the first answer to the same request.
    fn learn_pair(&mut self, bare: &Rules, earlier: &Exchange, ex: &Exchange) {
        let Some(resp) = &ex.response else { return };
        if earlier.response.as_ref().map(|r| r.status) != Some(resp.status) {
            return;
        }
        let endpoint = endpoint_of(ex);
        if !self.learned.contains_key(&endpoint) && self.learned.len() >= MAX_LEARNED_ENDPOINTS {
            return;
        }
        let verdict = raw_compare(bare, earlier, ex);
        let paths = self.learned.entry(endpoint).or_default();
        for d in verdict.differences {
            let structural = d.recorded == super::judge::ABSENT || d.now == super::judge::ABSENT;
            if !structural && paths.len() < MAX_LEARNED_PATHS {
                paths.insert(normalise(&d.path));
            }
        }
    }

    /// `ignore:` rules by JSON path from a fixtures folder (or a file): adds to the rules.
    /// `endpoint` is `METHOD /route` (as `mf infer` names routes, `{id}` for ids) or a bare
    /// `/route`; `json_path` is `$.a.b`, `$.items[*].id`, or a whole other path such as
    /// `header x-build`.
    pub(crate) fn add_ignore(&mut self, endpoint: Option<String>, json_path: String) {
        let endpoint = endpoint
            .map(|e| e.trim().to_string())
            .filter(|e| !e.is_empty());
        self.ignores.push((endpoint, tokens(&json_path)));
    }

    /// The header names ignored whatever their value.
    pub(super) fn volatile_header(&self, lower_name: &str) -> bool {
        self.volatile_headers.contains(lower_name)
    }

    /// The rule that makes a difference at `path` noise, if one does. `recorded` and `now`
    /// are the leaf values as text (strings unquoted), `times` the start of the recorded and
    /// the observed exchange (ns since the epoch; 0 when unknown).
    pub(super) fn noise(
        &self,
        endpoint: &str,
        path: &str,
        recorded: &str,
        now: &str,
        times: (i64, i64),
    ) -> Option<String> {
        if !self.ignores.is_empty() {
            let toks = tokens(path);
            for (ep, pattern) in &self.ignores {
                if ep.as_deref().is_none_or(|e| endpoint_matches(e, endpoint))
                    && pattern_matches(pattern, &toks)
                {
                    return Some(format!("ignore: {}", render_tokens(pattern)));
                }
            }
        }
        if let Some(paths) = self.learned.get(endpoint) {
            if paths.contains(&normalise(path)) {
                return Some(
                    "learned: varied between recorded answers to identical requests".into(),
                );
            }
        }
        if self.forms {
            if let Some(form) = same_form(recorded, now, times) {
                return Some(format!("form: {}", form.as_str()));
            }
        }
        None
    }
}

/// `GET /users/{id}` matches `GET /users/{id}`, `/users/{id}` and `* /users/{id}`.
fn endpoint_matches(rule: &str, endpoint: &str) -> bool {
    let (_, route) = endpoint.split_once(' ').unwrap_or(("", endpoint));
    match rule.split_once(' ') {
        Some(("*", r)) => r == route,
        Some(_) => rule.eq_ignore_ascii_case(endpoint) || rule == endpoint,
        None => rule == route,
    }
}

fn render_tokens(pattern: &[Token]) -> String {
    let mut out = String::new();
    for t in pattern {
        match t {
            Token::Prefix(p) => out.push_str(p),
            Token::Key(k) => {
                if out.is_empty() {
                    out.push('$');
                }
                out.push('.');
                out.push_str(k);
            }
            Token::Index(i) => {
                if out.is_empty() {
                    out.push('$');
                }
                match i {
                    Some(i) => out.push_str(&format!("[{i}]")),
                    None => out.push_str("[*]"),
                }
            }
        }
    }
    if out.is_empty() {
        out.push('$');
    }
    out
}

/// The volatile form both values share, if they share one; times must also lie near the
/// start of their own exchange (a `created_at` of last year is data, not the clock).
fn same_form(recorded: &str, now: &str, (rec_at, now_at): (i64, i64)) -> Option<Form> {
    let form = volatile::form_of(recorded)?;
    if form == Form::Redacted {
        // Recorded with the secret redacted: whatever the target sends now matches.
        return Some(form);
    }
    if volatile::form_of(now)? != form {
        return None;
    }
    if form.is_time() {
        let near = |v: &str, at: i64| {
            at == 0 || volatile::timestamp_ns(v).is_some_and(|t| t.abs_diff(at) <= NEAR_NS as u64)
        };
        if !(near(recorded, rec_at) && near(now, now_at)) {
            return None;
        }
    }
    if form == Form::Token && recorded.len() != now.len() {
        // Random tokens of one generator have one length; a changed word does not.
        return None;
    }
    Some(form)
}

/// Which request an exchange answered, for noise learning: method, target and body.
fn request_key(ex: &Exchange) -> [u8; 32] {
    let mut h = blake3::Hasher::new();
    h.update(ex.request.method.as_bytes());
    h.update(b" ");
    h.update(ex.request.target.as_bytes());
    h.update(b"\n");
    h.update(&ex.request.body.data);
    *h.finalize().as_bytes()
}

/// [`Rules::learn`] fed one exchange at a time, as a recording is read: it keeps the first
/// answer to each distinct request only, not the whole sample (holding a `replay --to`
/// sample of 20,000 exchanges to learn from was ~3% of a `--speed max` run, in page faults
/// and frees).
pub(crate) struct Learner {
    bare: Rules,
    first: HashMap<[u8; 32], Exchange>,
}

impl Learner {
    pub(crate) fn new() -> Learner {
        Learner {
            bare: Rules::bare(),
            first: HashMap::new(),
        }
    }

    /// Learns what `ex` teaches into `rules`.
    pub(crate) fn add(&mut self, rules: &mut Rules, ex: Exchange) {
        if ex.response.is_none() {
            return;
        }
        match self.first.entry(request_key(&ex)) {
            std::collections::hash_map::Entry::Vacant(slot) => {
                slot.insert(ex);
            }
            std::collections::hash_map::Entry::Occupied(earlier) => {
                rules.learn_pair(&self.bare, earlier.get(), &ex);
            }
        }
    }

    /// Done: `rules` keep what was learned.
    pub(crate) fn finish(self, rules: &mut Rules) {
        rules.learned.retain(|_, paths| !paths.is_empty());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_paths_and_their_children() {
        let p = tokens("$.items[*].ts");
        assert!(pattern_matches(&p, &tokens("$.items[3].ts")));
        assert!(pattern_matches(&p, &tokens("grpc message 2 $.items[0].ts")));
        assert!(!pattern_matches(&p, &tokens("$.items[3].name")));
        assert!(pattern_matches(
            &tokens("$.meta"),
            &tokens("$.meta.generated.at")
        ));
        assert!(pattern_matches(
            &tokens("header x-build"),
            &tokens("header x-build")
        ));
        assert!(!pattern_matches(
            &tokens("header x-build"),
            &tokens("header x-other")
        ));
        assert_eq!(
            tokens("$[\"a b\"][2]"),
            vec![Token::Key("a b".into()), Token::Index(Some(2))]
        );
    }

    #[test]
    fn normalise_replaces_indices_and_message_numbers() {
        assert_eq!(normalise("$.items[12].ts"), "$.items[*].ts");
        assert_eq!(normalise("grpc message 2 $.a[0]"), "grpc message * $.a[*]");
        assert_eq!(normalise("ws frame 3"), "ws frame *");
        assert_eq!(normalise("body line 3"), "body line 3");
    }

    #[test]
    fn forms_need_both_sides_and_times_near_their_exchange() {
        let t = 1_796_133_600_000_000_000;
        assert_eq!(
            same_form("2026-12-01T14:00:00Z", "2026-12-01T15:00:00Z", (t, t)),
            Some(Form::DateTime)
        );
        assert_eq!(
            same_form("2020-01-01T00:00:00Z", "2026-12-01T15:00:00Z", (t, t)),
            None
        );
        assert_eq!(
            same_form("1796133600", "1796133601", (t, t)),
            Some(Form::EpochDigits)
        );
        assert_eq!(same_form("user-3", "User Three", (t, t)), None);
        let u = "3f2a1c9e-1b2c-4d5e-8f90-123456789abc";
        assert_eq!(same_form(u, "1796133600", (t, t)), None);
    }

    #[test]
    fn endpoints_match_with_or_without_method() {
        assert!(endpoint_matches("GET /users/{id}", "GET /users/{id}"));
        assert!(endpoint_matches("/users/{id}", "GET /users/{id}"));
        assert!(endpoint_matches("* /users/{id}", "POST /users/{id}"));
        assert!(!endpoint_matches("POST /users/{id}", "GET /users/{id}"));
    }
}
