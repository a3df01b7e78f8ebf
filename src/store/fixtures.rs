//! The fixtures folder: mf's committed, reviewable form of a recording (written by `mf infer`,
//! served by `mf replay DIR`).
//!
//! Layout (format 1):
//! ```text
//! index.yaml                     format, exchange count, one line per endpoint
//! endpoints/<name>.yaml          matchers, profile, schemas, examples of one endpoint template
//! bodies/<name>/<example>.*      example bodies: .json (pretty, sorted keys), .txt, .bin
//! sequences.yaml                 ordering rules, transitions, value flows, retries
//! openapi.yaml                   OpenAPI 3.1 of the HTTP endpoints
//! ```
//! Every map is written with sorted keys and nothing depends on the time of the run, so the
//! same recording always gives the same bytes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Version of the folder layout written by this build; a newer folder is refused.
pub const FORMAT: u32 = 1;

/// Why a fixtures folder cannot be written or read.
#[derive(Debug, thiserror::Error)]
pub enum FixturesError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid { path: PathBuf, reason: String },
    #[error(
        "{path}: fixtures format {found}, this mf understands up to {FORMAT}; please update mf"
    )]
    TooNew { path: PathBuf, found: u32 },
    #[error("{path}: directory is not empty and holds no index.yaml; refusing to write fixtures into it")]
    NotFixtures { path: PathBuf },
}

/// `index.yaml`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    pub format: u32,
    /// Exchanges the fixtures were inferred from.
    pub exchanges: u64,
    pub endpoints: Vec<IndexEntry>,
    /// Paths of answer values that `mf diff` and `mf replay --to` do not compare, for every
    /// endpoint (`$.meta.build`, `$.items[*].updated_at`, `header x-build`). Written by hand.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
}

/// One endpoint line of the index.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct IndexEntry {
    pub name: String,
    pub method: String,
    pub template: String,
    pub count: u64,
    pub file: String,
}

/// `endpoints/<name>.yaml`: one endpoint template.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Endpoint {
    pub format: u32,
    pub name: String,
    pub method: String,
    /// Path with `{param}` segments, e.g. `/users/{id}`.
    pub template: String,
    /// Path parameter name → value class (`int`, `uuid`, `hex`, `date`, `slug`).
    #[serde(default)]
    pub params: BTreeMap<String, String>,
    #[serde(default)]
    pub matchers: Matchers,
    #[serde(default)]
    pub profile: Profile,
    /// Query parameter name → required (present in every request).
    #[serde(default)]
    pub query: BTreeMap<String, bool>,
    /// JSON Schema of request bodies, when they are JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_schema: Option<serde_json::Value>,
    /// Status → JSON Schema of response bodies.
    #[serde(default)]
    pub response_schemas: BTreeMap<String, serde_json::Value>,
    pub examples: Vec<Example>,
    /// Paths of answer values that `mf diff` and `mf replay --to` do not compare for this
    /// endpoint, as in [`Index::ignore`].
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
}

/// Request parts replay ignores because they vary across otherwise identical requests.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Matchers {
    #[serde(default)]
    pub ignore_query: Vec<String>,
    /// Dotted JSON paths in the request body (`meta.nonce`).
    #[serde(default)]
    pub ignore_json: Vec<String>,
    #[serde(default)]
    pub ignore_headers: Vec<String>,
}

/// Traffic profile of an endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    pub count: u64,
    /// Status (or `error`) → count.
    pub statuses: BTreeMap<String, u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_ms: Option<Latency>,
    pub request_bytes: Sizes,
    pub response_bytes: Sizes,
}

/// Latency percentiles in milliseconds.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Latency {
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
}

/// Body size summary in bytes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sizes {
    pub min: u64,
    pub avg: u64,
    pub max: u64,
}

/// One representative exchange of an endpoint.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Example {
    pub name: String,
    pub request: ExampleRequest,
    pub response: ExampleResponse,
}

/// The request of an example.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExampleRequest {
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// `Name: value`, in recorded order.
    #[serde(default)]
    pub headers: Vec<String>,
    /// Body file, relative to the fixtures folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// The response of an example.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ExampleResponse {
    pub status: u16,
    /// `Name: value`, in recorded order.
    #[serde(default)]
    pub headers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
}

/// `sequences.yaml`: how clients walk through the API.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Sequences {
    pub format: u32,
    /// How sessions were told apart.
    pub session_key: String,
    pub sessions: u64,
    pub ordering: Vec<OrderingRule>,
    pub transitions: Vec<Transition>,
    pub flows: Vec<ValueFlow>,
    pub retries: Vec<Retry>,
}

/// "`before` precedes `after` in `holds` of `support` sessions".
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct OrderingRule {
    pub before: String,
    pub after: String,
    /// Sessions that contain `after`.
    pub support: u64,
    /// Of those, sessions where `before` came first.
    pub holds: u64,
    pub confidence: f64,
}

/// Endpoint transition within sessions.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Transition {
    pub from: String,
    pub to: String,
    pub count: u64,
    /// Share of the transitions leaving `from`.
    pub probability: f64,
}

/// A value from one response that reappears in a later request of the same session.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ValueFlow {
    /// Endpoint (`POST /users`) whose response carried the value.
    pub from: String,
    /// Dotted JSON path in that response.
    pub from_field: String,
    pub to: String,
    /// Where it reappeared: `path.id`, `query.x`, `header.Authorization`, `body.user_id`.
    pub to_location: String,
    pub count: u64,
}

/// Requests sent again after a 5xx or a failure.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Retry {
    pub endpoint: String,
    /// `503`, `error`…
    pub after: String,
    pub count: u64,
}

/// A whole fixtures folder in memory.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct FixtureSet {
    pub index: Index,
    pub endpoints: Vec<Endpoint>,
    /// Body files: path relative to the folder → bytes.
    pub bodies: BTreeMap<String, Vec<u8>>,
    pub sequences: Sequences,
    /// The OpenAPI document (not read back: replay does not need it).
    pub openapi: serde_json::Value,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> FixturesError + '_ {
    move |source| FixturesError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// JSON with object keys sorted at every level (serde_json keeps insertion order here).
pub fn sorted_json(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            Value::Object(
                keys.into_iter()
                    .map(|k| (k.clone(), sorted_json(&map[k])))
                    .collect(),
            )
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted_json).collect()),
        other => other.clone(),
    }
}

fn yaml<T: Serialize>(path: &Path, v: &T) -> Result<Vec<u8>, FixturesError> {
    serde_norway::to_string(v)
        .map(String::into_bytes)
        .map_err(|e| FixturesError::Invalid {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// Every file of the folder, relative path → bytes, in a stable order.
///
/// # Errors
/// Serialisation failures (which would be a bug).
pub fn render(set: &FixtureSet) -> Result<BTreeMap<String, Vec<u8>>, FixturesError> {
    let here = Path::new(".");
    let mut files = BTreeMap::new();
    files.insert("index.yaml".to_string(), yaml(here, &set.index)?);
    for ep in &set.endpoints {
        let mut ep = ep.clone();
        ep.request_schema = ep.request_schema.as_ref().map(sorted_json);
        for s in ep.response_schemas.values_mut() {
            *s = sorted_json(s);
        }
        files.insert(format!("endpoints/{}.yaml", ep.name), yaml(here, &ep)?);
    }
    for (k, v) in &set.bodies {
        files.insert(k.clone(), v.clone());
    }
    files.insert("sequences.yaml".to_string(), yaml(here, &set.sequences)?);
    files.insert(
        "openapi.yaml".to_string(),
        yaml(here, &sorted_json(&set.openapi))?,
    );
    Ok(files)
}

/// Writes `files` (from [`render`]) into `dir`, replacing an earlier fixtures folder there.
///
/// # Errors
/// `dir` is a non-empty folder that is not a fixtures folder, or a file cannot be written.
pub fn write_dir(dir: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<(), FixturesError> {
    if dir.exists() {
        let mut entries = std::fs::read_dir(dir).map_err(io_err(dir))?;
        let empty = entries.next().is_none();
        if !empty && !dir.join("index.yaml").exists() {
            return Err(FixturesError::NotFixtures {
                path: dir.to_path_buf(),
            });
        }
        // Stale endpoints of an earlier run must not survive next to the new ones.
        for sub in ["endpoints", "bodies"] {
            let p = dir.join(sub);
            if p.exists() {
                std::fs::remove_dir_all(&p).map_err(io_err(&p))?;
            }
        }
    }
    for (rel, data) in files {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        std::fs::write(&path, data).map_err(io_err(&path))?;
    }
    Ok(())
}

/// Adds one endpoint and its body files (paths under `bodies/<endpoint name>/`) to the
/// fixtures folder `dir`, under a name no endpoint there has yet, and lists it in
/// `index.yaml` as inferred from `exchanges` more exchanges. Returns the endpoint file's path
/// relative to `dir`. The index is replaced atomically, so a reader never sees half of it.
///
/// # Errors
/// `dir` holds no readable index, a body path leaves the folder, or a file cannot be written.
pub fn add_endpoint(
    dir: &Path,
    mut endpoint: Endpoint,
    bodies: BTreeMap<String, Vec<u8>>,
    exchanges: u64,
) -> Result<String, FixturesError> {
    let index_path = dir.join("index.yaml");
    let mut index: Index = read_yaml(&index_path)?;
    let base = endpoint.name.clone();
    let mut name = base.clone();
    let taken = |n: &str| {
        index.endpoints.iter().any(|e| e.name == n)
            || dir.join("endpoints").join(format!("{n}.yaml")).exists()
    };
    let mut suffix = 2;
    while taken(&name) {
        name = format!("{base}-{suffix}");
        suffix += 1;
    }
    let (old_prefix, new_prefix) = (format!("bodies/{base}/"), format!("bodies/{name}/"));
    let moved = |rel: &str| match rel.strip_prefix(&old_prefix) {
        Some(rest) => format!("{new_prefix}{rest}"),
        None => rel.to_string(),
    };
    for ex in &mut endpoint.examples {
        for body in [&mut ex.request.body, &mut ex.response.body]
            .into_iter()
            .flatten()
        {
            *body = moved(body);
        }
    }
    endpoint.name = name.clone();
    for (rel, data) in &bodies {
        let rel = moved(rel);
        if !inside(&rel) {
            return Err(FixturesError::Invalid {
                path: dir.to_path_buf(),
                reason: format!("body file {rel:?} is outside the fixtures folder"),
            });
        }
        let path = dir.join(&rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err(parent))?;
        }
        std::fs::write(&path, data).map_err(io_err(&path))?;
    }
    let file = format!("endpoints/{name}.yaml");
    let path = dir.join(&file);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err(parent))?;
    }
    std::fs::write(&path, yaml(&path, &endpoint)?).map_err(io_err(&path))?;
    index.exchanges += exchanges;
    index.endpoints.push(IndexEntry {
        name,
        method: endpoint.method.clone(),
        template: endpoint.template.clone(),
        count: endpoint.profile.count,
        file: file.clone(),
    });
    let tmp = dir.join(".index.yaml.new");
    std::fs::write(&tmp, yaml(&index_path, &index)?).map_err(io_err(&tmp))?;
    std::fs::rename(&tmp, &index_path).map_err(io_err(&index_path))?;
    Ok(file)
}

fn read_yaml<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, FixturesError> {
    let text = std::fs::read_to_string(path).map_err(io_err(path))?;
    serde_norway::from_str(&text).map_err(|e| FixturesError::Invalid {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })
}

/// True when `dir` looks like a fixtures folder.
pub fn is_fixtures_dir(dir: &Path) -> bool {
    dir.is_dir() && dir.join("index.yaml").is_file()
}

#[derive(Deserialize)]
struct FormatOnly {
    format: u32,
}

/// A relative path that stays inside the folder (no `..`, no root): fixture folders come from
/// pull requests, and replay must not read files elsewhere because one says so.
fn inside(rel: &str) -> bool {
    Path::new(rel)
        .components()
        .all(|c| matches!(c, std::path::Component::Normal(_)))
}

/// Reads a fixtures folder (index, endpoints with their bodies, sequences).
///
/// # Errors
/// Missing or malformed files, a body file outside the folder, or a newer format.
pub fn read_dir(dir: &Path) -> Result<FixtureSet, FixturesError> {
    let index_path = dir.join("index.yaml");
    let probe: FormatOnly = read_yaml(&index_path)?;
    if probe.format > FORMAT {
        return Err(FixturesError::TooNew {
            path: index_path,
            found: probe.format,
        });
    }
    let index: Index = read_yaml(&index_path)?;
    let mut set = FixtureSet {
        index,
        ..Default::default()
    };
    for entry in &set.index.endpoints {
        if !inside(&entry.file) {
            return Err(FixturesError::Invalid {
                path: index_path,
                reason: format!(
                    "endpoint file {:?} is outside the fixtures folder",
                    entry.file
                ),
            });
        }
        let path = dir.join(&entry.file);
        let ep: Endpoint = read_yaml(&path)?;
        if ep.format > FORMAT {
            return Err(FixturesError::TooNew {
                path,
                found: ep.format,
            });
        }
        for ex in &ep.examples {
            for rel in [&ex.request.body, &ex.response.body].into_iter().flatten() {
                if !inside(rel) {
                    return Err(FixturesError::Invalid {
                        path: path.clone(),
                        reason: format!("body file {rel:?} is outside the fixtures folder"),
                    });
                }
                let body_path = dir.join(rel);
                let data = std::fs::read(&body_path).map_err(io_err(&body_path))?;
                set.bodies.insert(rel.clone(), data);
            }
        }
        set.endpoints.push(ep);
    }
    let seq_path = dir.join("sequences.yaml");
    if seq_path.exists() {
        set.sequences = read_yaml(&seq_path)?;
    }
    Ok(set)
}

/// An ignore file: `ignore:` and a list of paths, as in `index.yaml`.
#[derive(Deserialize)]
struct IgnoreFile {
    #[serde(default)]
    ignore: Vec<IgnoreRule>,
}

/// One rule of an ignore file: a path for every endpoint, or a path for one endpoint.
#[derive(Deserialize)]
#[serde(untagged)]
enum IgnoreRule {
    Everywhere(String),
    Endpoint { endpoint: String, path: String },
}

/// The `ignore:` rules of a fixtures folder (`index.yaml` for every endpoint, each endpoint
/// file for its endpoint, named `METHOD template`), or of a YAML file holding an `ignore:`
/// list whose items are paths or `{endpoint: "GET /users/{id}", path: "$.updated_at"}`.
///
/// # Errors
/// An unreadable or malformed folder or file.
pub fn read_ignore_rules(path: &Path) -> Result<Vec<(Option<String>, String)>, FixturesError> {
    if !path.is_dir() {
        let file: IgnoreFile = read_yaml(path)?;
        return Ok(file
            .ignore
            .into_iter()
            .map(|r| match r {
                IgnoreRule::Everywhere(p) => (None, p),
                IgnoreRule::Endpoint { endpoint, path } => (Some(endpoint), path),
            })
            .collect());
    }
    let set = read_dir(path)?;
    let mut rules: Vec<(Option<String>, String)> =
        set.index.ignore.iter().map(|p| (None, p.clone())).collect();
    for ep in &set.endpoints {
        let name = format!("{} {}", ep.method, ep.template);
        rules.extend(ep.ignore.iter().map(|p| (Some(name.clone()), p.clone())));
    }
    Ok(rules)
}

#[cfg(test)]
#[path = "fixtures_tests.rs"]
mod tests;
