use std::io::Write;

use super::*;
use crate::model::{
    Direction, Exchange, ExchangeSink, Header, MessageKind, Request, Response, StreamMessage,
};

fn sample(i: u32, body: &'static [u8]) -> Exchange {
    Exchange {
        connection_id: 1,
        seq: i,
        started_at_ns: 1_700_000_000_000_000_000 + i64::from(i),
        authority: "api.test".into(),
        request: Request {
            method: "POST".into(),
            target: format!("/items/{i}?a=1"),
            version: "HTTP/1.1".into(),
            headers: vec![
                Header::new("Host", "api.test"),
                Header::new("X-Dup", "1"),
                Header::new("x-dup", "2"),
            ],
            body: crate::model::Body::full(body),
            trailers: vec![],
        },
        response: Some(Response {
            status: 201,
            reason: "Created".into(),
            version: "HTTP/1.1".into(),
            headers: vec![Header::new("Content-Type", "application/json")],
            body: crate::model::Body::full(&b"{\"ok\":true}"[..]),
            trailers: vec![Header::new("X-T", "v")],
        }),
        messages: vec![StreamMessage {
            direction: Direction::ServerToClient,
            offset_ns: 5,
            kind: MessageKind::WebSocket {
                opcode: 1,
                fin: true,
            },
            data: bytes::Bytes::from_static(b"hi"),
        }],
        ..Default::default()
    }
}

#[test]
fn write_then_read_round_trips_and_dedups_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let (writer, handle) = Writer::spawn(&path, &Meta::default(), WriterConfig::default()).unwrap();
    let big = &[b'x'; 10_000][..];
    for i in 0..5 {
        handle.record(sample(i, big));
    }
    let summary = writer.finish().unwrap();
    assert_eq!(summary.exchanges, 5);

    let reader = Reader::open(&path).unwrap();
    let all = reader.load_all().unwrap();
    assert_eq!(all.len(), 5);
    let mut expected = sample(3, big);
    expected.id = all[3].id;
    expected.protocol = Some(crate::model::Protocol::Http11);
    expected.scheme = "http".into();
    assert_eq!(all[3], expected);
    let blobs: i64 = reader
        .connection()
        .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        blobs, 3,
        "one request body, one response body, one message, however often repeated"
    );
}

#[test]
fn foreign_and_garbage_files_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.db");
    std::fs::File::create(&garbage)
        .unwrap()
        .write_all(&[0x42; 4096])
        .unwrap();
    assert!(matches!(
        Reader::open(&garbage),
        Err(StoreError::NotARecording { .. })
    ));

    let foreign = dir.path().join("foreign.db");
    let c = rusqlite::Connection::open(&foreign).unwrap();
    c.execute_batch("CREATE TABLE t (x); INSERT INTO t VALUES (1);")
        .unwrap();
    drop(c);
    let err = Reader::open(&foreign).err().unwrap();
    assert!(err.to_string().contains("not an mf recording"), "{err}");

    assert!(matches!(
        Reader::open(&dir.path().join("missing.db")),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn newer_schema_is_refused_with_advice() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    drop(open_write(&path, &Meta::default()).unwrap());
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch(&format!("PRAGMA user_version = {}", SCHEMA_VERSION + 1))
        .unwrap();
    drop(c);
    let err = Reader::open(&path).err().unwrap();
    assert!(err.to_string().contains("please update mf"), "{err}");
}
