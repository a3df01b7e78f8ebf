//! What inference keeps per endpoint template while exchanges stream past — counts, sizes,
//! latencies, variation of each request part, body shapes, a few examples — and how that
//! becomes the endpoint's fixture (profile, matchers, schemas, named examples, body files).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::noise::Variation;
use super::redact::Redactor;
use super::schema::Shape;
use super::template::{Segment, Template};
use crate::model::{Exchange, Header};
use crate::store::fixtures::{
    self, Endpoint, Example, ExampleRequest, ExampleResponse, IndexEntry, Latency, Matchers,
    Profile, Sizes, FORMAT,
};
use crate::vocab;

/// Request headers an example does not keep: the transport's business, not the API's.
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
/// Response headers an example does not keep (replay computes them).
const DROP_RESPONSE_HEADERS: &[&str] = &[
    "connection",
    "keep-alive",
    "transfer-encoding",
    "content-length",
    "date",
];

/// Minimum, mean and maximum of a stream of sizes.
#[derive(Debug, Default)]
pub(super) struct SizeAcc {
    min: u64,
    max: u64,
    sum: u64,
    n: u64,
}

impl SizeAcc {
    pub(super) fn add(&mut self, v: u64) {
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
pub(super) struct Candidate {
    status: u16,
    path: String,
    query: Option<String>,
    req_headers: Vec<(String, String)>,
    req_body: Option<Body>,
    resp_headers: Vec<(String, String)>,
    resp_body: Option<Body>,
}

impl Candidate {
    /// The example of `ex` (whose path is `path`), with secrets redacted.
    pub(super) fn new(ex: &Exchange, path: &str, redactor: &mut Redactor) -> Candidate {
        let req = &ex.request;
        let mut req_headers = headers_of(&req.headers, DROP_REQUEST_HEADERS);
        redactor.headers(&mut req_headers);
        let query = req.query().map(|q| redactor.query(q));
        let req_body = body_of(&req.body.data, redactor);
        let (resp_headers, resp_body) = match &ex.response {
            Some(r) => {
                let mut h = headers_of(&r.headers, DROP_RESPONSE_HEADERS);
                redactor.headers(&mut h);
                (h, body_of(&r.body.data, redactor))
            }
            None => (vec![], None),
        };
        Candidate {
            // An exchange without a response replays as the gateway error it was.
            status: ex.response.as_ref().map_or(502, |r| r.status),
            path: path.to_string(),
            query,
            req_headers,
            req_body,
            resp_headers,
            resp_body,
        }
    }
}

/// An example body as it will be written: pretty JSON, text, or raw bytes.
#[derive(Debug)]
enum Body {
    Json(Value),
    Text(String),
    Binary(Vec<u8>),
}

fn body_of(data: &[u8], redactor: &mut Redactor) -> Option<Body> {
    if data.is_empty() {
        return None;
    }
    if let Some(mut v) = vocab::parse_json(data) {
        redactor.json(&mut v);
        return Some(Body::Json(v));
    }
    match std::str::from_utf8(data) {
        Ok(t) if !t.contains('\0') => Some(Body::Text(t.to_string())),
        _ => Some(Body::Binary(data.to_vec())),
    }
}

fn headers_of(h: &[Header], drop: &[&str]) -> Vec<(String, String)> {
    h.iter()
        .filter(|h| !drop.contains(&h.name.to_ascii_lowercase().as_str()))
        .map(|h| (h.name.to_string(), h.value_str().into_owned()))
        .collect()
}

/// Everything kept about one endpoint template; bounded whatever the recording's size
/// (examples by count, variations by [`Variation`]'s cap).
#[derive(Debug, Default)]
pub(super) struct EndpointAcc {
    pub(super) count: u64,
    /// Exchanges by answer status, `None` for no answer (labelled when the profile is made:
    /// a label per exchange was a `String` per exchange).
    pub(super) statuses: BTreeMap<Option<u16>, u64>,
    pub(super) latencies_us: Vec<u32>,
    pub(super) req_sizes: SizeAcc,
    pub(super) resp_sizes: SizeAcc,
    pub(super) query_presence: BTreeMap<String, u64>,
    pub(super) query_var: BTreeMap<String, Variation>,
    pub(super) json_var: BTreeMap<String, Variation>,
    pub(super) header_var: BTreeMap<String, Variation>,
    pub(super) request_shape: Shape,
    pub(super) request_json: u64,
    pub(super) response_shapes: BTreeMap<u16, Shape>,
    pub(super) examples: Vec<Candidate>,
    /// `(status, response shape)` of the examples kept, so each pair is kept once.
    pub(super) example_keys: BTreeSet<(u16, u64)>,
    /// gRPC or WebSocket: not part of the OpenAPI document.
    pub(super) streaming: bool,
}

fn noisy(vars: &BTreeMap<String, Variation>) -> Vec<String> {
    vars.iter()
        .filter(|(k, v)| v.is_noise(k))
        .map(|(k, _)| k.clone())
        .collect()
}

impl EndpointAcc {
    /// The fixture endpoint of template `t`, named `name`, and its index entry; the example
    /// bodies go into `bodies` under `bodies/NAME/`.
    pub(super) fn into_endpoint(
        mut self,
        t: &Template,
        name: String,
        bodies: &mut BTreeMap<String, Vec<u8>>,
    ) -> (Endpoint, IndexEntry) {
        let mut ep = Endpoint {
            format: FORMAT,
            name: name.clone(),
            method: t.method.clone(),
            template: t.path.clone(),
            params: t
                .segments
                .iter()
                .filter_map(|s| match s {
                    Segment::Param(n, c) => Some((n.clone(), c.clone())),
                    Segment::Literal(_) => None,
                })
                .collect(),
            matchers: Matchers {
                ignore_query: noisy(&self.query_var),
                ignore_json: noisy(&self.json_var),
                ignore_headers: noisy(&self.header_var),
            },
            profile: Profile {
                count: self.count,
                statuses: self
                    .statuses
                    .iter()
                    .map(|(s, n)| (s.map_or_else(|| "error".to_string(), |s| s.to_string()), *n))
                    .collect(),
                latency_ms: latency(&mut self.latencies_us),
                request_bytes: self.req_sizes.sizes(),
                response_bytes: self.resp_sizes.sizes(),
            },
            query: self
                .query_presence
                .iter()
                .map(|(k, n)| (k.clone(), *n == self.count))
                .collect(),
            request_schema: (self.request_json > 0).then(|| self.request_shape.to_schema()),
            response_schemas: self
                .response_shapes
                .iter()
                .map(|(s, sh)| (s.to_string(), sh.to_schema()))
                .collect(),
            examples: vec![],
            // Written by hand, for the diff: inference does not guess it.
            ignore: Vec::new(),
        };
        let mut used: BTreeMap<u16, u32> = BTreeMap::new();
        for c in self.examples {
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
                            let mut s = serde_json::to_string_pretty(&fixtures::sorted_json(&v))
                                .unwrap_or_default();
                            s.push('\n');
                            ("json", s.into_bytes())
                        }
                        Body::Text(t) => ("txt", t.into_bytes()),
                        Body::Binary(b) => ("bin", b),
                    };
                    let rel = format!("bodies/{name}/{ex_name}.{side}.{ext}");
                    bodies.insert(rel.clone(), data);
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
        let entry = IndexEntry {
            name: name.clone(),
            method: t.method.clone(),
            template: t.path.clone(),
            count: self.count,
            file: format!("endpoints/{name}.yaml"),
        };
        (ep, entry)
    }
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

/// `get-users-id`; unique among `used`, filesystem-safe, stable.
pub(super) fn unique_name(used: &mut BTreeSet<String>, t: &Template) -> String {
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
            Segment::Literal(l) => l.clone(),
            Segment::Param(n, _) => n.clone(),
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
