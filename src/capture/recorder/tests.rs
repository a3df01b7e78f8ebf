//! Scripted event sequences through the recorder: no sockets, no clock.

use bytes::{Bytes, BytesMut};

use super::*;
use crate::decode::grpc;
use crate::model::{ErrorKind, MessageKind, Timings};

const T0: i64 = 1_700_000_000_000_000_000;

fn limits(max_body: usize) -> Limits {
    Limits { max_body }
}

fn get(rec: &mut Recorder, headers: Vec<Header>) {
    rec.request_head("GET".into(), "/a".into(), "HTTP/1.1".into(), headers);
}

fn ok(rec: &mut Recorder, at: i64, headers: Vec<Header>) {
    rec.response_head(at, 200, "OK".into(), "HTTP/1.1".into(), headers);
}

fn ws(opcode: u8) -> MessageKind {
    MessageKind::WebSocket {
        opcode,
        fin: true,
        compressed: false,
    }
}

#[test]
fn timings_come_from_the_given_timestamps() {
    let mut rec = Recorder::new(T0, limits(1024));
    get(&mut rec, vec![]);
    rec.end(T0 + 10, Direction::ClientToServer);
    ok(&mut rec, T0 + 25, vec![]);
    rec.response_data(T0 + 30, b"hi");
    rec.end(T0 + 40, Direction::ServerToClient);
    let ex = rec.finish();
    assert_eq!(ex.started_at_ns, T0);
    assert_eq!(
        ex.timings,
        Timings {
            request_end_ns: Some(10),
            response_first_byte_ns: Some(25),
            response_end_ns: Some(40),
        }
    );
    assert!(ex.error.is_none());
}

#[test]
fn a_timestamp_before_the_start_is_offset_zero() {
    let mut rec = Recorder::new(T0, limits(1024));
    get(&mut rec, vec![]);
    rec.end(T0 - 5, Direction::ClientToServer);
    assert_eq!(rec.finish().timings.request_end_ns, Some(0));
}

#[test]
fn body_over_budget_is_truncated_with_its_size_kept() {
    let mut rec = Recorder::new(T0, limits(5));
    get(&mut rec, vec![]);
    rec.request_data(T0 + 1, b"abc");
    rec.request_data(T0 + 2, b"defgh");
    rec.request_data(T0 + 3, b"ij");
    ok(&mut rec, T0 + 4, vec![]);
    rec.response_data(T0 + 5, b"12345");
    let ex = rec.finish();
    assert_eq!(&ex.request.body.data[..], b"abcde");
    assert_eq!(ex.request.body.size, 10);
    assert!(ex.request.body.truncated);
    let resp = ex.response.expect("response");
    assert_eq!(&resp.body.data[..], b"12345");
    assert!(!resp.body.truncated, "exactly the budget is not truncated");
}

#[test]
fn an_announced_length_changes_nothing_but_the_allocation() {
    // A length past the budget (or a lie) takes no more than the budget; the recording is
    // the same as without the announcement.
    for (announced, data) in [(1 << 40, &b"abcdefgh"[..]), (3, b"abcdefgh"), (0, b"ab")] {
        let mut rec = Recorder::new(T0, limits(5));
        get(&mut rec, vec![]);
        rec.half(Direction::ClientToServer).expect(announced);
        rec.request_data(T0 + 1, data);
        let body = rec.finish().request.body;
        let kept = data.len().min(5);
        assert_eq!(&body.data[..], &data[..kept]);
        assert_eq!(body.size, data.len() as u64);
        assert_eq!(body.truncated, data.len() > 5);
    }
}

#[test]
fn headers_are_stored_as_on_the_wire_hop_by_hop_included() {
    let headers = vec![
        Header::new("Host", "a"),
        Header::new("Connection", "keep-alive, X-Hop"),
        Header::new("Keep-Alive", "timeout=5"),
        Header::new("X-Hop", "1"),
        Header::new("Transfer-Encoding", "chunked"),
    ];
    let mut rec = Recorder::new(T0, limits(16));
    get(&mut rec, headers.clone());
    ok(&mut rec, T0, headers.clone());
    rec.trailers(Direction::ServerToClient, vec![Header::new("X-T", "1")]);
    let ex = rec.finish();
    assert_eq!(ex.request.headers, headers);
    let resp = ex.response.expect("response");
    assert_eq!(resp.headers, headers);
    assert_eq!(resp.trailers, vec![Header::new("X-T", "1")]);
}

#[test]
fn websocket_frames_over_budget_are_dropped_and_counted_but_control_frames_kept() {
    let mut rec = Recorder::new(T0, limits(8));
    get(&mut rec, vec![]);
    let c = Direction::ClientToServer;
    let s = Direction::ServerToClient;
    rec.message(T0 + 1, c, ws(1), Bytes::from_static(b"12345"));
    rec.message(T0 + 2, s, ws(1), Bytes::from_static(b"12345"));
    rec.message(T0 + 3, c, ws(1), Bytes::from_static(b"6789")); // 9 > 8: dropped
    rec.message(T0 + 4, c, ws(1), Bytes::from_static(b"678")); // 8: kept
    rec.message(T0 + 5, s, ws(8), Bytes::from_static(b"\x03\xe8 closing"));
    let ex = rec.finish();
    let got: Vec<(Direction, u64, &[u8])> = ex
        .messages
        .iter()
        .map(|m| (m.direction, m.offset_ns, &m.data[..]))
        .collect();
    assert_eq!(
        got,
        vec![
            (c, 1, &b"12345"[..]),
            (s, 2, b"12345"),
            (c, 4, b"678"),
            (s, 5, b"\x03\xe8 closing"),
        ]
    );
    assert_eq!(
        ex.tags.get("messages_dropped").map(String::as_str),
        Some("1")
    );
}

#[test]
fn grpc_data_becomes_messages_within_the_budget() {
    let mut rec = Recorder::new(T0, limits(6));
    rec.request_head(
        "POST".into(),
        "/svc/M".into(),
        "HTTP/2".into(),
        vec![Header::new("content-type", "application/grpc")],
    );
    assert_eq!(rec.exchange().protocol, Some(Protocol::Grpc));
    let mut wire = BytesMut::new();
    grpc::encode(&mut wire, false, b"abcd");
    grpc::encode(&mut wire, false, b"efgh"); // 8 > 6: dropped
    grpc::encode(&mut wire, true, b"ij");
    // Split across DATA frames in the middle of a prefix.
    rec.request_data(T0 + 1, &wire[..3]);
    rec.request_data(T0 + 2, &wire[3..]);
    rec.end(T0 + 3, Direction::ClientToServer);
    let ex = rec.finish();
    assert_eq!(ex.protocol, Some(Protocol::Grpc));
    let got: Vec<(u64, bool, &[u8])> = ex
        .messages
        .iter()
        .map(|m| {
            let MessageKind::Grpc { compressed } = m.kind else {
                panic!("not grpc: {m:?}")
            };
            (m.offset_ns, compressed, &m.data[..])
        })
        .collect();
    assert_eq!(got, vec![(2, false, &b"abcd"[..]), (2, true, b"ij")]);
    assert_eq!(ex.request.body.size, 0, "a gRPC body is its messages");
    assert!(ex.request.body.data.is_empty());
    assert_eq!(
        ex.tags.get("messages_dropped").map(String::as_str),
        Some("1")
    );
    assert!(ex.error.is_none());
}

#[test]
fn grpc_ending_inside_a_message_is_a_stream_error() {
    let mut rec = Recorder::new(T0, limits(64));
    rec.request_head(
        "POST".into(),
        "/svc/M".into(),
        "HTTP/2".into(),
        vec![Header::new("content-type", "application/grpc+proto")],
    );
    rec.request_data(T0, &[0, 0, 0, 0, 9, b'x']);
    rec.end(T0 + 1, Direction::ClientToServer);
    let err = rec.finish().error.expect("error");
    assert_eq!(err.kind, ErrorKind::StreamError);
}

#[test]
fn grpc_is_recognised_from_the_response_too() {
    let mut rec = Recorder::new(T0, limits(64));
    rec.request_head("POST".into(), "/svc/M".into(), "HTTP/2".into(), vec![]);
    rec.response_head(
        T0,
        200,
        Default::default(),
        "HTTP/2".into(),
        vec![Header::new("content-type", "application/grpc")],
    );
    assert_eq!(rec.exchange().protocol, Some(Protocol::Grpc));
}

#[test]
fn grpc_content_type_over_http1_is_a_body() {
    let mut rec = Recorder::new(T0, limits(64));
    rec.request_head(
        "POST".into(),
        "/svc/M".into(),
        "HTTP/1.1".into(),
        vec![Header::new("content-type", "application/grpc-web")],
    );
    rec.request_data(T0, b"\0\0\0\0\x01x");
    let ex = rec.finish();
    assert!(ex.messages.is_empty());
    assert_eq!(ex.request.body.size, 6);
}

#[test]
fn failure_mid_body_keeps_its_kind_and_what_was_received() {
    let mut rec = Recorder::new(T0, limits(64));
    get(&mut rec, vec![]);
    rec.end(T0 + 1, Direction::ClientToServer);
    ok(&mut rec, T0 + 2, vec![Header::new("Content-Length", "10")]);
    rec.response_data(T0 + 3, b"0123");
    rec.fail(ExchangeError::new(
        ErrorKind::UpstreamReset,
        "upstream closed the connection in the middle of the response body",
    ));
    rec.fail(ExchangeError::new(ErrorKind::Other, "a later reason"));
    let ex = rec.finish();
    let err = ex.error.expect("error");
    assert_eq!(err.kind, ErrorKind::UpstreamReset);
    assert_eq!(&ex.response.expect("response").body.data[..], b"0123");
    assert_eq!(ex.timings.response_end_ns, None, "the response never ended");
}

#[test]
fn a_direction_failure_is_reported_before_the_exchange_failure() {
    let mut rec = Recorder::new(T0, limits(64));
    get(&mut rec, vec![]);
    rec.fail(ExchangeError::new(ErrorKind::ClientAborted, "late"));
    rec.half(Direction::ServerToClient)
        .fail(ExchangeError::new(ErrorKind::StreamError, "frames broken"));
    assert_eq!(
        rec.finish().error.map(|e| e.kind),
        Some(ErrorKind::StreamError)
    );
}

#[test]
fn halves_fed_separately_join_in_time_order() {
    let mut rec = Recorder::new(T0, limits(64));
    get(&mut rec, vec![]);
    {
        let (up, down) = rec.halves();
        up.message(T0 + 3, ws(1), Bytes::from_static(b"c2"));
        down.message(T0 + 1, ws(1), Bytes::from_static(b"s1"));
        up.message(T0 + 1, ws(1), Bytes::from_static(b"c1"));
    }
    let ex = rec.finish();
    let order: Vec<&[u8]> = ex.messages.iter().map(|m| &m.data[..]).collect();
    // Ties keep request-direction messages first, each direction in its own order.
    assert_eq!(order, vec![&b"c1"[..], b"s1", b"c2"]);
}

#[test]
fn traceparent_names_the_trace() {
    let mut rec = Recorder::new(T0, limits(64));
    get(
        &mut rec,
        vec![Header::new(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )],
    );
    assert_eq!(
        rec.finish().trace_id.as_deref(),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
}

const MS: i64 = 1_000_000;

#[test]
fn streamed_body_pieces_become_a_coalesced_chunk_table() {
    use crate::model::BodyChunk;
    let mut rec = Recorder::new(T0, limits(1024));
    get(&mut rec, vec![]);
    ok(&mut rec, T0 + 2 * MS, vec![]);
    // An event with the head, then one every 200 ms; the second arrives in three reads
    // spread over less than a millisecond, which are one chunk.
    rec.response_data(T0 + 2 * MS, b"data: 0\n\n");
    rec.response_data(T0 + 202 * MS, b"data:");
    rec.response_data(T0 + 202 * MS + 400_000, b" 1\n");
    rec.response_data(T0 + 202 * MS + 900_000, b"\n");
    rec.response_data(T0 + 402 * MS, b"data: 2\n\n");
    rec.end(T0 + 402 * MS, Direction::ServerToClient);
    let body = rec.finish().response.expect("response").body;
    assert_eq!(
        body.chunks,
        vec![
            BodyChunk {
                offset_ns: 2_000_000,
                len: 9
            },
            BodyChunk {
                offset_ns: 202_000_000,
                len: 9
            },
            BodyChunk {
                offset_ns: 402_000_000,
                len: 9
            },
        ]
    );
    assert_eq!(
        body.chunks.iter().map(|c| c.len).sum::<u64>(),
        body.data.len() as u64
    );
}

#[test]
fn a_body_that_arrived_at_once_has_no_chunk_table() {
    let mut rec = Recorder::new(T0, limits(1024));
    get(&mut rec, vec![]);
    rec.request_data(T0 + 100, b"upload");
    ok(&mut rec, T0 + 50 * MS, vec![]);
    rec.response_data(T0 + 50 * MS, b"{\"a\":");
    rec.response_data(T0 + 50 * MS + 300_000, b"1}");
    let ex = rec.finish();
    assert!(ex.request.body.chunks.is_empty());
    assert!(ex.response.expect("response").body.chunks.is_empty());

    // One burst long after the head (a long-poll) is timing worth keeping.
    let mut rec = Recorder::new(T0, limits(1024));
    get(&mut rec, vec![]);
    ok(&mut rec, T0 + MS, vec![]);
    rec.response_data(T0 + 900 * MS, b"done");
    let chunks = rec.finish().response.expect("response").body.chunks;
    assert_eq!(chunks.len(), 1);
    assert_eq!(chunks[0].offset_ns, 900_000_000);
}

#[test]
fn the_chunk_table_covers_the_kept_bytes_and_never_goes_back_in_time() {
    let mut rec = Recorder::new(T0, limits(6));
    get(&mut rec, vec![]);
    ok(&mut rec, T0, vec![]);
    rec.response_data(T0 + 10 * MS, b"abcd");
    // A clock stepped back: the piece joins the previous chunk rather than going before it.
    rec.response_data(T0 + 5 * MS, b"ef");
    rec.response_data(T0 + 30 * MS, b"gh");
    let body = rec.finish().response.expect("response").body;
    assert!(body.truncated);
    assert_eq!(&body.data[..], b"abcdef");
    let offsets: Vec<(u64, u64)> = body.chunks.iter().map(|c| (c.offset_ns, c.len)).collect();
    assert_eq!(offsets, vec![(10_000_000, 6)]);
}

#[test]
fn grpc_bodies_keep_no_chunk_table() {
    let mut rec = Recorder::new(T0, limits(1024));
    rec.request_head(
        "POST".into(),
        "/p.S/M".into(),
        "HTTP/2".into(),
        vec![Header::new("content-type", "application/grpc")],
    );
    rec.request_data(T0 + 100 * MS, &[0, 0, 0, 0, 1, 7]);
    let ex = rec.finish();
    assert!(ex.request.body.chunks.is_empty());
    assert_eq!(ex.messages.len(), 1);
}
