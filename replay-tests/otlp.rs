//! `--otlp`: one span per exchange from the recording proxy and from the replay, sent to a
//! receiver that decodes the real OTLP protobufs (`servers/otlp_receiver.py`). A request with
//! a `traceparent` gives a span of that trace whose parent is the caller's span; the proxy
//! forwards the header unchanged; no credential reaches a span.

use std::path::Path;
use std::time::Duration;

use crate::common::*;

const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const PARENT: &str = "00f067aa0ba902b7";
const SECRET: &str = "Bearer otlp-SECRET-7f3e";

/// The spans (and receiver errors) written so far.
fn spans(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// Waits until spans of `service` include one named `name` for each of `names`.
fn wait_for(out: &Path, service: &str, names: &[&str]) -> Vec<serde_json::Value> {
    let of_service = || -> Vec<serde_json::Value> {
        spans(out)
            .into_iter()
            .filter(|s| s["service"] == service)
            .collect()
    };
    let ok = wait_until(Duration::from_secs(15), || {
        let got = of_service();
        names.iter().all(|n| got.iter().any(|s| s["name"] == *n))
    });
    assert!(ok, "{service}: wanted {names:?}, got {:#?}", spans(out));
    of_service()
}

fn named<'a>(spans: &'a [serde_json::Value], name: &str) -> Vec<&'a serde_json::Value> {
    spans.iter().filter(|s| s["name"] == name).collect()
}

/// The request with a traceparent and a credential.
fn traced_request(base: &str) -> CurlResult {
    curl(&[
        "-H",
        &format!("traceparent: 00-{TRACE}-{PARENT}-01"),
        "-H",
        &format!("Authorization: {SECRET}"),
        &format!("{base}/headers?api_key=otlp-QUERY-91c2"),
    ])
}

/// The span of the traced request: in the caller's trace, the caller's span its parent, and
/// the attributes of the semantic conventions.
fn check_traced(span: &serde_json::Value, status: i64) {
    assert_eq!(span["trace_id"], TRACE, "{span}");
    assert_eq!(span["parent_span_id"], PARENT, "{span}");
    assert_ne!(span["span_id"], PARENT, "{span}");
    assert_eq!(span["kind"], 2, "a server span: {span}");
    let a = &span["attributes"];
    assert_eq!(a["http.request.method"], "GET", "{span}");
    assert_eq!(a["url.path"], "/headers", "{span}");
    assert_eq!(a["http.response.status_code"], status, "{span}");
    assert_eq!(a["server.address"], "127.0.0.1", "{span}");
    assert!(span["end"].as_u64() >= span["start"].as_u64(), "{span}");
}

#[test]
fn proxy_and_replay_spans_follow_the_callers_trace() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("spans.jsonl");
    let receiver = start_python("otlp_receiver.py", &[out.to_str().unwrap()]);
    let otlp = receiver.url();
    let db = dir.path().join("traced.db");

    // Through the proxy: HTTP with and without a traceparent, and gRPC calls.
    let upstream = start_python("http_upstream.py", &[]);
    let mut rec = start_recorder(&upstream.url(), &db, &["--otlp", &otlp]);
    let seen = traced_request(&rec.url());
    assert_eq!(seen.status(), 200);
    let forwarded: serde_json::Value = serde_json::from_slice(&seen.body).unwrap();
    assert_eq!(
        forwarded["traceparent"],
        format!("00-{TRACE}-{PARENT}-01"),
        "the proxy forwards traceparent unchanged: {forwarded}"
    );
    assert_eq!(curl(&[&format!("{}/json", rec.url())]).status(), 200);
    let proxied = wait_for(&out, "mf record", &["GET /headers", "GET /json"]);
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    check_traced(named(&proxied, "GET /headers")[0], 200);
    let plain = named(&proxied, "GET /json")[0];
    assert_eq!(
        plain["parent_span_id"], "",
        "no traceparent, a new trace: {plain}"
    );
    assert_ne!(plain["trace_id"], TRACE);

    let grpc_db = dir.path().join("grpc.db");
    let server = start_python("grpc_server.py", &[]);
    let mut rec = start_recorder(&server.url(), &grpc_db, &["--otlp", &otlp]);
    crate::grpc::client(&rec.addr().to_string(), "all");
    let method = "mftest.Routes/GetPoint";
    let proxied = wait_for(&out, "mf record", &[method]);
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    let calls = named(&proxied, method);
    let codes: Vec<&serde_json::Value> = calls
        .iter()
        .map(|s| &s["attributes"]["rpc.grpc.status_code"])
        .collect();
    assert!(codes.contains(&&serde_json::json!(0)), "{calls:#?}");
    assert!(
        codes.contains(&&serde_json::json!(5)),
        "NOT_FOUND: {calls:#?}"
    );
    let a = &calls[0]["attributes"];
    assert_eq!(
        (&a["rpc.system"], &a["rpc.service"], &a["rpc.method"]),
        (
            &serde_json::json!("grpc"),
            &serde_json::json!("mftest.Routes"),
            &serde_json::json!("GetPoint")
        )
    );

    // Out of the replay: the same traced request, one nothing matches, and gRPC calls.
    let replay = start_replay(&db, &["--otlp", &otlp]);
    assert_eq!(traced_request(&replay.url()).status(), 200);
    assert_eq!(
        curl(&[&format!("{}/nothing/42", replay.url())]).status(),
        404
    );
    let replayed = wait_for(&out, "mf replay", &["GET /headers", "GET /nothing/{id}"]);
    let traced = named(&replayed, "GET /headers")[0];
    check_traced(traced, 200);
    assert_eq!(traced["attributes"]["mf.matched"], true, "{traced}");
    let missed = named(&replayed, "GET /nothing/{id}")[0];
    assert_eq!(missed["attributes"]["mf.matched"], false, "{missed}");
    assert_eq!(missed["attributes"]["http.response.status_code"], 404);
    drop(replay);
    let grpc_replay = start_replay(&grpc_db, &["--otlp", &otlp]);
    crate::grpc::client(&grpc_replay.addr().to_string(), "all");
    let replayed = wait_for(&out, "mf replay", &[method]);
    assert!(named(&replayed, method)
        .iter()
        .any(|s| s["attributes"]["rpc.grpc.status_code"] == 5));

    let all = std::fs::read_to_string(&out).unwrap();
    assert!(
        !all.contains("\"error\""),
        "the receiver refused a request:\n{all}"
    );
    for secret in ["otlp-SECRET-7f3e", "otlp-QUERY-91c2"] {
        assert!(!all.contains(secret), "{secret} reached a span:\n{all}");
    }
}

#[test]
fn an_unreachable_collector_never_holds_traffic_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("down.db");
    let upstream = start_python("http_upstream.py", &[]);
    let dead = refused_port();
    let collector = format!("http://127.0.0.1:{}", dead.port);
    let admin = format!("127.0.0.1:{}", crate::common::capture::free_port());
    let mut rec = start_recorder(
        &upstream.url(),
        &db,
        &["--otlp", &collector, "--admin", &admin],
    );
    for _ in 0..20 {
        assert_eq!(curl(&[&format!("{}/json", rec.url())]).status(), 200);
    }
    let metrics =
        || String::from_utf8_lossy(&curl(&[&format!("http://{admin}/metrics")]).body).into_owned();
    assert!(
        wait_until(Duration::from_secs(10), || metrics()
            .contains("mf_otlp_spans_failed_total 20")),
        "{}",
        metrics()
    );
    assert!(rec.interrupt().success(), "{}", rec.stderr());
    assert_eq!(ls_rows(&db), 20);
    // A collector mf cannot speak to is refused at start, with exit status 2.
    let out = mf_run(&[
        "replay",
        db.to_str().unwrap(),
        "--otlp",
        "https://collector:4318",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("http://"));
}
