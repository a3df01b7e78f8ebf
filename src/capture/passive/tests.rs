//! Hand-made segment sequences through the engine.

use std::sync::Mutex;

use super::*;
use crate::decode::h2::{encode_frame, encode_headers};
use crate::model::Exchange;

#[derive(Default)]
struct Collect(Mutex<Vec<Exchange>>);
impl ExchangeSink for Collect {
    fn record(&self, exchange: Exchange) {
        self.0.lock().expect("lock").push(exchange);
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
