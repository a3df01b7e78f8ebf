//! Inference: exchanges in, a fixture set out — endpoint templates, schemas, profiles, noise,
//! sequence patterns, redaction. Pure functions over a stream: nothing here does I/O.
//!
//! Two passes over the recording: [`TemplateBuilder`] sees only `(method, target)` to cluster
//! paths into templates; [`Analyzer`] then sees whole exchanges one at a time and keeps
//! bounded per-template and per-session state, so memory does not grow with the recording.
//!
//! Imports: `model`, `store` (the fixture file types).

mod openapi;
pub mod redact;
pub mod schema;
pub mod sequence;
pub mod template;

use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde_json::Value;

use crate::model::{Exchange, HeaderList, Protocol};
use crate::store::fixtures::{
    self, Endpoint, Example, ExampleRequest, ExampleResponse, FixtureSet, Index, IndexEntry,
    Latency, Matchers, Profile, Sizes, FORMAT,
};
use crate::store::PatternRow;
use redact::Redactor;
use schema::Shape;
use sequence::{hash_str, Observation, SequenceAnalyzer};
pub use template::{TemplateBuilder, Templates};

/// Inference settings, validated by the CLI.
#[derive(Clone, Debug)]
pub struct InferConfig {
    /// Redact secrets (on by default).
    pub redact: bool,
    /// Extra header / query / JSON field names to redact.
    pub extra_redact: Vec<String>,
    /// Representative examples kept per endpoint.
    pub max_examples: usize,
}

impl Default for InferConfig {
    fn default() -> Self {
        InferConfig {
            redact: true,
            extra_redact: Vec::new(),
            max_examples: 6,
        }
    }
}

/// The result of inference.
#[derive(Debug)]
pub struct Inferred {
    pub set: FixtureSet,
    /// Every file of the fixtures folder, already scrubbed of secrets.
    pub files: BTreeMap<String, Vec<u8>>,
    /// Patterns for the recording's `patterns` table.
    pub patterns: Vec<PatternRow>,
    /// `header Authorization` → times redacted in the output.
    pub redactions: BTreeMap<String, u64>,
}

/// Why inference failed.
#[derive(Debug, thiserror::Error)]
pub enum InferError {
    #[error(transparent)]
    Fixtures(#[from] fixtures::FixturesError),
}

/// Path of a request target, without scheme, authority and query.
pub fn path_of(target: &str) -> &str {
    let mut t = target;
    for scheme in ["http://", "https://"] {
        if let Some(rest) = t.strip_prefix(scheme) {
            t = rest.find('/').map_or("/", |i| &rest[i..]);
        }
    }
    t.split_once('?').map_or(t, |(p, _)| p)
}

const DISTINCT_CAP: usize = 4096;
const MAX_LEAVES: usize = 200;
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
const BORING_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-connection",
    "accept-encoding",
    "user-agent",
    "accept",
    "content-type",
    "expect",
];
const DROP_REQUEST_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "upgrade",
    "proxy-connection",
    "date",
];
const DROP_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "date",
];

/// Values that differ on every request by construction: epoch times, RFC 3339 times, UUIDs,
/// long hex or random-looking strings.
fn noisy_value(v: &str) -> bool {
    let digits = v.bytes().all(|b| b.is_ascii_digit());
    (digits && (10..=19).contains(&v.len()))
        || schema::is_datetime(v)
        || template::is_uuid(v)
        || (v.len() >= 12 && v.bytes().all(|b| b.is_ascii_hexdigit()))
        || (v.len() >= 16
            && v.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
            && v.bytes().any(|b| b.is_ascii_digit())
            && v.bytes().any(|b| b.is_ascii_alphabetic()))
}

/// How one request part varies across requests of an endpoint.
#[derive(Debug)]
struct Var {
    occurrences: u64,
    distinct: HashSet<u64>,
    all_noisy: bool,
}

impl Default for Var {
    fn default() -> Self {
        Var {
            occurrences: 0,
            distinct: HashSet::new(),
            all_noisy: true,
        }
    }
}

impl Var {
    fn add(&mut self, v: &str) {
        self.occurrences += 1;
        if self.distinct.len() < DISTINCT_CAP {
            self.distinct.insert(hash_str(v));
        }
        self.all_noisy &= noisy_value(v);
    }

    fn is_noise(&self, name: &str) -> bool {
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

#[derive(Debug, Default)]
struct SizeAcc {
    min: u64,
    max: u64,
    sum: u64,
    n: u64,
}

impl SizeAcc {
    fn add(&mut self, v: u64) {
        self.min = if self.n == 0 { v } else { self.min.min(v) };
        self.max = self.max.max(v);
        self.sum += v;
        self.n += 1;
    }
    fn sizes(&self) -> Sizes {
        Sizes {
            min: self.min,
            avg: self.sum.checked_div(self.n).unwrap_or(0),
            max: self.max,
        }
    }
}

/// A chosen example, redacted, before it is named.
#[derive(Debug)]
struct Candidate {
    status: u16,
    path: String,
    query: Option<String>,
    req_headers: Vec<(String, String)>,
    req_body: Option<Body>,
    resp_headers: Vec<(String, String)>,
    resp_body: Option<Body>,
}

#[derive(Debug)]
enum Body {
    Json(Value),
    Text(String),
    Binary(Vec<u8>),
}

#[derive(Debug, Default)]
struct EndpointAcc {
    count: u64,
    statuses: BTreeMap<String, u64>,
    latencies_us: Vec<u32>,
    req_sizes: SizeAcc,
    resp_sizes: SizeAcc,
    query_presence: BTreeMap<String, u64>,
    query_var: BTreeMap<String, Var>,
    json_var: BTreeMap<String, Var>,
    header_var: BTreeMap<String, Var>,
    request_shape: Shape,
    request_json: u64,
    response_shapes: BTreeMap<u16, Shape>,
    examples: Vec<Candidate>,
    example_keys: BTreeSet<(u16, u64)>,
    streaming: bool,
}

/// The second pass: whole exchanges, one at a time.
pub struct Analyzer {
    templates: Templates,
    config: InferConfig,
    endpoints: Vec<EndpointAcc>,
    sequences: SequenceAnalyzer,
    redactor: Redactor,
    exchanges: u64,
}

fn parse_json(data: &[u8]) -> Option<Value> {
    let first = data.iter().find(|b| !b.is_ascii_whitespace())?;
    if !matches!(first, b'{' | b'[') {
        return None;
    }
    serde_json::from_slice(data).ok()
}

/// JSON leaves as `(dotted.path, text)`; array elements use `[]`.
fn leaves(v: &Value, prefix: &str, out: &mut Vec<(String, String)>) {
    if out.len() >= MAX_LEAVES {
        return;
    }
    let join = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    match v {
        Value::Object(map) => {
            for (k, item) in map {
                leaves(item, &join(k), out);
            }
        }
        Value::Array(items) => {
            for item in items.iter().take(50) {
                leaves(item, &join("[]"), out);
            }
        }
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        Value::Number(n) => out.push((prefix.to_string(), n.to_string())),
        Value::Bool(_) | Value::Null => {}
    }
}

fn decode_query(q: &str) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect()
}

/// A value worth following from a response into later requests.
fn identifier_like(field: &str, value: &str) -> Option<bool> {
    let leaf = field.rsplit('.').next().unwrap_or(field);
    let lower = leaf.to_ascii_lowercase();
    let credential = lower.contains("token") || lower.contains("session");
    let id_name = lower == "id"
        || lower.ends_with("_id")
        || leaf.ends_with("Id")
        || lower == "uuid"
        || lower.ends_with("key");
    let numeric = value.bytes().all(|b| b.is_ascii_digit());
    let long_enough = if numeric {
        value.len() >= 2
    } else {
        value.len() >= 4
    };
    (long_enough && (credential || id_name || template::is_uuid(value))).then_some(credential)
}

fn body_of(data: &[u8], redactor: &mut Redactor) -> Option<Body> {
    if data.is_empty() {
        return None;
    }
    if let Some(mut v) = parse_json(data) {
        redactor.json(&mut v);
        return Some(Body::Json(v));
    }
    match std::str::from_utf8(data) {
        Ok(t) if !t.contains('\0') => Some(Body::Text(t.to_string())),
        _ => Some(Body::Binary(data.to_vec())),
    }
}

fn headers_of(h: &[crate::model::Header], drop: &[&str]) -> Vec<(String, String)> {
    h.iter()
        .filter(|h| !drop.contains(&h.name.to_ascii_lowercase().as_str()))
        .map(|h| (h.name.clone(), h.value_str().into_owned()))
        .collect()
}

impl Analyzer {
    /// Starts the second pass over the templates of the first.
    pub fn new(templates: Templates, config: InferConfig) -> Analyzer {
        let endpoints = templates
            .list
            .iter()
            .map(|_| EndpointAcc::default())
            .collect();
        let redactor = Redactor::new(config.redact, &config.extra_redact);
        Analyzer {
            templates,
            config,
            endpoints,
            sequences: SequenceAnalyzer::default(),
            redactor,
            exchanges: 0,
        }
    }

    /// Feeds one exchange (in recording order).
    pub fn add(&mut self, ex: &Exchange) {
        self.exchanges += 1;
        let req = &ex.request;
        let path = path_of(&req.target);
        let Some(t) = self.templates.find(&req.method, path) else {
            return;
        };
        let template = &self.templates.list[t];
        let acc = &mut self.endpoints[t];
        acc.count += 1;
        acc.streaming |= matches!(ex.protocol(), Protocol::Grpc | Protocol::WebSocket);
        let status = ex.response.as_ref().map(|r| r.status);
        *acc.statuses
            .entry(status.map_or("error".to_string(), |s| s.to_string()))
            .or_insert(0) += 1;
        if let Some(ns) = ex.duration_ns() {
            acc.latencies_us
                .push(u32::try_from(ns / 1000).unwrap_or(u32::MAX));
        }
        acc.req_sizes.add(req.body.size);
        if let Some(r) = &ex.response {
            acc.resp_sizes.add(r.body.size);
        }

        let mut obs = Observation {
            template: t as u32,
            connection: ex.connection_id,
            ..Default::default()
        };
        for (value, name) in template::params_of(template, path) {
            obs.request_values
                .push((format!("path.{name}"), hash_str(value)));
        }
        // Query parameters: presence, variation, value flow.
        let query = decode_query(req.origin_form().split_once('?').map_or("", |(_, q)| q));
        let mut seen = BTreeSet::new();
        for (k, v) in &query {
            if seen.insert(k.clone()) {
                *acc.query_presence.entry(k.clone()).or_insert(0) += 1;
            }
            acc.query_var.entry(k.clone()).or_default().add(v);
            obs.request_values.push((format!("query.{k}"), hash_str(v)));
        }
        // Headers: variation (for the matchers), credentials (for sessions and flows).
        let mut secret_headers = Vec::new();
        for h in &req.headers {
            let lower = h.name.to_ascii_lowercase();
            let value = h.value_str();
            if self.redactor.is_secret_header(&h.name) {
                secret_headers.push((h.name.as_str(), value.to_string()));
            } else if !BORING_HEADERS.contains(&lower.as_str()) {
                acc.header_var
                    .entry(h.name.clone())
                    .or_default()
                    .add(&value);
            }
        }
        if let Some(auth) = req.headers.header_str("authorization") {
            let token = auth
                .split_once(' ')
                .map_or(auth.as_str(), |(_, t)| t)
                .trim()
                .to_string();
            obs.credential = Some(hash_str(&token));
            obs.request_values
                .push(("header.Authorization".into(), hash_str(&token)));
        } else if let Some(cookie) = req.headers.header_str("cookie") {
            if let Some((_, v)) = cookie.split(';').next().and_then(|c| c.split_once('=')) {
                obs.credential = Some(hash_str(v.trim()));
                obs.request_values
                    .push(("header.Cookie".into(), hash_str(v.trim())));
            }
        }
        self.redactor.tally_headers(secret_headers.into_iter());
        // Request body.
        let req_json = parse_json(&req.body.data);
        if let Some(v) = &req_json {
            let mut l = Vec::new();
            leaves(v, "", &mut l);
            for (p, val) in &l {
                acc.json_var.entry(p.clone()).or_default().add(val);
                obs.request_values
                    .push((format!("body.{p}"), hash_str(val)));
            }
            acc.request_shape
                .add(&redacted_for_schema(&mut self.redactor, v));
            acc.request_json += 1;
        }
        // Response body.
        let mut resp_json = None;
        if let Some(r) = &ex.response {
            // A session cookie handed out here identifies the client in later requests.
            for v in r.headers.header_all("set-cookie") {
                let v = String::from_utf8_lossy(v);
                if let Some((_, value)) = v.split(';').next().and_then(|c| c.split_once('=')) {
                    obs.response_values.push((
                        "header.Set-Cookie".into(),
                        hash_str(value.trim()),
                        true,
                    ));
                }
            }
            if let Some(v) = parse_json(&r.body.data) {
                let mut l = Vec::new();
                leaves(&v, "", &mut l);
                for (p, val) in l {
                    if let Some(credential) = identifier_like(&p, &val) {
                        obs.response_values.push((p, hash_str(&val), credential));
                    }
                }
                let shape = redacted_for_schema(&mut self.redactor, &v);
                acc.response_shapes.entry(r.status).or_default().add(&shape);
                resp_json = Some(v);
            }
        }
        obs.request_hash = {
            let mut s = format!("{} {}\n", req.method, req.target);
            s.push_str(&String::from_utf8_lossy(&req.body.data));
            hash_str(&s)
        };
        obs.failure = match status {
            None => Some("error".into()),
            Some(s) if s >= 500 => Some(s.to_string()),
            _ => None,
        };
        self.sequences.observe(obs);

        // Examples: the first exchange of each (status, response shape), in recording order.
        let shape_key = match &resp_json {
            Some(Value::Object(m)) => {
                let keys: Vec<&String> = m.keys().collect();
                hash_str(&format!("{keys:?}{}", req_json.is_some()))
            }
            Some(Value::Array(a)) => {
                hash_str(&format!("array{}{}", a.is_empty(), req_json.is_some()))
            }
            _ => hash_str(&format!("other{}", req_json.is_some())),
        };
        let key = (status.unwrap_or(0), shape_key);
        if acc.examples.len() < self.config.max_examples && acc.example_keys.insert(key) {
            let mut req_headers = headers_of(&req.headers, DROP_REQUEST_HEADERS);
            self.redactor.headers(&mut req_headers);
            let query = req.query().map(|q| self.redactor.query(q));
            let req_body = body_of(&req.body.data, &mut self.redactor);
            let (resp_headers, resp_body) = match &ex.response {
                Some(r) => {
                    let mut h = headers_of(&r.headers, DROP_RESPONSE_HEADERS);
                    self.redactor.headers(&mut h);
                    (h, body_of(&r.body.data, &mut self.redactor))
                }
                None => (vec![], None),
            };
            acc.examples.push(Candidate {
                status: status.unwrap_or(502),
                path: path.to_string(),
                query,
                req_headers,
                req_body,
                resp_headers,
                resp_body,
            });
        }
    }

    /// Exchanges seen so far.
    pub fn exchanges(&self) -> u64 {
        self.exchanges
    }

    /// Builds the fixture set, its files and the patterns.
    ///
    /// # Errors
    /// Serialisation failures.
    pub fn finish(self) -> Result<Inferred, InferError> {
        let Analyzer {
            templates,
            endpoints: accs,
            sequences,
            mut redactor,
            exchanges,
            ..
        } = self;
        let labels: Vec<String> = templates
            .list
            .iter()
            .map(|t| format!("{} {}", t.method, t.path))
            .collect();
        let mut names: BTreeSet<String> = BTreeSet::new();
        let mut set = FixtureSet {
            index: Index {
                format: FORMAT,
                exchanges,
                endpoints: vec![],
            },
            ..Default::default()
        };
        let mut http_endpoints = Vec::new();
        for (t, mut acc) in templates.list.iter().zip(accs) {
            if acc.count == 0 {
                continue;
            }
            let name = unique_name(&mut names, t);
            let mut ep = Endpoint {
                format: FORMAT,
                name: name.clone(),
                method: t.method.clone(),
                template: t.path.clone(),
                params: t
                    .segments
                    .iter()
                    .filter_map(|s| match s {
                        template::Segment::Param(n, c) => Some((n.clone(), c.clone())),
                        template::Segment::Literal(_) => None,
                    })
                    .collect(),
                matchers: Matchers {
                    ignore_query: acc
                        .query_var
                        .iter()
                        .filter(|(k, v)| v.is_noise(k))
                        .map(|(k, _)| k.clone())
                        .collect(),
                    ignore_json: acc
                        .json_var
                        .iter()
                        .filter(|(k, v)| v.is_noise(k))
                        .map(|(k, _)| k.clone())
                        .collect(),
                    ignore_headers: acc
                        .header_var
                        .iter()
                        .filter(|(k, v)| v.is_noise(k))
                        .map(|(k, _)| k.clone())
                        .collect(),
                },
                profile: Profile {
                    count: acc.count,
                    statuses: acc.statuses.clone(),
                    latency_ms: latency(&mut acc.latencies_us),
                    request_bytes: acc.req_sizes.sizes(),
                    response_bytes: acc.resp_sizes.sizes(),
                },
                query: acc
                    .query_presence
                    .iter()
                    .map(|(k, n)| (k.clone(), *n == acc.count))
                    .collect(),
                request_schema: (acc.request_json > 0).then(|| acc.request_shape.to_schema()),
                response_schemas: acc
                    .response_shapes
                    .iter()
                    .map(|(s, sh)| (s.to_string(), sh.to_schema()))
                    .collect(),
                examples: vec![],
            };
            let mut used: BTreeMap<u16, u32> = BTreeMap::new();
            for c in acc.examples {
                let n = used.entry(c.status).or_insert(0);
                *n += 1;
                let ex_name = if *n == 1 {
                    c.status.to_string()
                } else {
                    format!("{}-{}", c.status, n)
                };
                let mut file = |body: Option<Body>, side: &str| {
                    body.map(|b| {
                        let (ext, data) = match b {
                            Body::Json(v) => {
                                let mut s =
                                    serde_json::to_string_pretty(&fixtures::sorted_json(&v))
                                        .unwrap_or_default();
                                s.push('\n');
                                ("json", s.into_bytes())
                            }
                            Body::Text(t) => ("txt", t.into_bytes()),
                            Body::Binary(b) => ("bin", b),
                        };
                        let rel = format!("bodies/{name}/{ex_name}.{side}.{ext}");
                        set.bodies.insert(rel.clone(), data);
                        rel
                    })
                };
                let req_body = file(c.req_body, "request");
                let resp_body = file(c.resp_body, "response");
                ep.examples.push(Example {
                    name: ex_name.clone(),
                    request: ExampleRequest {
                        path: c.path,
                        query: c.query,
                        headers: joined(c.req_headers),
                        body: req_body,
                    },
                    response: ExampleResponse {
                        status: c.status,
                        headers: joined(c.resp_headers),
                        body: resp_body,
                    },
                });
            }
            set.index.endpoints.push(IndexEntry {
                name: name.clone(),
                method: t.method.clone(),
                template: t.path.clone(),
                count: acc.count,
                file: format!("endpoints/{name}.yaml"),
            });
            if !acc.streaming {
                http_endpoints.push(set.endpoints.len());
            }
            set.endpoints.push(ep);
        }
        set.sequences = sequences.finish(&labels);
        set.openapi = openapi::document(http_endpoints.iter().map(|&i| &set.endpoints[i]));
        let files = fixtures::render(&set)?;
        redactor.counting = false;
        let files = files
            .into_iter()
            .map(|(k, v)| {
                let v = redactor.scrub(&v);
                (k, v)
            })
            .collect();
        let patterns = sequence::summaries(&set.sequences)
            .into_iter()
            .map(|(kind, summary, detail)| PatternRow {
                kind,
                summary,
                detail,
            })
            .collect();
        Ok(Inferred {
            set,
            files,
            patterns,
            redactions: redactor.report,
        })
    }
}

/// `v` with secrets replaced, so that no secret becomes an enum value of a schema.
fn redacted_for_schema<'a>(redactor: &mut Redactor, v: &'a Value) -> std::borrow::Cow<'a, Value> {
    if !redactor.has_secret_field(v) {
        return std::borrow::Cow::Borrowed(v);
    }
    let mut redacted = v.clone();
    redactor.counting = false;
    redactor.json(&mut redacted);
    redactor.counting = true;
    std::borrow::Cow::Owned(redacted)
}

fn joined(h: Vec<(String, String)>) -> Vec<String> {
    h.into_iter().map(|(n, v)| format!("{n}: {v}")).collect()
}

fn latency(v: &mut [u32]) -> Option<Latency> {
    if v.is_empty() {
        return None;
    }
    v.sort_unstable();
    let pick = |p: f64| {
        let i = ((p * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1;
        (v[i] as f64 / 1000.0 * 1000.0).round() / 1000.0
    };
    Some(Latency {
        p50: pick(0.50),
        p95: pick(0.95),
        p99: pick(0.99),
    })
}

/// `get-users-id`; unique, filesystem-safe, stable.
fn unique_name(used: &mut BTreeSet<String>, t: &template::Template) -> String {
    // Only ASCII survives, so the file name is portable and `truncate` cannot split a char.
    let mut base: String = t
        .method
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    for s in &t.segments {
        let part = match s {
            template::Segment::Literal(l) => l.clone(),
            template::Segment::Param(n, _) => n.clone(),
        };
        let clean: String = part
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .collect();
        base.push('-');
        base.push_str(clean.trim_matches('-'));
    }
    if t.segments.is_empty() {
        base.push_str("-root");
    }
    base.truncate(100);
    let mut name = base.clone();
    let mut i = 2;
    while !used.insert(name.clone()) {
        name = format!("{base}-{i}");
        i += 1;
    }
    name
}

#[cfg(test)]
mod tests;
