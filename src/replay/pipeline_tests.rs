//! The pipeline's decisions on streamed bodies, end to end through `Replay::decide`.

use super::*;
use crate::model::{Body, BodyChunk, Request, Timings};
use crate::replay::latency::{LatencyMode, LatencySpec, Pacing};

fn streamed(path: &str, content_type: &str) -> Exchange {
    let mut body = Body::full(&b"0123456789"[..]);
    body.chunks = vec![
        BodyChunk {
            offset_ns: 1_000_000,
            len: 5,
        },
        BodyChunk {
            offset_ns: 101_000_000,
            len: 5,
        },
    ];
    Exchange {
        request: Request {
            method: "GET".into(),
            target: path.into(),
            version: "HTTP/1.1".into(),
            ..Request::default()
        },
        response: Some(Response {
            status: 200,
            reason: "OK".into(),
            version: "HTTP/1.1".into(),
            headers: vec![
                Header::new("Content-Type", content_type),
                Header::new("Content-Length", "10"),
            ],
            body,
            trailers: vec![],
        }),
        timings: Timings {
            response_first_byte_ns: Some(1_000_000),
            response_end_ns: Some(101_000_000),
            ..Timings::default()
        },
        ..Exchange::default()
    }
}

fn pacing_of(mode: Option<LatencyMode>, recorded_latency: bool, path: &str) -> Pacing {
    let exchanges = [
        streamed("/events", "text/event-stream"),
        streamed("/download", "application/octet-stream"),
    ];
    let mut config = ReplayConfig {
        recorded_latency,
        ..ReplayConfig::default()
    };
    if let Some(mode) = mode {
        config.realism.latency = LatencySpec {
            mode,
            ..LatencySpec::default()
        };
    }
    let replay = Replay::new(&exchanges, config).unwrap();
    let view = RequestView {
        protocol: Protocol::Http11,
        method: "GET",
        target: path,
        authority: None,
        headers: &[],
        body: &[],
        grpc_method: None,
        grpc_first: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    rt.block_on(replay.decide(&view)).plan.pacing
}

/// The replay rule for streamed bodies, end to end through the pipeline's decision.
#[test]
fn event_streams_keep_their_pace_by_default_and_other_bodies_when_asked() {
    // No --latency: SSE at its recorded pace, a download at once.
    assert_eq!(pacing_of(None, true, "/events"), Pacing::Chunks(1.0));
    assert_eq!(pacing_of(None, true, "/download"), Pacing::Burst);
    // --latency none: everything at once.
    assert_eq!(
        pacing_of(Some(LatencyMode::None), false, "/events"),
        Pacing::Burst
    );
    // --latency recorded / scale:F: every chunked body at its (scaled) offsets.
    assert_eq!(
        pacing_of(Some(LatencyMode::Recorded), true, "/download"),
        Pacing::Chunks(1.0)
    );
    assert_eq!(
        pacing_of(Some(LatencyMode::Scale(0.5)), true, "/events"),
        Pacing::Chunks(0.5)
    );
    // Another mode sets the first byte only; SSE still keeps its pace.
    assert_eq!(
        pacing_of(
            Some(LatencyMode::Fixed(std::time::Duration::from_millis(5))),
            true,
            "/events"
        ),
        Pacing::Chunks(1.0)
    );
}

/// A miss hook that answers every request with 201 and counts how often it was asked.
struct Counting(std::sync::atomic::AtomicU64);

impl MissHook for Counting {
    fn on_miss<'a>(&'a self, req: MissRequest<'a>) -> super::super::miss::MissFuture<'a> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let ex = Exchange {
            request: Request {
                method: req.method.into(),
                target: req.target.into(),
                body: Body::full(req.body.to_vec()),
                ..Request::default()
            },
            response: Some(Response {
                status: 201,
                ..Response::default()
            }),
            ..Exchange::default()
        };
        Box::pin(async move { super::super::miss::MissAnswer::Kept(Box::new(ex)) })
    }
}

#[tokio::test]
async fn a_miss_goes_to_the_hook_once_and_is_answered_from_memory_after() {
    let replay = Replay::new(
        &[streamed("/events", "text/event-stream")],
        ReplayConfig::default(),
    )
    .unwrap();
    let hook = Arc::new(Counting(Default::default()));
    replay.set_miss_hook(hook.clone());
    let view = |target| RequestView {
        protocol: Protocol::Http11,
        method: "GET",
        target,
        authority: None,
        headers: &[],
        body: &[],
        grpc_method: None,
        grpc_first: None,
    };
    for _ in 0..3 {
        let d = replay.decide_or_fetch(&view("/new?x=1")).await;
        assert!(matches!(&d.found, Found::Sourced(r) if r.status == 201));
    }
    assert_eq!(hook.0.load(Ordering::SeqCst), 1, "asked once, then learned");
    // What the recording answers never reaches the hook.
    let d = replay.decide_or_fetch(&view("/events")).await;
    assert!(matches!(&d.found, Found::Recorded(r) if r.index == 0));
    assert_eq!(hook.0.load(Ordering::SeqCst), 1);
    assert_eq!(replay.miss_counts(), Some((1, 0)));
}

fn get<'a>(target: &'a str, body: &'a [u8]) -> RequestView<'a> {
    RequestView {
        protocol: Protocol::Http11,
        method: if body.is_empty() { "GET" } else { "POST" },
        target,
        authority: None,
        headers: &[],
        body,
        grpc_method: None,
        grpc_first: None,
    }
}

/// What a decision answers with, as bytes a test can compare.
fn answer_of(d: &Decision) -> String {
    match &d.found {
        Found::Recorded(r) => format!(
            "#{} {}{}",
            r.index,
            String::from_utf8_lossy(&r.rendered.head),
            String::from_utf8_lossy(&r.rendered.body)
        ),
        Found::Sourced(r) => format!("sourced {}", r.status),
        Found::Missing(report) => report_text(report),
    }
}

/// A recording read from its file answers exactly as the same exchanges held in memory:
/// same exchange for identical requests in recorded order, same bytes, same near misses,
/// and the cache holds no more than its budget.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_indexed_from_its_file_answers_as_in_memory() {
    let mut exchanges = vec![];
    for i in 0..60u64 {
        let mut ex = streamed(
            &format!("/items/{}?v={}", i % 20, i % 3),
            "application/json",
        );
        ex.response.as_mut().unwrap().body = Body::full(format!("{{\"n\":{i}}}").into_bytes());
        ex.response.as_mut().unwrap().headers =
            vec![Header::new("Content-Type", "application/json")];
        if i % 5 == 0 {
            ex.request.method = "POST".into();
            ex.request.body = Body::full(format!("{{\"b\":{},\"a\":1}}", i % 2).into_bytes());
        }
        ex.connection_id = i / 4 + 1;
        ex.protocol = Some(Protocol::Http11);
        exchanges.push(ex);
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    crate::store::write_exchanges(
        &path,
        &crate::store::Meta::default(),
        exchanges.iter().cloned(),
    )
    .unwrap();
    let stored = crate::store::open_reader(&path)
        .unwrap()
        .load_all()
        .unwrap();
    let config = ReplayConfig {
        cache_bytes: 4096,
        ..ReplayConfig::default()
    };
    let memory = Replay::new(&stored, config.clone()).unwrap();
    let file = Replay::from_recording(crate::store::open_reader(&path).unwrap(), config).unwrap();
    assert_eq!(file.len(), 60);
    let requests: Vec<(String, &'static [u8])> = [
        ("/items/3?v=0", &b""[..]),
        ("/items/3?v=0", b""),
        ("/items/5?v=2", br#"{"a":1,"b":0}"#),
        ("/items/5?v=2", br#"{"a":1, "b":1}"#),
        ("/items/99", b""),
        ("/nothing/here?v=1", b""),
    ]
    .iter()
    .map(|(t, b)| (t.to_string(), *b))
    .cycle()
    .take(60)
    .chain((0..20).map(|i| (format!("/items/{i}?v={}", i % 3), &b""[..])))
    .collect();
    for (target, body) in &requests {
        let (a, b) = (
            memory.decide(&get(target, body)).await,
            file.decide(&get(target, body)).await,
        );
        assert_eq!(answer_of(&a), answer_of(&b), "{target}");
    }
    let (_, cached, answers) = file.memory();
    assert!(
        cached <= 4096 || answers == 1,
        "{cached} bytes in {answers}"
    );
}
