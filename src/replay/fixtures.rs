//! Answers from a fixtures folder: template matching with path parameters, the example most
//! similar to the request (ignoring the fields inference found noisy), and — when stateful —
//! value flows honoured: what a `POST` created is what the matching `GET` returns.

use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use serde_json::Value;

use super::matcher::Incoming;
use super::source::{Answer, AnswerSource};
use crate::model::{Body, Header, Response};
use crate::store::fixtures::FixtureSet;
use crate::vocab::{json_leaves, parse_json};

#[derive(Debug)]
enum Seg {
    Literal(String),
    Param(String),
}

#[derive(Debug)]
struct LoadedExample {
    name: String,
    path: Vec<String>,
    query: Vec<(String, String)>,
    body: Option<Value>,
    raw_body: Vec<u8>,
    response: Response,
    response_json: Option<Value>,
}

#[derive(Debug)]
struct LoadedEndpoint {
    label: String,
    method: String,
    segments: Vec<Seg>,
    ignore_query: BTreeSet<String>,
    ignore_json: BTreeSet<String>,
    examples: Vec<LoadedExample>,
}

/// A flow replay honours: `from_field` of the source endpoint's response is the path
/// parameter `param` of `to`.
#[derive(Debug, Clone)]
struct Flow {
    from: String,
    from_field: String,
    to: String,
    param: String,
}

#[derive(Debug, Default)]
struct State {
    /// `(endpoint label, parameter value)` → body to serve.
    created: HashMap<(String, String), Value>,
    issued: BTreeSet<String>,
    counter: u64,
}

/// A fixtures folder ready to answer requests.
#[derive(Debug)]
pub struct FixtureSource {
    endpoints: Vec<LoadedEndpoint>,
    flows: Vec<Flow>,
    stateful: bool,
    state: Mutex<State>,
}

fn split_path(p: &str) -> Vec<String> {
    p.split('/')
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

fn parse_query(q: Option<&str>) -> Vec<(String, String)> {
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(&s.replace('+', " "))
            .decode_utf8_lossy()
            .into_owned()
    };
    let mut v: Vec<(String, String)> = q
        .unwrap_or("")
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (decode(k), decode(v)),
            None => (decode(p), String::new()),
        })
        .collect();
    v.sort();
    v
}

fn get_path<'a>(v: &'a Value, dotted: &str) -> Option<&'a Value> {
    dotted.split('.').try_fold(v, |cur, k| cur.get(k))
}

impl FixtureSource {
    /// Prepares `set` for serving.
    pub fn new(set: &FixtureSet, stateful: bool) -> FixtureSource {
        let mut endpoints = Vec::new();
        for ep in &set.endpoints {
            let segments = split_path(&ep.template)
                .into_iter()
                .map(
                    |s| match s.strip_prefix('{').and_then(|r| r.strip_suffix('}')) {
                        Some(name) => Seg::Param(name.to_string()),
                        None => Seg::Literal(s),
                    },
                )
                .collect();
            let examples = ep
                .examples
                .iter()
                .map(|ex| {
                    let body_of = |rel: &Option<String>| {
                        rel.as_ref()
                            .and_then(|r| set.bodies.get(r))
                            .cloned()
                            .unwrap_or_default()
                    };
                    let raw_body = body_of(&ex.request.body);
                    let resp_body = body_of(&ex.response.body);
                    let mut headers: Vec<Header> = ex
                        .response
                        .headers
                        .iter()
                        .filter_map(|h| h.split_once(':'))
                        .map(|(n, v)| Header::new(n.trim(), v.trim()))
                        .collect();
                    let status = ex.response.status;
                    if !(status < 200 || status == 204 || status == 304) {
                        headers.push(Header::new("Content-Length", resp_body.len().to_string()));
                    }
                    LoadedExample {
                        name: ex.name.clone(),
                        path: split_path(&ex.request.path),
                        query: parse_query(ex.request.query.as_deref()),
                        body: parse_json(&raw_body),
                        raw_body,
                        response_json: parse_json(&resp_body),
                        response: Response {
                            status: ex.response.status,
                            reason: (http::StatusCode::from_u16(status)
                                .ok()
                                .and_then(|c| c.canonical_reason())
                                .unwrap_or("Recorded")
                                .to_string())
                            .into(),
                            version: "HTTP/1.1".into(),
                            headers,
                            body: Body::full(resp_body),
                            trailers: vec![],
                        },
                    }
                })
                .collect();
            endpoints.push(LoadedEndpoint {
                label: format!("{} {}", ep.method, ep.template),
                method: ep.method.clone(),
                segments,
                ignore_query: ep.matchers.ignore_query.iter().cloned().collect(),
                ignore_json: ep.matchers.ignore_json.iter().cloned().collect(),
                examples,
            });
        }
        let flows = set
            .sequences
            .flows
            .iter()
            .filter_map(|f| {
                let param = f.to_location.strip_prefix("path.")?;
                (!f.from_field.contains("[]")).then(|| Flow {
                    from: f.from.clone(),
                    from_field: f.from_field.clone(),
                    to: f.to.clone(),
                    param: param.to_string(),
                })
            })
            .collect();
        FixtureSource {
            endpoints,
            flows,
            stateful,
            state: Mutex::new(State::default()),
        }
    }

    /// Number of endpoints.
    pub fn len(&self) -> usize {
        self.endpoints.len()
    }

    /// True when the folder has no endpoint.
    pub fn is_empty(&self) -> bool {
        self.endpoints.is_empty()
    }

    /// The most specific endpoint whose template matches: most literal segments wins.
    fn endpoint(&self, method: &str, path: &[String]) -> Option<&LoadedEndpoint> {
        self.endpoints
            .iter()
            .filter(|e| e.method == method && e.segments.len() == path.len())
            .filter(|e| {
                e.segments.iter().zip(path).all(|(s, p)| {
                    matches!(s, Seg::Param(_)) || matches!(s, Seg::Literal(l) if l == p)
                })
            })
            .max_by_key(|e| {
                (
                    e.segments
                        .iter()
                        .filter(|s| matches!(s, Seg::Literal(_)))
                        .count(),
                    std::cmp::Reverse(e.label.clone()),
                )
            })
    }

    fn score(
        ep: &LoadedEndpoint,
        ex: &LoadedExample,
        path: &[String],
        query: &[(String, String)],
        body: &[u8],
        json: &Option<Value>,
    ) -> i64 {
        let mut score = 0i64;
        score += 10 * ex.path.iter().zip(path).filter(|(a, b)| a == b).count() as i64;
        let relevant = |q: &[(String, String)]| {
            q.iter()
                .filter(|(k, _)| !ep.ignore_query.contains(k))
                .cloned()
                .collect::<Vec<_>>()
        };
        let (mine, theirs) = (relevant(&ex.query), relevant(query));
        score += 3 * mine.iter().filter(|p| theirs.contains(p)).count() as i64;
        score -= mine.iter().filter(|p| !theirs.contains(p)).count() as i64;
        match (&ex.body, json) {
            (Some(a), Some(b)) => {
                let strip = |v: &Value| {
                    // Both sides go through the same walker, so string leaves compare by value.
                    let mut l = json_leaves(v, usize::MAX);
                    l.retain(|(k, _)| !ep.ignore_json.contains(k));
                    l
                };
                let (la, lb) = (strip(a), strip(b));
                score += 2 * la.iter().filter(|p| lb.contains(p)).count() as i64;
                score -= la.iter().filter(|p| !lb.contains(p)).count() as i64;
            }
            _ if ex.raw_body == body => score += 5,
            _ => {}
        }
        score
    }

    fn stateful_answer(
        &self,
        ep: &LoadedEndpoint,
        ex: &LoadedExample,
        path: &[String],
        json: &Option<Value>,
    ) -> Option<Response> {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        // A GET (or any method) whose path parameter is a value an earlier response created.
        for flow in self.flows.iter().filter(|f| f.to == ep.label) {
            let Some(idx) = ep
                .segments
                .iter()
                .position(|s| matches!(s, Seg::Param(n) if *n == flow.param))
            else {
                continue;
            };
            if let Some(body) = state.created.get(&(ep.label.clone(), path[idx].clone())) {
                let mut r = ex.response.clone();
                if ex.response.status >= 400 {
                    // The recorded example was a miss; the created object exists now.
                    r.status = 200;
                }
                set_body(&mut r, body);
                return Some(r);
            }
        }
        // A response that creates a value later requests use: echo the request's fields into
        // the recorded answer and hand out an id not served before.
        let flows: Vec<&Flow> = self.flows.iter().filter(|f| f.from == ep.label).collect();
        // Only a POST creates; a GET that merely shows an id must not mint new ones.
        if flows.is_empty() || ep.method != "POST" {
            return None;
        }
        let mut body = ex.response_json.clone()?;
        if let (Value::Object(out), Some(Value::Object(input))) = (&mut body, json) {
            for (k, v) in input {
                if out.contains_key(k) && !ep.ignore_json.contains(k) {
                    out.insert(k.clone(), v.clone());
                }
            }
        }
        for flow in &flows {
            let Some(current) = get_path(&body, &flow.from_field).cloned() else {
                continue;
            };
            let key = current.to_string();
            let fresh = if state.issued.contains(&key) {
                state.counter += 1;
                match &current {
                    Value::Number(n) => {
                        Value::from(n.as_i64().unwrap_or(0) + 1_000_000 + state.counter as i64)
                    }
                    Value::String(s) => {
                        let keep: String = s
                            .chars()
                            .take(s.chars().count().saturating_sub(12))
                            .collect();
                        Value::String(format!("{keep}{:012x}", state.counter))
                    }
                    other => other.clone(),
                }
            } else {
                current
            };
            state.issued.insert(fresh.to_string());
            if let Some(slot) = flow
                .from_field
                .split('.')
                .try_fold(&mut body, |cur, k| cur.get_mut(k))
            {
                *slot = fresh.clone();
            }
            let value = match &fresh {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            state.created.insert((flow.to.clone(), value), body.clone());
        }
        let mut r = ex.response.clone();
        set_body(&mut r, &body);
        Some(r)
    }
}

fn set_body(r: &mut Response, body: &Value) {
    let mut text = serde_json::to_string_pretty(body).unwrap_or_default();
    text.push('\n');
    for h in r
        .headers
        .iter_mut()
        .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
    {
        h.value = crate::model::HeaderValue::from_slice(text.len().to_string().as_bytes());
    }
    r.body = Body::full(text.into_bytes());
}

impl AnswerSource for FixtureSource {
    fn answer(&self, req: &Incoming<'_>) -> Answer {
        let (path, query) = match req.target.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (req.target, None),
        };
        let path = split_path(path);
        let query = parse_query(query);
        let Some(ep) = self.endpoint(req.method, &path) else {
            let known: Vec<String> = self.endpoints.iter().map(|e| e.label.clone()).collect();
            return Answer::NotFound(serde_json::json!({
                "error": "no fixture endpoint matches this request",
                "request": {"method": req.method, "target": req.target},
                "endpoints": known,
            }));
        };
        let json = parse_json(req.body);
        let best = ep.examples.iter().enumerate().max_by_key(|(i, ex)| {
            (
                Self::score(ep, ex, &path, &query, req.body, &json),
                std::cmp::Reverse(*i),
            )
        });
        let Some((_, ex)) = best else {
            return Answer::NotFound(
                serde_json::json!({"error": "endpoint has no examples", "endpoint": ep.label}),
            );
        };
        let response = if self.stateful {
            self.stateful_answer(ep, ex, &path, &json)
        } else {
            None
        }
        .unwrap_or_else(|| ex.response.clone());
        Answer::Response {
            response,
            label: format!("{} example {}", ep.label, ex.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::{
        Endpoint, Example, ExampleRequest, ExampleResponse, Matchers, ValueFlow,
    };

    type Bodies = Vec<(String, Vec<u8>)>;

    fn example(
        name: &str,
        path: &str,
        query: Option<&str>,
        req: Option<&str>,
        status: u16,
        resp: &str,
    ) -> (Example, Vec<(String, Vec<u8>)>) {
        let mut bodies = vec![];
        let mut file = |side: &str, data: &str| {
            let rel = format!("bodies/{name}.{side}.json");
            bodies.push((rel.clone(), data.as_bytes().to_vec()));
            rel
        };
        let ex = Example {
            name: name.into(),
            request: ExampleRequest {
                path: path.into(),
                query: query.map(String::from),
                headers: vec![],
                body: req.map(|r| file("request", r)),
            },
            response: ExampleResponse {
                status,
                headers: vec!["Content-Type: application/json".into()],
                body: Some(file("response", resp)),
            },
        };
        (ex, bodies)
    }

    fn set() -> FixtureSet {
        let mut set = FixtureSet::default();
        let mut add = |method: &str,
                       template: &str,
                       ignore_json: Vec<String>,
                       exs: Vec<(Example, Bodies)>| {
            let mut ep = Endpoint {
                method: method.into(),
                template: template.into(),
                matchers: Matchers {
                    ignore_json,
                    ..Default::default()
                },
                ..Default::default()
            };
            for (ex, bodies) in exs {
                set.bodies.extend(bodies);
                ep.examples.push(ex);
            }
            set.endpoints.push(ep);
        };
        add(
            "GET",
            "/users/{id}",
            vec![],
            vec![
                example(
                    "u7",
                    "/users/7",
                    None,
                    None,
                    200,
                    r#"{"id":7,"name":"seven"}"#,
                ),
                example("u9", "/users/9", None, None, 404, r#"{"error":"nope"}"#),
            ],
        );
        add(
            "GET",
            "/users/me",
            vec![],
            vec![example(
                "me",
                "/users/me",
                None,
                None,
                200,
                r#"{"me":true}"#,
            )],
        );
        add(
            "POST",
            "/users",
            vec!["nonce".into()],
            vec![
                example(
                    "a",
                    "/users",
                    None,
                    Some(r#"{"name":"a","nonce":"1"}"#),
                    201,
                    r#"{"id":7,"name":"a"}"#,
                ),
                example(
                    "b",
                    "/users",
                    None,
                    Some(r#"{"name":"b","nonce":"2"}"#),
                    201,
                    r#"{"id":8,"name":"b"}"#,
                ),
            ],
        );
        set.sequences.flows.push(ValueFlow {
            from: "POST /users".into(),
            from_field: "id".into(),
            to: "GET /users/{id}".into(),
            to_location: "path.id".into(),
            count: 3,
        });
        set
    }

    fn ask(src: &FixtureSource, method: &str, target: &str, body: &str) -> (u16, Value) {
        match src.answer(&Incoming {
            method,
            target,
            body: body.as_bytes(),
        }) {
            Answer::Response { response, .. } => (
                response.status,
                serde_json::from_slice(&response.body.data).unwrap(),
            ),
            Answer::NotFound(v) => (404, v),
        }
    }

    #[test]
    fn literal_routes_win_and_examples_are_chosen_by_similarity() {
        let src = FixtureSource::new(&set(), false);
        assert_eq!(ask(&src, "GET", "/users/me", "").1["me"], true);
        assert_eq!(ask(&src, "GET", "/users/9", "").0, 404);
        assert_eq!(ask(&src, "GET", "/users/12345", "").1["id"], 7);
        // The nonce is ignored: the name decides.
        assert_eq!(
            ask(&src, "POST", "/users", r#"{"name":"b","nonce":"999"}"#).1["id"],
            8
        );
        let (status, report) = ask(&src, "DELETE", "/users/7", "");
        assert_eq!(status, 404);
        assert!(report["endpoints"].to_string().contains("GET /users/me"));
    }

    #[test]
    fn stateful_get_serves_what_the_post_created() {
        let src = FixtureSource::new(&set(), true);
        let (_, first) = ask(&src, "POST", "/users", r#"{"name":"zed","nonce":"x"}"#);
        let (_, second) = ask(&src, "POST", "/users", r#"{"name":"amy","nonce":"y"}"#);
        assert_ne!(first["id"], second["id"]);
        let (status, got) = ask(&src, "GET", &format!("/users/{}", second["id"]), "");
        assert_eq!((status, got["name"].as_str()), (200, Some("amy")));
        let (_, got) = ask(&src, "GET", &format!("/users/{}", first["id"]), "");
        assert_eq!(got["name"], "zed");
    }
}
