//! A fixtures folder as exchanges to send: every example of every endpoint, in the order of
//! the index, on one connection (the examples keep no timing, and sending them one after the
//! other keeps a create before the reads that follow it in the folder).

use bytes::Bytes;

use crate::model::{Body, Exchange, Header, Protocol, Request, Response};
use crate::store::fixtures::{ExampleResponse, FixtureSet};

/// The examples of `set` as recorded exchanges (request and the response they answered).
pub(crate) fn exchanges_from_fixtures(set: &FixtureSet) -> Vec<Exchange> {
    let body_of = |rel: &Option<String>| -> Bytes {
        rel.as_ref()
            .and_then(|r| set.bodies.get(r))
            .map(|b| Bytes::from(b.clone()))
            .unwrap_or_default()
    };
    let mut out = Vec::new();
    for endpoint in &set.endpoints {
        for ex in &endpoint.examples {
            let target = match &ex.request.query {
                Some(q) if !q.is_empty() => format!("{}?{q}", ex.request.path),
                _ => ex.request.path.clone(),
            };
            let seq = u32::try_from(out.len()).unwrap_or(u32::MAX);
            out.push(Exchange {
                id: i64::from(seq) + 1,
                seq,
                protocol: Some(Protocol::Http11),
                request: Request {
                    method: endpoint.method.clone().into(),
                    target: target.into(),
                    version: "HTTP/1.1".into(),
                    headers: header_lines(&ex.request.headers),
                    body: Body::full(body_of(&ex.request.body)),
                    trailers: Vec::new(),
                },
                response: Some(response(&ex.response, body_of(&ex.response.body))),
                ..Exchange::default()
            });
        }
    }
    out
}

fn response(r: &ExampleResponse, body: Bytes) -> Response {
    Response {
        status: r.status,
        reason: Default::default(),
        version: "HTTP/1.1".into(),
        headers: header_lines(&r.headers),
        body: Body::full(body),
        trailers: Vec::new(),
    }
}

/// `Name: value` lines; a line without a colon is no header and is skipped.
fn header_lines(lines: &[String]) -> Vec<Header> {
    lines
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| Header::new(n.trim(), v.trim()))
        .collect()
}
