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
    replay.decide(&view).plan.pacing
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
    assert!(matches!(d.found, Found::Recorded(0)));
    assert_eq!(hook.0.load(Ordering::SeqCst), 1);
    assert_eq!(replay.miss_counts(), Some((1, 0)));
}
