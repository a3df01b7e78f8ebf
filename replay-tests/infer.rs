//! Inference end to end: a realistic CRUD API driven by several simulated Python clients,
//! recorded through the real proxy, inferred into fixtures, validated, and served back to curl.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use mf::store::fixtures::{self, Endpoint, FixtureSet};
use serde_json::Value;

use crate::common::*;

const CLIENTS: usize = 10;

/// What the simulated clients report: the secrets they used and the ids they created.
struct Traffic {
    secrets: Vec<String>,
    exchanges: u64,
}

fn record_crud_traffic(db: &Path) -> Traffic {
    let upstream = start_python("crud_api.py", &[]);
    let mut recorder = start_recorder(&upstream.url(), db, &[]);
    let out = Command::new("python3")
        .arg(tests_dir().join("servers").join("crud_clients.py"))
        .arg(recorder.url())
        .arg(CLIENTS.to_string())
        .env("NO_PROXY", "*")
        .env_remove("HTTP_PROXY")
        .env_remove("http_proxy")
        .output()
        .expect("running crud_clients.py");
    assert!(
        out.status.success(),
        "clients failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("client report is JSON");
    let status = recorder.interrupt();
    assert!(status.success(), "recorder: {}", recorder.stderr());
    let strings = |k: &str| -> Vec<String> {
        report[k]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect()
    };
    let mut secrets = strings("passwords");
    secrets.extend(strings("tokens"));
    assert_eq!(secrets.len(), 2 * CLIENTS);
    Traffic {
        secrets,
        exchanges: report["exchanges"].as_u64().unwrap(),
    }
}

fn infer(db: &Path, out: &Path) -> String {
    let o = mf()
        .arg("infer")
        .arg(db)
        .arg("-o")
        .arg(out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(o.status.success(), "mf infer failed: {stderr}");
    stderr
}

fn files_of(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(
                    p.strip_prefix(dir).unwrap().to_path_buf(),
                    std::fs::read(&p).unwrap(),
                );
            }
        }
    }
    out
}

fn endpoint<'a>(set: &'a FixtureSet, method: &str, template: &str) -> &'a Endpoint {
    set.endpoints
        .iter()
        .find(|e| e.method == method && e.template == template)
        .unwrap_or_else(|| panic!("no endpoint {method} {template}"))
}

fn schema_prop<'a>(schema: &'a Value, name: &str) -> &'a Value {
    &schema["properties"][name]
}

fn required(schema: &Value) -> Vec<&str> {
    schema["required"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default()
}

#[test]
fn crud_traffic_infers_templates_schemas_patterns_and_replays() {
    require("curl");
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("rec.db");
    let traffic = record_crud_traffic(&db);
    assert!(
        traffic.exchanges >= 200,
        "only {} exchanges",
        traffic.exchanges
    );

    let fx = dir.path().join("fixtures");
    let stderr = infer(&db, &fx);
    assert!(stderr.contains("redacted header Authorization"), "{stderr}");
    assert!(stderr.contains("redacted json field password"), "{stderr}");
    let set = fixtures::read_dir(&fx).expect("fixtures folder reads back");
    assert_eq!(set.index.exchanges, traffic.exchanges);

    // Templates: ids merge, the literal /users/me does not.
    let labels: Vec<String> = set
        .endpoints
        .iter()
        .map(|e| format!("{} {}", e.method, e.template))
        .collect();
    for want in [
        "POST /login",
        "GET /users/me",
        "GET /users/{id}",
        "GET /users",
        "POST /users",
        "DELETE /users/{id}",
        "GET /orders/{id}",
        "GET /orders",
        "POST /orders",
        "GET /flaky",
    ] {
        assert!(
            labels.iter().any(|l| l == want),
            "{want} missing from {labels:?}"
        );
    }
    assert_eq!(labels.len(), 10, "{labels:?}");
    assert_eq!(endpoint(&set, "GET", "/users/{id}").params["id"], "int");
    assert_eq!(endpoint(&set, "GET", "/orders/{id}").params["id"], "uuid");
    let me = endpoint(&set, "GET", "/users/me");
    assert!(
        schema_prop(&me.response_schemas["200"], "username").is_object(),
        "/users/me has its own shape"
    );
    assert!(me.response_schemas["200"]["properties"]
        .get("email")
        .is_none());

    // Schemas: required/optional, formats, enums, nullable.
    let post_users = endpoint(&set, "POST", "/users");
    let created = &post_users.response_schemas["201"];
    for f in ["id", "uuid", "email", "created_at", "role", "status"] {
        assert!(
            required(created).contains(&f),
            "{f} should be required: {created}"
        );
    }
    assert_eq!(schema_prop(created, "uuid")["format"], "uuid");
    assert_eq!(schema_prop(created, "email")["format"], "email");
    assert_eq!(schema_prop(created, "created_at")["format"], "date-time");
    assert_eq!(
        schema_prop(created, "role")["enum"],
        serde_json::json!(["admin", "customer"])
    );
    assert_eq!(schema_prop(created, "id")["type"], "integer");
    assert_eq!(
        schema_prop(created, "nickname")["type"],
        serde_json::json!(["string", "null"])
    );
    let req_schema = post_users.request_schema.as_ref().unwrap();
    assert!(required(req_schema).contains(&"name"));
    assert!(
        !required(req_schema).contains(&"nickname"),
        "nickname is optional: {req_schema}"
    );
    assert!(post_users.profile.statuses.contains_key("422"));
    assert_eq!(
        endpoint(&set, "GET", "/users").query.get("page"),
        Some(&true)
    );

    // Noise: nonces, timestamps, cache busters and request ids are ignored; real fields are not.
    assert!(
        post_users
            .matchers
            .ignore_json
            .contains(&"nonce".to_string()),
        "{:?}",
        post_users.matchers
    );
    assert!(
        post_users
            .matchers
            .ignore_json
            .contains(&"client_ts".to_string()),
        "{:?}",
        post_users.matchers
    );
    assert!(!post_users
        .matchers
        .ignore_json
        .iter()
        .any(|f| f == "name" || f == "role"));
    assert!(post_users
        .matchers
        .ignore_headers
        .contains(&"X-Request-Id".to_string()));
    let list = endpoint(&set, "GET", "/users");
    assert_eq!(list.matchers.ignore_query, ["_"], "{:?}", list.matchers);

    // Sequence patterns.
    let seq = &set.sequences;
    let rule = seq
        .ordering
        .iter()
        .find(|r| r.before == "POST /login" && r.after == "GET /orders")
        .expect("login before orders");
    assert_eq!(
        (rule.support, rule.holds, rule.confidence),
        (CLIENTS as u64, CLIENTS as u64, 1.0)
    );
    assert!(!seq
        .ordering
        .iter()
        .any(|r| r.before == "GET /orders" && r.after == "POST /login"));
    assert!(seq.flows.iter().any(|f| f.from == "POST /login"
        && f.from_field == "token"
        && f.to_location == "header.Authorization"));
    assert!(seq.flows.iter().any(|f| f.from == "POST /users"
        && f.from_field == "id"
        && f.to == "GET /users/{id}"
        && f.to_location == "path.id"));
    assert!(seq
        .flows
        .iter()
        .any(|f| f.from == "POST /orders" && f.to == "GET /orders/{id}"));
    let retry = seq
        .retries
        .iter()
        .find(|r| r.endpoint == "GET /flaky")
        .expect("flaky is retried");
    assert_eq!(retry.after, "503");
    assert!(retry.count >= CLIENTS as u64);

    let patterns = mf_run(&["patterns", db.to_str().unwrap()]);
    let text = String::from_utf8_lossy(&patterns.stdout);
    assert!(
        text.contains(&format!(
            "`POST /login` precedes `GET /orders` in 100% of {CLIENTS} sessions"
        )),
        "{text}"
    );
    assert!(text.contains("retry"), "{text}");

    // Redaction: no secret of the recording anywhere in the folder.
    let files = files_of(&fx);
    assert!(files
        .keys()
        .any(|p| p.extension().is_some_and(|e| e == "json")));
    for (path, data) in &files {
        let text = String::from_utf8_lossy(data);
        for secret in &traffic.secrets {
            assert!(
                !text.contains(secret.as_str()),
                "secret {secret} found in {}",
                path.display()
            );
        }
    }

    // OpenAPI 3.1 passes a real validator.
    let v = Command::new("python3")
        .args(["-c", "import sys; from openapi_spec_validator import validate; from openapi_spec_validator.readers import read_from_filename; validate(read_from_filename(sys.argv[1])[0])"])
        .arg(fx.join("openapi.yaml"))
        .output()
        .unwrap();
    assert!(
        v.status.success(),
        "openapi.yaml invalid: {}",
        String::from_utf8_lossy(&v.stderr)
    );

    // Deterministic: a second run gives the same bytes.
    let fx2 = dir.path().join("fixtures2");
    infer(&db, &fx2);
    assert_eq!(files_of(&fx2), files, "infer is not deterministic");

    replay_against_fixtures(&fx, &set);
}

fn json_of(body: &[u8]) -> Value {
    serde_json::from_slice(body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(body)))
}

fn replay_against_fixtures(fx: &Path, set: &FixtureSet) {
    let replay = start_replay(fx, &["--stateful"]);
    let base = replay.url();
    let auth = "Authorization: Bearer any-token-will-do";

    // A recorded example comes back as recorded.
    let get_user = endpoint(set, "GET", "/users/{id}");
    let ex = get_user
        .examples
        .iter()
        .find(|e| e.response.status == 200)
        .unwrap();
    let r = curl(&["-H", auth, &format!("{base}{}", ex.request.path)]);
    assert_eq!(r.status(), 200);
    let recorded = json_of(&set.bodies[ex.response.body.as_ref().unwrap()]);
    assert_eq!(json_of(&r.body), recorded);

    // The literal route keeps its own answer.
    let r = curl(&["-H", auth, &format!("{base}/users/me")]);
    assert_eq!(r.status(), 200);
    assert!(json_of(&r.body)["username"].is_string());

    // A different cache buster and a different nonce still match.
    let r = curl(&[
        "-H",
        auth,
        &format!("{base}/users?page=1&per_page=5&_=1999999999999"),
    ]);
    assert_eq!(r.status(), 200);
    assert!(json_of(&r.body)["items"].is_array());
    let r = curl(&[
        "-H",
        auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"user_id": 100, "items": [{"sku": "SKU-0", "qty": 1}], "nonce": "a-brand-new-nonce-0000"}"#,
        &format!("{base}/orders"),
    ]);
    assert_eq!(r.status(), 201);
    assert_eq!(json_of(&r.body)["status"], "pending");

    // The recorded miss stays a miss.
    let r = curl(&["-H", auth, &format!("{base}/users/999999")]);
    assert_eq!(r.status(), 404);

    // Stateful: what a POST creates, the matching GET serves.
    let r = curl(&[
        "-H",
        auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"name": "Zed Replay", "email": "zed@example.com", "role": "admin", "client_ts": "2031-01-01T00:00:00Z", "nonce": "ffff"}"#,
        &format!("{base}/users"),
    ]);
    assert_eq!(r.status(), 201);
    let created = json_of(&r.body);
    assert_eq!(created["name"], "Zed Replay");
    let id = created["id"].as_i64().expect("created id");
    let r = curl(&["-H", auth, &format!("{base}/users/{id}")]);
    assert_eq!(r.status(), 200);
    assert_eq!(json_of(&r.body)["name"], "Zed Replay");
    // A second POST gets a different id.
    let r = curl(&[
        "-H",
        auth,
        "-H",
        "Content-Type: application/json",
        "-d",
        r#"{"name": "Second", "email": "s@example.com", "role": "customer", "client_ts": "2031-01-01T00:00:01Z", "nonce": "eeee"}"#,
        &format!("{base}/users"),
    ]);
    assert_ne!(json_of(&r.body)["id"].as_i64(), Some(id));

    // Nothing matches: a 404 that lists the endpoints.
    let r = curl(&[&format!("{base}/no/such/route")]);
    assert_eq!(r.status(), 404);
    assert!(r.headers.contains("X-Mf-Match: none"));
    assert!(String::from_utf8_lossy(&r.body).contains("GET /users/{id}"));
}

#[test]
fn infer_refuses_missing_recordings_and_foreign_folders() {
    let dir = tempfile::tempdir().unwrap();
    let o = mf_run(&["infer", dir.path().join("missing.db").to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no such recording"));
    let o = mf_run(&[
        "replay",
        dir.path().to_str().unwrap(),
        "--listen",
        "127.0.0.1:0",
    ]);
    assert_eq!(
        o.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stderr).contains("index.yaml"));
}
