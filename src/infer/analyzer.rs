//! The second pass of inference: whole exchanges in recording order, each folded into its
//! endpoint's accumulator and the session analysis, then the fixture set built from them.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::endpoint::{unique_name, Candidate, EndpointAcc};
use super::openapi;
use super::redact::Redactor;
use super::sequence::{self, hash_parts, hash_str, Observation, SequenceAnalyzer};
use super::template::{self, path_of, Templates};
use crate::model::{Exchange, HeaderList, Protocol};
use crate::store::fixtures::{self, FixtureSet, Index, FORMAT};
use crate::store::PatternRow;
use crate::vocab;
use crate::vocab::volatile::identifier_like;

/// JSON leaves looked at per body: enough for any API's fields, bounded for huge documents.
const MAX_LEAVES: usize = 200;

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

/// Request headers that say nothing about the API (their variation is not noise to learn).
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

/// The second pass: whole exchanges, one at a time.
pub struct Analyzer {
    templates: Templates,
    config: InferConfig,
    endpoints: Vec<EndpointAcc>,
    sequences: SequenceAnalyzer,
    redactor: Redactor,
    exchanges: u64,
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
        *acc.statuses.entry(status).or_insert(0) += 1;
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
            let value = h.value_str();
            if self.redactor.is_secret_header(&h.name) {
                secret_headers.push((h.name.as_str(), value.to_string()));
            } else if !BORING_HEADERS
                .iter()
                .any(|b| h.name.eq_ignore_ascii_case(b))
            {
                // The name is copied only the first time it is seen.
                match acc.header_var.get_mut(h.name.as_str()) {
                    Some(var) => var.add(&value),
                    None => acc
                        .header_var
                        .entry(h.name.to_string())
                        .or_default()
                        .add(&value),
                }
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
        let req_json = vocab::parse_json(&req.body.data);
        if let Some(v) = &req_json {
            for (p, val) in &vocab::json_leaves(v, MAX_LEAVES) {
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
            if let Some(v) = vocab::parse_json(&r.body.data) {
                for (p, val) in vocab::json_leaves(&v, MAX_LEAVES) {
                    if let Some(credential) = identifier_like(&p, &val, 2) {
                        obs.response_values.push((p, hash_str(&val), credential));
                    }
                }
                let shape = redacted_for_schema(&mut self.redactor, &v);
                acc.response_shapes.entry(r.status).or_default().add(&shape);
                resp_json = Some(v);
            }
        }
        obs.request_hash =
            hash_parts(&[req.method.as_bytes(), req.target.as_bytes(), &req.body.data]);
        obs.failure = match status {
            None => Some("error".into()),
            Some(s) if s >= 500 => Some(s.to_string()),
            _ => None,
        };
        self.sequences.observe(obs);

        // Examples: the first exchange of each (status, response shape), in recording order.
        let shape_key = match &resp_json {
            Some(Value::Object(m)) => {
                let mut parts: Vec<&[u8]> = m.keys().map(|k| k.as_bytes()).collect();
                parts.push(if req_json.is_some() { b"1" } else { b"0" });
                hash_parts(&parts)
            }
            Some(Value::Array(a)) => {
                hash_str(&format!("array{}{}", a.is_empty(), req_json.is_some()))
            }
            _ => hash_str(&format!("other{}", req_json.is_some())),
        };
        let key = (status.unwrap_or(0), shape_key);
        if acc.examples.len() < self.config.max_examples && acc.example_keys.insert(key) {
            acc.examples
                .push(Candidate::new(ex, path, &mut self.redactor));
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
                ignore: Vec::new(),
            },
            ..Default::default()
        };
        let mut http_endpoints = Vec::new();
        for (t, acc) in templates.list.iter().zip(accs) {
            if acc.count == 0 {
                continue;
            }
            let name = unique_name(&mut names, t);
            let streaming = acc.streaming;
            let (ep, entry) = acc.into_endpoint(t, name, &mut set.bodies);
            set.index.endpoints.push(entry);
            if !streaming {
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
