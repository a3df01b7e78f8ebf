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
            target: format!("/items/{i}?a=1").into(),
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
                compressed: false,
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
        handle.record(Box::new(sample(i, big)));
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
        blobs, 4,
        "one request body, one header set, one response body, one message, however often repeated"
    );
}

#[test]
fn request_header_sets_that_change_and_come_back_are_each_stored_right() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let (writer, handle) = Writer::spawn(&path, &Meta::default(), WriterConfig::default()).unwrap();
    // A, A, B, A, B, B, C: the writer compares each set with the row before.
    let sets = [0, 0, 1, 0, 1, 1, 2];
    for (i, set) in sets.iter().enumerate() {
        let mut ex = sample(i as u32, b"");
        ex.request
            .headers
            .push(Header::new("X-Set", format!("{set}")));
        handle.record(Box::new(ex));
    }
    assert_eq!(writer.finish().unwrap().exchanges, sets.len() as u64);
    let all = Reader::open(&path).unwrap().load_all().unwrap();
    let got: Vec<String> = all
        .iter()
        .map(|e| String::from_utf8_lossy(&e.request.headers[3].value).into_owned())
        .collect();
    assert_eq!(got, ["0", "0", "1", "0", "1", "1", "2"]);
    assert!(all
        .iter()
        .all(|e| e.request.headers[..3] == sample(0, b"").request.headers[..]));
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

/// Every schema version this mf has written has a recording in `fixtures/recordings/`, and
/// each one opens and reads: adding a schema version without its fixture fails here.
#[test]
fn recordings_of_every_schema_version_open_and_read() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/recordings");
    for version in 1..=SCHEMA_VERSION {
        let src = fixtures.join(format!("v{version}.db"));
        assert!(
            src.exists(),
            "schema v{version} has no fixture: add {} (a small recording written by that version)",
            src.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("rec.db");
        std::fs::copy(&src, &path).unwrap();
        let reader = Reader::open(&path).unwrap_or_else(|e| panic!("v{version}: {e}"));
        let all: Vec<Exchange> = reader.load_all().unwrap();
        assert!(all.len() >= 3, "v{version}: {} exchanges", all.len());
        assert_eq!(all[0].request.method, "GET", "v{version}");
        assert_eq!(all[0].response.as_ref().map(|r| r.status), Some(200));
        let summaries = reader.summaries().unwrap();
        assert_eq!(summaries.len(), all.len(), "v{version}");
    }
    // The v2 fixture holds a refused upstream: its kind survives the round trip.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rec.db");
    std::fs::copy(fixtures.join("v2.db"), &path).unwrap();
    let reader = Reader::open(&path).unwrap();
    let failed: Vec<Exchange> = reader
        .load_all()
        .unwrap()
        .into_iter()
        .filter(|e| e.error.is_some())
        .collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(
        failed[0].error.as_ref().map(|e| e.kind),
        Some(crate::model::ErrorKind::UpstreamRefused)
    );
    // The v3 fixture adds a recorded Server-Sent Events stream: five events 200 ms apart.
    let path = dir.path().join("v3.db");
    std::fs::copy(fixtures.join("v3.db"), &path).unwrap();
    let all = Reader::open(&path).unwrap().load_all().unwrap();
    let sse = all
        .iter()
        .find(|e| e.request.path() == "/events")
        .and_then(|e| e.response.as_ref())
        .expect("v3 fixture has an SSE exchange");
    let offsets: Vec<u64> = sse.body.chunks.iter().map(|c| c.offset_ns).collect();
    assert_eq!(offsets.len(), 5, "{offsets:?}");
    assert!(
        offsets.windows(2).all(|w| w[1] - w[0] > 150_000_000),
        "{offsets:?}"
    );
}

/// A v1 recording kept only error text; the v2 migration gives each old error the kind its
/// words meant, so replay of an old recording still answers a timeout with 504.
#[test]
fn v1_error_text_migrates_to_kinds() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(schema::MIGRATIONS[0]).unwrap();
        conn.execute_batch(&format!(
            "PRAGMA user_version = 1; PRAGMA application_id = {APPLICATION_ID};"
        ))
        .unwrap();
        let errors = [
            ("upstream sent no response within 30s", "upstream_timeout"),
            (
                "upstream 127.0.0.1:9 refused or unreachable: Connection refused",
                "upstream_refused",
            ),
            (
                "capture hole: 1448 bytes of the response missing",
                "capture_hole",
            ),
            ("something odd", "other"),
        ];
        for (i, (text, _)) in errors.iter().enumerate() {
            conn.execute(
                "INSERT INTO exchanges (connection_id, seq, protocol, started_at_ns, method, target,
                 req_version, req_headers, error) VALUES (1, ?1, 'http/1.1', 0, 'GET', '/', 'HTTP/1.1', x'', ?2)",
                rusqlite::params![i as i64, text],
            )
            .unwrap();
        }
        drop(conn);
        let conn = open_read(&path).unwrap();
        let kinds: Vec<(String, String)> = conn
            .prepare("SELECT error, error_kind FROM exchanges ORDER BY id")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let want: Vec<(String, String)> = errors
            .iter()
            .map(|(t, k)| (t.to_string(), k.to_string()))
            .collect();
        assert_eq!(kinds, want);
    }
}

#[test]
fn streaming_every_exchange_matches_loading_them() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let (writer, handle) = Writer::spawn(&path, &Meta::default(), WriterConfig::default()).unwrap();
    handle.record(Box::new(sample(0, b"request body")));
    let mut bodiless = sample(1, b"");
    bodiless.error = Some(crate::model::ExchangeError::new(
        crate::model::ErrorKind::UpstreamTimeout,
        "no answer within 1s",
    ));
    handle.record(Box::new(bodiless));
    writer.finish().unwrap();

    let reader = Reader::open(&path).unwrap();
    let mut streamed = Vec::new();
    reader
        .for_each(|ex| {
            streamed.push(ex);
            true
        })
        .unwrap();
    assert_eq!(streamed, reader.load_all().unwrap());
    assert_eq!(&streamed[0].request.body.data[..], b"request body");
    assert_eq!(
        streamed[1].error.as_ref().map(|e| e.kind),
        Some(crate::model::ErrorKind::UpstreamTimeout)
    );
}

#[test]
fn the_backend_traits_page_listings_and_replace_patterns() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let written =
        write_exchanges(&path, &Meta::default(), (0..7).map(|i| sample(i, b"b"))).unwrap();
    assert_eq!(written, 7);

    let reader = open_reader(&path).unwrap();
    assert_eq!(reader.count().unwrap(), 7);
    let mut paged = Vec::new();
    let mut after = 0;
    loop {
        let page = reader.summaries_after(after, 3).unwrap();
        let Some(last) = page.last() else { break };
        assert!(page.len() <= 3);
        after = last.id;
        paged.extend(page.into_iter().map(|s| s.id));
    }
    let all: Vec<i64> = reader.summaries().unwrap().iter().map(|s| s.id).collect();
    assert_eq!(paged, all);
    assert_eq!(all.len(), 7);
    let mut targets = Vec::new();
    reader
        .for_each_target(&mut |m, t| targets.push(format!("{m} {t}")))
        .unwrap();
    assert_eq!(targets[6], "POST /items/6?a=1");
    drop(reader);

    let row = |kind: &str| PatternRow {
        kind: kind.into(),
        summary: format!("a {kind}"),
        detail: serde_json::json!({"k": kind}),
    };
    let mut writer = open_existing_writer(&path).unwrap();
    writer
        .replace_patterns(&[row("retry"), row("ordering")])
        .unwrap();
    writer.replace_patterns(&[row("transition")]).unwrap();
    drop(writer);
    assert_eq!(
        open_reader(&path).unwrap().patterns().unwrap(),
        [row("transition")]
    );
    assert!(matches!(
        open_existing_writer(&dir.path().join("missing.db")),
        Err(StoreError::NotFound { .. })
    ));
}

fn streamed(i: u32) -> Exchange {
    let mut ex = sample(i, b"");
    let resp = ex.response.as_mut().unwrap();
    resp.headers = vec![Header::new("Content-Type", "text/event-stream")];
    resp.body = crate::model::Body::full(&b"data: 0\n\ndata: 1\n\ndata: 2\n\n"[..]);
    resp.body.chunks = (0..3)
        .map(|n| crate::model::BodyChunk {
            offset_ns: 1_500_000 + n * 200_000_123,
            len: 9,
        })
        .collect();
    ex.request.body.chunks = vec![crate::model::BodyChunk {
        offset_ns: 7,
        len: 0,
    }];
    ex
}

#[test]
fn chunk_tables_round_trip_through_every_read_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    write_exchanges(
        &path,
        &Meta::default(),
        [streamed(0), sample(1, b"x")].into_iter(),
    )
    .unwrap();
    let reader = Reader::open(&path).unwrap();
    let all = reader.load_all().unwrap();
    let want = streamed(0);
    assert_eq!(
        all[0].response.as_ref().unwrap().body,
        want.response.unwrap().body
    );
    assert_eq!(all[0].request.body.chunks, want.request.body.chunks);
    assert!(all[1].response.as_ref().unwrap().body.chunks.is_empty());
    let mut streamed_rows = Vec::new();
    reader
        .for_each(|ex| {
            streamed_rows.push(ex);
            true
        })
        .unwrap();
    assert_eq!(streamed_rows, all);
    assert_eq!(reader.load(all[0].id).unwrap(), all[0]);
    // Only the streamed body has a table, and it is a few bytes, not a copy of the body.
    let (tables, bytes): (i64, i64) = reader
        .connection()
        .query_row(
            "SELECT count(resp_body_chunks), coalesce(sum(length(resp_body_chunks)), 0) FROM exchanges",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((tables, bytes <= 1 + 3 * 6), (1, true), "{bytes} bytes");
}

#[test]
fn a_damaged_chunk_table_is_reported_as_damage() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    write_exchanges(&path, &Meta::default(), std::iter::once(streamed(0))).unwrap();
    let c = rusqlite::Connection::open(&path).unwrap();
    c.execute_batch("UPDATE exchanges SET resp_body_chunks = x'01ff'")
        .unwrap();
    drop(c);
    let err = Reader::open(&path).unwrap().load_all().err().unwrap();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
}

/// A v2 recording gains the chunk columns (empty for its bodies) and takes new streamed
/// exchanges beside its old ones.
#[test]
fn v2_recordings_migrate_to_chunk_tables() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/recordings");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    std::fs::copy(fixtures.join("v2.db"), &path).unwrap();
    let before = {
        let reader = Reader::open(&path).unwrap();
        let version: i32 = reader
            .connection()
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        reader.load_all().unwrap()
    };
    assert!(before
        .iter()
        .filter_map(|e| e.response.as_ref())
        .all(|r| r.body.chunks.is_empty()));
    write_exchanges(&path, &Meta::default(), std::iter::once(streamed(9))).unwrap();
    let after = Reader::open(&path).unwrap().load_all().unwrap();
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(after[..before.len()], before[..]);
    let last = after.last().unwrap().response.as_ref().unwrap();
    assert_eq!(last.body.chunks.len(), 3);
}

#[test]
fn a_scan_refilling_one_exchange_leaves_nothing_of_the_row_before() {
    // Rows that differ in every optional part, each after one that has it: a field the walk
    // forgot to set would carry the earlier row's value into the next.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r.db");
    let mut bare = sample(1, b"");
    bare.response = None;
    bare.messages.clear();
    bare.request.headers.clear();
    bare.error = Some(crate::model::ExchangeError::new(
        crate::model::ErrorKind::UpstreamTimeout,
        "no answer",
    ));
    bare.client_addr = Some("127.0.0.1:1".into());
    let mut plain = sample(3, b"");
    plain.response.as_mut().unwrap().trailers.clear();
    plain.response.as_mut().unwrap().body = crate::model::Body::default();
    plain.messages.clear();
    plain.tags.insert("k".into(), "v".into());
    let rows = [
        sample(0, b"first body"),
        bare,
        streamed(2),
        plain,
        sample(4, b"x"),
    ];
    write_exchanges(&path, &Meta::default(), rows.into_iter()).unwrap();
    let reader = Reader::open(&path).unwrap();
    let mut lent = Vec::new();
    let mut kept = Exchange::default();
    reader
        .scan(|ex| {
            lent.push(ex.clone());
            // What the caller swaps in is refilled too: give it the first row back.
            std::mem::swap(ex, &mut kept);
            true
        })
        .unwrap();
    assert_eq!(lent, reader.load_all().unwrap());
    assert_eq!(lent.len(), 5);
}
