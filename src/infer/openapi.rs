//! OpenAPI 3.1 for the inferred HTTP endpoints (schemas are JSON Schema 2020-12, which 3.1
//! uses as is).

use serde_json::{json, Map, Value};

use crate::store::fixtures::Endpoint;
use crate::vocab;

fn param_schema(class: &str) -> Value {
    match class {
        "int" => json!({"type": "integer"}),
        "uuid" => json!({"type": "string", "format": "uuid"}),
        "date" => json!({"type": "string", "format": "date"}),
        _ => json!({"type": "string"}),
    }
}

/// The response description: the status's standard reason phrase (one table, the `http`
/// crate's), or a neutral text for codes without one.
fn reason(status: &str) -> &'static str {
    status
        .parse()
        .map(vocab::reason_phrase)
        .ok()
        .filter(|r| !r.is_empty())
        .unwrap_or("Recorded response")
}

/// The OpenAPI document of `endpoints`.
pub(super) fn document<'a>(endpoints: impl Iterator<Item = &'a Endpoint>) -> Value {
    let mut paths = Map::new();
    const METHODS: &[&str] = &[
        "get", "put", "post", "delete", "options", "head", "patch", "trace",
    ];
    for ep in endpoints.filter(|e| METHODS.contains(&e.method.to_ascii_lowercase().as_str())) {
        let mut op = Map::new();
        op.insert("operationId".into(), json!(ep.name.replace('-', "_")));
        op.insert(
            "summary".into(),
            json!(format!(
                "{} {} ({} recorded)",
                ep.method, ep.template, ep.profile.count
            )),
        );
        let mut params: Vec<Value> = ep
            .params
            .iter()
            .map(|(n, c)| json!({"name": n, "in": "path", "required": true, "schema": param_schema(c)}))
            .collect();
        for (q, required) in &ep.query {
            params.push(json!({"name": q, "in": "query", "required": required, "schema": {"type": "string"}}));
        }
        if !params.is_empty() {
            op.insert("parameters".into(), Value::Array(params));
        }
        if let Some(schema) = &ep.request_schema {
            op.insert(
                "requestBody".into(),
                json!({"required": true, "content": {"application/json": {"schema": schema}}}),
            );
        }
        let mut responses = Map::new();
        for status in ep
            .profile
            .statuses
            .keys()
            .filter(|s| s.len() == 3 && s.bytes().all(|b| b.is_ascii_digit()))
        {
            let mut r = Map::new();
            r.insert("description".into(), json!(reason(status)));
            if let Some(schema) = ep.response_schemas.get(status) {
                r.insert(
                    "content".into(),
                    json!({"application/json": {"schema": schema}}),
                );
            }
            responses.insert(status.clone(), Value::Object(r));
        }
        if responses.is_empty() {
            responses.insert(
                "default".into(),
                json!({"description": "No response was recorded"}),
            );
        }
        op.insert("responses".into(), Value::Object(responses));
        let item = paths
            .entry(ep.template.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(item) = item {
            item.insert(ep.method.to_ascii_lowercase(), Value::Object(op));
        }
    }
    json!({
        "openapi": "3.1.0",
        "info": {"title": "API inferred by mf", "version": "1.0.0"},
        "paths": paths,
    })
}
