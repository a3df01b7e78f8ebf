use std::sync::{Arc, Mutex};

use super::*;
use crate::model::{Body, Exchange, Header, Request, Response};

#[derive(Default)]
struct Collect(Mutex<Vec<Exchange>>);

impl ExchangeSink for Collect {
    fn record(&self, exchange: Box<Exchange>) {
        self.0.lock().unwrap().push(*exchange);
    }
}

fn ex(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Box<Exchange> {
    Box::new(Exchange {
        authority: "api.example:8080".into(),
        request: Request {
            method: method.into(),
            target: target.into(),
            headers: headers.iter().map(|(n, v)| Header::new(*n, v)).collect(),
            ..Default::default()
        },
        response: Some(Response {
            status: 200,
            headers: vec![Header::new("Content-Type", "application/json")],
            body: Body::full(body.as_bytes().to_vec()),
            ..Default::default()
        }),
        ..Default::default()
    })
}

fn sink(cfg: &PolicyConfig) -> (Arc<Collect>, PolicySink) {
    let out = Arc::new(Collect::default());
    let s = PolicySink::with_keys(out.clone(), cfg, Placeholders::with_key(b"k")).unwrap();
    (out, s)
}

#[test]
fn filters_count_what_they_drop() {
    let cfg = PolicyConfig {
        filter: FilterConfig {
            exclude: vec!["/health".into(), "/metrics*".into()],
            hosts: vec!["api.example".into()],
            methods: vec!["get".into(), "POST".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let (out, s) = sink(&cfg);
    s.record(ex("GET", "/health", &[], "{}"));
    s.record(ex("GET", "/metrics/x", &[], "{}"));
    s.record(ex("DELETE", "/a", &[], "{}"));
    s.record(ex("GET", "/a?x=1", &[], "{}"));
    let mut other = ex("GET", "/a", &[], "{}");
    other.authority = "elsewhere:1".into();
    s.record(other);
    assert_eq!(out.0.lock().unwrap().len(), 1);
    assert_eq!(s.summary().filtered, 4);

    let cfg = PolicyConfig {
        filter: FilterConfig {
            include: vec!["/api/*".into()],
            content_types: vec!["application/*".into()],
            ..Default::default()
        },
        ..Default::default()
    };
    let (out, s) = sink(&cfg);
    s.record(ex("GET", "/api/v1/users", &[], "{}"));
    s.record(ex("GET", "/static/x", &[], "{}"));
    assert_eq!(out.0.lock().unwrap().len(), 1);
    assert!(PolicySink::new(
        out.clone(),
        &PolicyConfig {
            filter: FilterConfig {
                include: vec!["/a[".into()],
                ..Default::default()
            },
            ..Default::default()
        }
    )
    .is_err());
}

#[test]
fn sampling_by_header_is_the_same_for_one_client() {
    let cfg = PolicyConfig {
        sample: Some(SampleConfig {
            rate: 0.5,
            by: Some("X-Client".into()),
        }),
        ..Default::default()
    };
    let (out, s) = sink(&cfg);
    for client in 0..40 {
        for _ in 0..3 {
            s.record(ex(
                "GET",
                "/a",
                &[("X-Client", &format!("c{client}"))],
                "{}",
            ));
        }
    }
    let kept = out.0.lock().unwrap();
    // Every client is kept with all of its 3 requests, or not at all.
    let mut per: std::collections::BTreeMap<String, usize> = Default::default();
    for e in kept.iter() {
        *per.entry(e.request.headers[0].value_str().into_owned())
            .or_default() += 1;
    }
    assert!(per.values().all(|n| *n == 3), "{per:?}");
    assert!(!per.is_empty() && per.len() < 40, "{}", per.len());
    assert_eq!(s.summary().sampled_out as usize, 120 - kept.len());
}

#[test]
fn dedup_keeps_n_and_tags_the_last() {
    let cfg = PolicyConfig {
        dedup: Some(2),
        ..Default::default()
    };
    let (out, s) = sink(&cfg);
    for _ in 0..5 {
        s.record(ex("GET", "/same", &[], r#"{"a":1}"#));
    }
    s.record(ex("GET", "/same", &[], r#"{"a":2}"#));
    assert_eq!(
        out.0.lock().unwrap().len(),
        2,
        "one stored now, the second held"
    );
    s.finish();
    let kept = out.0.lock().unwrap();
    assert_eq!(kept.len(), 3);
    let tagged: Vec<_> = kept.iter().filter_map(|e| e.tags.get(DEDUP_TAG)).collect();
    assert_eq!(tagged, vec!["3"]);
    assert_eq!(s.summary().deduplicated, 3);
}

#[test]
fn secrets_are_redacted_unless_kept() {
    let (out, s) = sink(&PolicyConfig::default());
    s.record(ex(
        "GET",
        "/a?api_key=sk-live-123456",
        &[("Authorization", "Bearer sk-live-123456")],
        r#"{"access_token":"sk-live-123456"}"#,
    ));
    let keep = PolicyConfig {
        keep_secrets: true,
        ..Default::default()
    };
    let (kept, k) = sink(&keep);
    k.record(ex("GET", "/a?api_key=sk-live-123456", &[], "{}"));
    let e = &out.0.lock().unwrap()[0];
    let dump = format!("{e:?}");
    assert!(!dump.contains("sk-live-123456"), "{dump}");
    assert_eq!(s.summary().redacted, 3);
    assert!(kept.0.lock().unwrap()[0]
        .request
        .target
        .contains("sk-live-123456"));
}
