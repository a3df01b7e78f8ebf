//! The pages over a real recording file: paging, filters, detail, escaping.

use bytes::Bytes;

use super::*;
use crate::model::{
    Body, Direction, Exchange, Header, MessageKind, Protocol, Request, Response, StreamMessage,
};

fn exchange(i: u32) -> Exchange {
    let status = if i.is_multiple_of(10) { 503 } else { 200 };
    let (method, ctype, body): (&str, &str, &[u8]) = if i == 7 {
        ("POST", "text/html", b"<script>alert(1)</script>")
    } else {
        ("GET", "application/json", br#"{"ok":true}"#)
    };
    Exchange {
        connection_id: u64::from(i / 4),
        seq: i % 4,
        protocol: Some(if i == 9 {
            Protocol::WebSocket
        } else {
            Protocol::Http11
        }),
        started_at_ns: 1_796_119_200_000_000_000 + i64::from(i) * 1_000_000_000,
        scheme: "http".into(),
        authority: "api.test".into(),
        request: Request {
            method: method.into(),
            target: format!("/items/{i}").into(),
            version: "HTTP/1.1".into(),
            headers: vec![Header::new("Content-Type", ctype)],
            body: Body::full(Bytes::from_static(if i == 7 { body } else { b"" })),
            trailers: Vec::new(),
        },
        response: Some(Response {
            status,
            reason: "OK".into(),
            version: "HTTP/1.1".into(),
            headers: vec![Header::new("Content-Type", "application/json")],
            body: Body::full(Bytes::from_static(br#"{"ok":true}"#)),
            trailers: Vec::new(),
        }),
        messages: if i == 9 {
            vec![
                StreamMessage {
                    direction: Direction::ServerToClient,
                    offset_ns: 1_000_000,
                    kind: MessageKind::WebSocket {
                        opcode: 1,
                        fin: true,
                        compressed: false,
                    },
                    data: Bytes::from_static(b"<i>hi</i>"),
                },
                StreamMessage {
                    direction: Direction::ClientToServer,
                    offset_ns: 2_000_000,
                    kind: MessageKind::WebSocket {
                        opcode: 8,
                        fin: true,
                        compressed: false,
                    },
                    data: Bytes::from_static(&[0x03, 0xe8, b'b', b'y', b'e']),
                },
            ]
        } else {
            Vec::new()
        },
        ..Exchange::default()
    }
}

/// A viewer over a recording of `n` exchanges in a temporary folder.
fn viewer(n: u32) -> (tempfile::TempDir, Viewer) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    crate::store::write_exchanges(&path, &crate::store::Meta::default(), (1..=n).map(exchange))
        .unwrap();
    let reader = crate::store::open_reader(&path).unwrap();
    let v = Viewer::new(Some(reader), "t.db", Box::new(|| Err("off".into())), false);
    (dir, v)
}

fn get(v: &Viewer, path: &str, query: &str) -> (u16, String) {
    let r = v.page(&PageRequest {
        method: "GET".into(),
        path: path.into(),
        query: query.into(),
    });
    (r.status, String::from_utf8_lossy(&r.body).into_owned())
}

fn ids(html: &str) -> Vec<i64> {
    html.split("<tr data-id=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next()?.parse().ok())
        .collect()
}

#[test]
fn pages_follow_each_other_by_id() {
    let (_dir, v) = viewer(120);
    let (status, first) = get(&v, "/", "");
    assert_eq!(status, 200);
    assert_eq!(ids(&first), (1..=50).collect::<Vec<_>>());
    assert!(first.contains("href=\"/?after=50\""), "{first}");
    let (_, second) = get(&v, "/", "after=50");
    assert_eq!(ids(&second), (51..=100).collect::<Vec<_>>());
    let (_, last) = get(&v, "/", "after=100");
    assert_eq!(ids(&last), (101..=120).collect::<Vec<_>>());
    assert!(!last.contains("next page"), "the last page has no next");
    // Filters hold across pages: the cursor link keeps them.
    let (_, errors) = get(&v, "/", "status=5xx");
    assert_eq!(ids(&errors), (1..=12).map(|i| i * 10).collect::<Vec<_>>());
    let (_, method) = get(&v, "/", "method=POST");
    assert_eq!(ids(&method), [7]);
    let (_, conn) = get(&v, "/", "connection=1&after=4");
    assert_eq!(ids(&conn), [5, 6, 7]);
    let (_, bad) = get(&v, "/", "status=abc");
    assert!(bad.contains("is not a status"), "{bad}");
}

#[test]
fn recorded_data_is_shown_as_text_on_every_page() {
    let (_dir, v) = viewer(12);
    let (status, detail) = get(&v, "/x/7", "");
    assert_eq!(status, 200);
    assert!(!detail.contains("<script>alert"), "{detail}");
    assert!(
        detail.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{detail}"
    );
    assert!(detail.contains("curl -X POST"), "{detail}");
    let (_, ws) = get(&v, "/x/9", "");
    assert!(ws.contains("data-direction=\"server\""), "{ws}");
    assert!(ws.contains("&lt;i&gt;hi&lt;/i&gt;"), "{ws}");
    assert!(ws.contains("close 1000"), "{ws}");
    assert_eq!(get(&v, "/x/999", "").0, 404);
    assert_eq!(get(&v, "/nope", "").0, 404);
    // No control center without a replay beside the pages.
    assert_eq!(get(&v, "/control", "").0, 404);
    let (_, diagram) = get(&v, "/diagram", "connection=1");
    assert!(
        diagram.contains("client-&gt;&gt;mf: POST /items/7"),
        "{diagram}"
    );
    let (_, endpoints) = get(&v, "/endpoints", "");
    assert!(endpoints.contains("Inference failed: off"), "{endpoints}");
    // The busiest connection near the start is drawn (the first of the busiest ones).
    assert!(
        endpoints.contains("Sequence diagram of connection 1<"),
        "{endpoints}"
    );
    assert_eq!(endpoints.matches("class=\"arrow\"").count(), 16);
}
