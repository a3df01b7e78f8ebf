//! Inference over small built recordings.

use bytes::Bytes;

use super::*;
use crate::model::{Body, Exchange, Header, Request, Response, Timings};

fn exchange(
    conn: u64,
    method: &str,
    target: &str,
    req_body: &str,
    status: u16,
    resp_body: &str,
) -> Exchange {
    let mut headers = vec![Header::new("Host", "api")];
    if !req_body.is_empty() {
        headers.push(Header::new("Content-Type", "application/json"));
    }
    Exchange {
        connection_id: conn,
        request: Request {
            method: method.into(),
            target: target.into(),
            version: "HTTP/1.1".into(),
            headers,
            body: Body::full(Bytes::from(req_body.to_string())),
            trailers: vec![],
        },
        response: Some(Response {
            status,
            reason: "OK".into(),
            version: "HTTP/1.1".into(),
            headers: vec![Header::new("Content-Type", "application/json")],
            body: Body::full(Bytes::from(resp_body.to_string())),
            trailers: vec![],
        }),
        timings: Timings {
            response_end_ns: Some(1_500_000),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn infer(exchanges: &[Exchange]) -> Inferred {
    let mut b = TemplateBuilder::default();
    for ex in exchanges {
        b.add(&ex.request.method, path_of(&ex.request.target));
    }
    let mut a = Analyzer::new(b.finish(), InferConfig::default());
    for ex in exchanges {
        a.add(ex);
    }
    a.finish().unwrap()
}

fn recording() -> Vec<Exchange> {
    let mut out = vec![];
    for c in 0..4u64 {
        let token = format!("tok-{c}-5f3a9c2e7b1d");
        let mut login = exchange(
            c,
            "POST",
            "/login",
            r#"{"user":"ada","password":"hunter22"}"#,
            200,
            &format!(r#"{{"token":"{token}"}}"#),
        );
        login.request.headers.push(Header::new(
            "X-Request-Id",
            format!("9b2f6c1e-8d1a-4c3b-9f2e-1a2b3c4d5e{c:02}"),
        ));
        out.push(login);
        let id = 100 + c;
        let mut create = exchange(
            c,
            "POST",
            "/users",
            &format!(r#"{{"name":"u{c}","ts":"2024-05-0{}T10:00:00Z"}}"#, c + 1),
            201,
            &format!(r#"{{"id":{id},"name":"u{c}"}}"#),
        );
        create
            .request
            .headers
            .push(Header::new("Authorization", format!("Bearer {token}")));
        out.push(create);
        let mut get = exchange(
            c,
            "GET",
            &format!("/users/{id}?_={}", 1700000000000u64 + c),
            "",
            200,
            &format!(r#"{{"id":{id},"name":"u{c}"}}"#),
        );
        get.request
            .headers
            .push(Header::new("Authorization", format!("Bearer {token}")));
        out.push(get);
        out.push(exchange(c, "GET", "/users/me", "", 200, r#"{"me":true}"#));
    }
    out
}

#[test]
fn infers_templates_noise_flows_and_redacts() {
    let r = infer(&recording());
    let templates: Vec<&str> = r
        .set
        .endpoints
        .iter()
        .map(|e| e.template.as_str())
        .collect();
    assert_eq!(templates, ["/users/me", "/users/{id}", "/login", "/users"]);
    let get = r
        .set
        .endpoints
        .iter()
        .find(|e| e.template == "/users/{id}")
        .unwrap();
    assert_eq!(get.matchers.ignore_query, ["_"]);
    let post = r
        .set
        .endpoints
        .iter()
        .find(|e| e.template == "/users" && e.method == "POST")
        .unwrap();
    assert_eq!(post.matchers.ignore_json, ["ts"]);
    let login = r
        .set
        .endpoints
        .iter()
        .find(|e| e.template == "/login")
        .unwrap();
    assert_eq!(login.matchers.ignore_headers, ["X-Request-Id"]);
    let flows = &r.set.sequences.flows;
    assert!(
        flows.iter().any(|f| f.from == "POST /users"
            && f.from_field == "id"
            && f.to == "GET /users/{id}"
            && f.to_location == "path.id"),
        "{flows:?}"
    );
    assert!(
        flows
            .iter()
            .any(|f| f.from == "POST /login" && f.to_location == "header.Authorization"),
        "{flows:?}"
    );
    assert!(r
        .set
        .sequences
        .ordering
        .iter()
        .any(|o| o.before == "POST /login" && o.after == "GET /users/{id}" && o.support == 4));
    for (name, data) in &r.files {
        let text = String::from_utf8_lossy(data);
        assert!(
            !text.contains("hunter22") && !text.contains("5f3a9c2e7b1d"),
            "secret in {name}:\n{text}"
        );
    }
    assert!(
        r.redactions.contains_key("json field password"),
        "{:?}",
        r.redactions
    );
    // Deterministic.
    assert_eq!(infer(&recording()).files, r.files);
}
