//! Hand-made segment sequences through the engine.

use std::sync::Mutex;

use super::*;
use crate::decode::h2::{encode_frame, encode_headers};
use crate::model::Exchange;

#[derive(Default)]
struct Collect(Mutex<Vec<Exchange>>);
impl ExchangeSink for Collect {
    fn record(&self, exchange: Box<Exchange>) {
        self.0.lock().expect("lock").push(*exchange);
    }
}

fn seg(src: &str, dst: &str, seq: u32, payload: &[u8]) -> Segment {
    Segment {
        ts_ns: 1_000 + i64::from(seq),
        src: src.parse().expect("addr"),
        dst: dst.parse().expect("addr"),
        seq,
        syn: false,
        ack: true,
        ack_no: 0,
        fin: false,
        rst: false,
        payload: Bytes::copy_from_slice(payload),
        cut: false,
    }
}

#[test]
fn h2_joined_after_the_preface_is_recognised_by_its_frames() {
    let sink = Arc::new(Collect::default());
    let mut engine = Engine::new(Config::default(), sink.clone());
    let (mut ce, mut se) = (loona_hpack::Encoder::new(), loona_hpack::Encoder::new());
    let mut c = Vec::new();
    encode_frame(&mut c, 8, 0, 0, &[0, 0, 1, 0]); // WINDOW_UPDATE
    let block = encode_headers(
        &mut ce,
        &[
            (b":method", b"GET"),
            (b":path", b"/late"),
            (b":scheme", b"http"),
            (b":authority", b"svc"),
        ],
    );
    encode_frame(&mut c, 1, 0x5, 7, &block);
    let mut s = Vec::new();
    let block = encode_headers(&mut se, &[(b":status", b"200")]);
    encode_frame(&mut s, 1, 0x4, 7, &block);
    encode_frame(&mut s, 0, 0x1, 7, b"done");
    engine.segment(seg("10.0.0.1:51000", "10.0.0.2:8080", 100, &c));
    engine.segment(seg("10.0.0.2:8080", "10.0.0.1:51000", 900, &s));
    engine.finish();
    let got = sink.0.lock().expect("lock");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(
        (
            got[0].request.method.as_str(),
            got[0].request.target.as_str()
        ),
        ("GET", "/late")
    );
    assert_eq!(
        got[0]
            .response
            .as_ref()
            .map(|r| (r.status, r.body.data.clone())),
        Some((200, Bytes::from_static(b"done")))
    );
    assert_eq!(got[0].client_addr.as_deref(), Some("10.0.0.1:51000"));
}

#[test]
fn a_flood_of_half_open_flows_is_bounded_and_counted() {
    let sink = Arc::new(Collect::default());
    let cfg = Config {
        max_flows: 16,
        ..Config::default()
    };
    let mut engine = Engine::new(cfg, sink.clone());
    for i in 0..1000u32 {
        let src = format!("10.9.{}.{}:{}", i / 250, i % 250, 10_000 + i);
        // A request head that never completes: every flow would wait forever.
        engine.segment(seg(
            &src,
            "10.0.0.2:80",
            1,
            b"GET /x HTTP/1.1\r\nHost: a\r\n",
        ));
        assert!(engine.active_flows() <= 16);
    }
    assert!(engine.stats.evicted_flows >= 1000 - 16);
    engine.finish();
    assert_eq!(engine.active_flows(), 0);
}

#[test]
fn h2_hole_resumes_at_the_next_frame_and_keeps_the_hit_stream_flagged() {
    let sink = Arc::new(Collect::default());
    let mut engine = Engine::new(Config::default(), sink.clone());
    let (mut ce, mut se) = (loona_hpack::Encoder::new(), loona_hpack::Encoder::new());
    let mut c = h2_frames::PREFACE.to_vec();
    for (stream, path) in [(1, &b"/one"[..]), (3, b"/three")] {
        let block = encode_headers(
            &mut ce,
            &[
                (b":method", b"GET"),
                (b":path", path),
                (b":scheme", b"http"),
                (b":authority", b"svc"),
            ],
        );
        encode_frame(&mut c, 1, 0x5, stream, &block);
    }
    let mut a = Vec::new();
    let block = encode_headers(&mut se, &[(b":status", b"200")]);
    encode_frame(&mut a, 1, 0x4, 1, &block);
    encode_frame(&mut a, 0, 0x1, 1, b"one");
    // Lost: stream 3's response head and the start of its body.
    let mut lost = Vec::new();
    encode_frame(&mut lost, 1, 0x4, 3, &[0x88]);
    encode_frame(&mut lost, 0, 0, 3, &[b'x'; 500]);
    let mut after = Vec::new();
    encode_frame(&mut after, 0, 0x1, 3, b"three");
    encode_frame(&mut after, 4, 0x1, 0, b""); // SETTINGS ack
    let server = 900u32;
    engine.segment(seg("10.0.0.1:51000", "10.0.0.2:8080", 100, &c));
    engine.segment(seg("10.0.0.2:8080", "10.0.0.1:51000", server, &a));
    let c_seq = server + a.len() as u32 + lost.len() as u32;
    engine.segment(seg("10.0.0.2:8080", "10.0.0.1:51000", c_seq, &after));
    engine.finish();
    let got = sink.0.lock().expect("lock");
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0].request.target, "/one");
    assert!(got[0].error.is_none(), "{:?}", got[0].error);
    assert_eq!(got[1].request.target, "/three");
    assert_eq!(
        got[1].error.as_ref().map(|e| e.kind),
        Some(ErrorKind::CaptureHole)
    );
    assert_eq!(engine.stats.hpack_unsure_connections, 1);
    assert_eq!(engine.stats.decode_errors, 0);
}

/// A segment at capture time `ts` acknowledging the peer's bytes up to `ack`.
fn seg_at(ts: i64, from_client: bool, seq: u32, ack: u32, payload: &[u8]) -> Segment {
    let (c, s) = ("10.0.0.1:51000", "10.0.0.2:8080");
    let (src, dst) = if from_client { (c, s) } else { (s, c) };
    Segment {
        ts_ns: ts,
        ack_no: ack,
        ..seg(src, dst, seq, payload)
    }
}

#[test]
fn h1_holes_cost_only_the_exchanges_they_hit() {
    let sink = Arc::new(Collect::default());
    let mut engine = Engine::new(Config::default(), sink.clone());
    let req = |i: u32| format!("GET /{i} HTTP/1.1\r\nHost: h\r\n\r\n").into_bytes();
    let resp = |i: u32| format!("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nr{i}").into_bytes();
    let (mut cs, mut ss, mut t) = (100u32, 900u32, 0i64);
    // Exchange 2 loses its request, 3 its whole response, 4 arrives after garbage, and 5
    // loses three bytes in the middle of its body.
    for i in 1..=5u32 {
        let q = req(i);
        t += 10;
        if i != 2 {
            engine.segment(seg_at(t, true, cs, ss, &q));
        }
        cs += q.len() as u32;
        let mut r = resp(i);
        if i == 4 {
            r = [&b"\x00\x01garbage"[..], &r].concat();
        }
        t += 10;
        if i == 5 {
            let r = b"HTTP/1.1 200 OK\r\nContent-Length: 9\r\n\r\nabcdefghi";
            let cut = r.len() - 6;
            engine.segment(seg_at(t, false, ss, cs, &r[..cut]));
            engine.segment(seg_at(t + 1, false, ss + cut as u32 + 3, cs, &r[cut + 3..]));
            ss += r.len() as u32;
        } else {
            if i != 3 {
                engine.segment(seg_at(t, false, ss, cs, &r));
            }
            ss += r.len() as u32;
        }
        // The peers acknowledge everything: bytes the capture missed are holes at once.
        engine.segment(seg_at(t + 2, true, cs, ss, b""));
    }
    engine.finish();
    let got = sink.0.lock().expect("lock");
    let summary: Vec<(String, Option<Vec<u8>>, Option<ErrorKind>)> = got
        .iter()
        .map(|e| {
            (
                e.request.target.to_string(),
                e.response.as_ref().map(|r| r.body.data.to_vec()),
                e.error.as_ref().map(|e| e.kind),
            )
        })
        .collect();
    let hole = Some(ErrorKind::CaptureHole);
    assert_eq!(
        summary,
        vec![
            ("/1".into(), Some(b"r1".to_vec()), None),
            (String::new(), Some(b"r2".to_vec()), hole),
            ("/3".into(), None, hole),
            ("/4".into(), Some(b"r4".to_vec()), None),
            ("/5".into(), Some(b"abc\0\0\0ghi".to_vec()), hole),
        ],
        "{got:#?}"
    );
    assert_eq!(
        got[4].tags.get("capture_hole_offset").map(String::as_str),
        Some("3")
    );
    assert_eq!(
        got[4].tags.get("capture_hole_bytes").map(String::as_str),
        Some("3")
    );
    assert_eq!(engine.stats.orphan_responses, 1);
    assert_eq!(engine.stats.lost_responses, 1);
    assert_eq!(engine.stats.body_holes, 1);
}

#[test]
fn websocket_hole_resumes_at_the_next_frame() {
    let sink = Arc::new(Collect::default());
    let mut engine = Engine::new(Config::default(), sink.clone());
    let req = b"GET /chat HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
    let resp = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
    let (mut cs, mut ss) = (100u32, 900u32);
    engine.segment(seg_at(10, true, cs, ss, req));
    cs += req.len() as u32;
    engine.segment(seg_at(20, false, ss, cs, resp));
    ss += resp.len() as u32;
    let frame = |i: usize| {
        let mut b = bytes::BytesMut::new();
        let text = format!("tick {i} ").repeat(40);
        crate::decode::ws::encode(&mut b, true, 1, text.as_bytes(), None);
        b.to_vec()
    };
    // Frames 0..10, one segment each; frame 4 loses 50 bytes in its middle.
    for i in 0..10 {
        let f = frame(i);
        let t = 30 + i as i64 * 10;
        if i == 4 {
            engine.segment(seg_at(t, false, ss, cs, &f[..100]));
            engine.segment(seg_at(t, false, ss + 150, cs, &f[150..]));
            // The client acknowledges it all: the hole is final at once.
            engine.segment(seg_at(t + 1, true, cs, ss + f.len() as u32, b""));
        } else {
            engine.segment(seg_at(t, false, ss, cs, &f));
        }
        ss += f.len() as u32;
    }
    engine.finish();
    let got = sink.0.lock().expect("lock");
    assert_eq!(got.len(), 1, "{got:#?}");
    let e = &got[0];
    let texts: Vec<String> = e
        .messages
        .iter()
        .map(|m| String::from_utf8_lossy(&m.data).into_owned())
        .collect();
    let want: Vec<String> = (0..10)
        .filter(|i| *i != 4)
        .map(|i| format!("tick {i} ").repeat(40))
        .collect();
    assert_eq!(texts, want);
    assert_eq!(
        e.error.as_ref().map(|e| e.kind),
        Some(ErrorKind::CaptureHole)
    );
    assert_eq!(e.tags.get("ws_holes").map(String::as_str), Some("1"));
    assert_eq!(e.tags.get("ws_hole_bytes").map(String::as_str), Some("50"));
    let len4 = frame(4).len() as u64;
    assert_eq!(
        e.tags.get("ws_resync_skipped_bytes"),
        Some(&(len4 - 50).to_string())
    );
    assert_eq!(engine.stats.resyncs, 1);
    assert_eq!(engine.stats.decode_errors, 0);
}
