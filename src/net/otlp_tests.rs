use super::*;
use crate::model::{Header, Request, Response};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

/// The body of one export request.
fn encode_batch(service: &str, spans: Vec<SpanData>) -> Vec<u8> {
    batch_request(resource(service), spans).encode_to_vec()
}

fn attr<'a>(s: &'a SpanData, key: &str) -> Option<&'a Value> {
    s.attributes.iter().find(|(k, _)| *k == key).map(|(_, v)| v)
}

#[test]
fn traceparent_gives_trace_and_parent() {
    let (t, p) =
        parse_traceparent(b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01").unwrap();
    assert_eq!(t[0], 0x4b);
    assert_eq!(t[15], 0x36);
    assert_eq!(p, [0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7]);
    for bad in [
        &b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7"[..],
        b"00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        b"ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        b"00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01",
        b"\xff\xfe",
    ] {
        assert_eq!(parse_traceparent(bad), None, "{bad:?}");
    }
}

#[test]
fn exchange_spans_follow_the_conventions_and_carry_no_credentials() {
    let ex = Exchange {
        protocol: Some(Protocol::Http11),
        started_at_ns: 1_000,
        scheme: "http".into(),
        authority: "api.example:8443".into(),
        request: Request {
            method: "GET".into(),
            target: "/users/42?token=s3cret".into(),
            headers: vec![
                Header::new("authorization", "Bearer s3cret"),
                Header::new(
                    "traceparent",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                ),
            ],
            ..Default::default()
        },
        response: Some(Response {
            status: 503,
            ..Default::default()
        }),
        timings: crate::model::Timings {
            response_end_ns: Some(5_000),
            ..Default::default()
        },
        ..Default::default()
    };
    let s = exchange_span(&ex);
    assert_eq!(s.name, "GET /users/{id}");
    assert_eq!(
        s.parent,
        Some([0x00, 0xf0, 0x67, 0xaa, 0x0b, 0xa9, 0x02, 0xb7])
    );
    assert_eq!((s.start_unix_ns, s.end_unix_ns), (1_000, 6_000));
    assert_eq!(attr(&s, "url.path"), Some(&Value::Str("/users/42".into())));
    assert_eq!(
        attr(&s, "server.address"),
        Some(&Value::Str("api.example".into()))
    );
    assert_eq!(attr(&s, "server.port"), Some(&Value::Int(8443)));
    assert_eq!(
        attr(&s, "http.response.status_code"),
        Some(&Value::Int(503))
    );
    assert!(s.error);
    let body = encode_batch("mf", vec![s]);
    assert!(
        !body.windows(6).any(|w| w == b"s3cret"),
        "a credential was exported"
    );
    let decoded = ExportTraceServiceRequest::decode(body.as_slice()).unwrap();
    let span = &decoded.resource_spans[0].scope_spans[0].spans[0];
    assert_eq!(span.trace_id[..2], [0x4b, 0xf9]);
    assert_eq!(span.kind, span::SpanKind::Server as i32);
}

#[test]
fn grpc_spans_name_the_method() {
    let s = RequestSpan {
        protocol: Protocol::Grpc,
        method: "POST",
        target: "/routes.Routes/GetFeature",
        authority: "[::1]:50051",
        scheme: "http",
        traceparent: None,
        status: 200,
        grpc_status: Some(5),
        start_unix_ns: 10,
        end_unix_ns: 5,
        error: None,
    }
    .build();
    assert_eq!(s.name, "routes.Routes/GetFeature");
    assert_eq!(s.parent, None);
    assert_eq!(s.end_unix_ns, 10);
    assert_eq!(attr(&s, "server.address"), Some(&Value::Str("::1".into())));
    assert_eq!(
        attr(&s, "rpc.method"),
        Some(&Value::Str("GetFeature".into()))
    );
    assert_eq!(attr(&s, "rpc.grpc.status_code"), Some(&Value::Int(5)));
    assert!(!s.error, "NOT_FOUND is the client's error");
}

#[test]
fn only_http_collectors_are_accepted() {
    assert_eq!(
        endpoint("http://127.0.0.1:4318").unwrap().to_string(),
        "http://127.0.0.1:4318/v1/traces"
    );
    assert_eq!(
        endpoint("http://c:4318/v1/traces/").unwrap().to_string(),
        "http://c:4318/v1/traces/"
    );
    assert!(matches!(endpoint("https://c"), Err(OtlpError::Scheme(_))));
    assert!(matches!(endpoint("http://"), Err(OtlpError::Url(_))));
}

#[tokio::test]
async fn a_full_queue_drops_and_counts_instead_of_waiting() {
    let metrics = Metrics::new().unwrap();
    // Nothing listens on port 9: posts fail, spans are counted as failed, never waited on.
    let exporter = Exporter::start("http://127.0.0.1:9", "mf", &metrics).unwrap();
    let span = RequestSpan {
        protocol: Protocol::Http11,
        method: "GET",
        target: "/",
        authority: "",
        scheme: "http",
        traceparent: None,
        status: 200,
        grpc_status: None,
        start_unix_ns: 0,
        end_unix_ns: 0,
        error: None,
    }
    .build();
    for _ in 0..(QUEUE + BATCH + 10) {
        exporter.export(span.clone());
    }
    exporter.flush(Duration::from_secs(5)).await;
    let text = metrics.render();
    let value = |name: &str| -> u64 {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .unwrap_or(0)
    };
    assert!(value("mf_otlp_spans_dropped_total") >= 1, "{text}");
    assert_eq!(
        value("mf_otlp_spans_dropped_total") + value("mf_otlp_spans_failed_total"),
        (QUEUE + BATCH + 10) as u64,
        "{text}"
    );
}
