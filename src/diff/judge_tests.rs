//! The judge's unit tests: each kind of difference, each rule that makes noise.

use bytes::Bytes;

use super::{Judge, Rules};
use crate::model::{
    Body, Direction, Exchange, Header, MessageKind, Protocol, Request, Response, StreamMessage,
};

/// 2026-12-01T14:00:00Z.
const T0: i64 = 1_796_133_600_000_000_000;

fn ex(method: &str, target: &str, status: u16, headers: &[(&str, &str)], body: &str) -> Exchange {
    Exchange {
        started_at_ns: T0,
        request: Request {
            method: method.into(),
            target: target.into(),
            ..Default::default()
        },
        response: Some(Response {
            status,
            headers: headers.iter().map(|(n, v)| Header::new(*n, v)).collect(),
            body: Body::full(body.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn json_ex(body: &str) -> Exchange {
    ex(
        "GET",
        "/users/3",
        200,
        &[("Content-Type", "application/json")],
        body,
    )
}

fn paths(v: &super::Verdict) -> Vec<String> {
    v.differences.iter().map(|d| d.path.clone()).collect()
}

#[test]
fn equal_exchanges_match() {
    let a = json_ex(r#"{"id":3,"name":"user-3"}"#);
    let v = Judge::new(Rules::defaults()).compare(&a, &a.clone());
    assert!(v.matched(), "{v:?}");
}

#[test]
fn json_differences_have_paths_and_values() {
    let a = json_ex(r#"{"id":3,"name":"user-3","items":[{"n":"a"},{"n":"b"},{"n":"c"}],"gone":1}"#);
    let b = json_ex(
        r#"{"name":"User Three","id":3,"items":[{"n":"a"},{"n":"b"},{"n":"C"}],"new":true}"#,
    );
    let v = Judge::new(Rules::defaults()).compare(&a, &b);
    assert_eq!(paths(&v), ["$.name", "$.items[2].n", "$.gone", "$.new"]);
    assert_eq!(v.differences[0].recorded, "\"user-3\"");
    assert_eq!(v.differences[0].now, "\"User Three\"");
    assert_eq!(v.differences[2].now, "(absent)");
}

#[test]
fn key_order_and_whitespace_do_not_matter() {
    let a = json_ex(r#"{"a":1,"b":[1,2]}"#);
    let b = json_ex("{ \"b\": [1, 2],\n \"a\": 1 }");
    assert!(Judge::new(Rules::defaults()).compare(&a, &b).matched());
}

#[test]
fn status_and_headers_differ_but_volatile_headers_do_not() {
    let a = ex(
        "GET",
        "/",
        200,
        &[
            ("Date", "Mon"),
            ("X-Request-Id", "a1"),
            ("Content-Type", "text/plain"),
            ("Content-Length", "2"),
        ],
        "ok",
    );
    let b = ex(
        "GET",
        "/",
        404,
        &[
            ("Date", "Tue"),
            ("X-Request-Id", "b2"),
            ("content-type", "text/html"),
            ("Content-Length", "2"),
        ],
        "ok",
    );
    let v = Judge::new(Rules::defaults()).compare(&a, &b);
    assert_eq!(paths(&v), ["status", "header content-type"]);
    assert_eq!(v.differences[0].recorded, "200");
    let rules: Vec<&str> = v.ignored.iter().map(|i| i.rule.as_str()).collect();
    assert_eq!(
        rules,
        ["volatile header date", "volatile header x-request-id"]
    );
}

#[test]
fn content_length_follows_the_body() {
    let a = json_ex(r#"{"a":1}"#);
    let mut b = json_ex(r#"{ "a": 1 }"#);
    let mut a2 = a.clone();
    a2.response
        .as_mut()
        .unwrap()
        .headers
        .push(Header::new("Content-Length", "7"));
    b.response
        .as_mut()
        .unwrap()
        .headers
        .push(Header::new("Content-Length", "10"));
    let v = Judge::new(Rules::defaults()).compare(&a2, &b);
    assert!(v.matched(), "{v:?}");
    assert_eq!(v.ignored[0].path, "header content-length");
    let mut c = json_ex(r#"{"a":22}"#);
    c.response
        .as_mut()
        .unwrap()
        .headers
        .push(Header::new("Content-Length", "8"));
    let v = Judge::new(Rules::defaults()).compare(&a2, &c);
    assert_eq!(paths(&v), ["$.a"]);
    assert_eq!(
        v.ignored[0].rule,
        "content-length: follows the body's differences"
    );
}

#[test]
fn set_cookie_values_are_volatile_but_names_are_not() {
    let a = ex(
        "POST",
        "/login",
        200,
        &[("Set-Cookie", "sid=abc; Path=/")],
        "",
    );
    let b = ex(
        "POST",
        "/login",
        200,
        &[("Set-Cookie", "sid=xyz; Path=/")],
        "",
    );
    let v = Judge::new(Rules::defaults()).compare(&a, &b);
    assert!(v.matched());
    assert_eq!(v.ignored.len(), 1);
    let c = ex(
        "POST",
        "/login",
        200,
        &[("Set-Cookie", "session=xyz; Path=/")],
        "",
    );
    assert_eq!(
        paths(&Judge::new(Rules::defaults()).compare(&a, &c)),
        ["header set-cookie names"]
    );
}

#[test]
fn volatile_forms_are_noise_and_say_which_form() {
    let a = json_ex(
        r#"{"id":"3f2a1c9e-1b2c-4d5e-8f90-123456789abc","at":"2026-12-01T14:00:01Z","ms":1796133600123,"tok":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln","name":"a"}"#,
    );
    let mut b = json_ex(
        r#"{"id":"0b8e2f4c-9a1d-4e7f-a2b3-c4d5e6f70812","at":"2026-12-01T14:05:00Z","ms":1796133900456,"tok":"eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIyIn0.ZGlm","name":"a"}"#,
    );
    b.started_at_ns = T0 + 300_000_000_000;
    let v = Judge::new(Rules::defaults()).compare(&a, &b);
    assert!(v.matched(), "{v:?}");
    let rules: Vec<&str> = v.ignored.iter().map(|i| i.rule.as_str()).collect();
    assert_eq!(
        rules,
        ["form: uuid", "form: timestamp", "form: epoch", "form: jwt"]
    );
}

#[test]
fn an_old_timestamp_is_data_not_the_clock() {
    let a = json_ex(r#"{"born":"1990-05-01T00:00:00Z"}"#);
    let b = json_ex(r#"{"born":"1991-05-01T00:00:00Z"}"#);
    assert_eq!(
        paths(&Judge::new(Rules::defaults()).compare(&a, &b)),
        ["$.born"]
    );
}

#[test]
fn ignore_rules_by_json_path_and_endpoint() {
    let a = json_ex(r#"{"build":"1.2","items":[{"rev":1},{"rev":2}],"name":"x"}"#);
    let b = json_ex(r#"{"build":"1.3","items":[{"rev":5},{"rev":6}],"name":"y"}"#);
    let mut rules = Rules::defaults();
    rules.add_ignore(None, "$.build".into());
    rules.add_ignore(Some("GET /users/{id}".into()), "$.items[*].rev".into());
    rules.add_ignore(Some("POST /users/{id}".into()), "$.name".into());
    let v = Judge::new(rules).compare(&a, &b);
    assert_eq!(paths(&v), ["$.name"]);
    assert_eq!(v.ignored[0].rule, "ignore: $.build");
    assert_eq!(v.ignored[1].rule, "ignore: $.items[*].rev");
}

#[test]
fn learned_noise_comes_from_identical_requests_only() {
    let rec = [
        json_ex(r#"{"n":1,"name":"a","hits":10}"#),
        json_ex(r#"{"n":2,"name":"a","hits":11}"#),
        // Another request: its changes teach nothing about GET /users/3.
        ex("GET", "/users/3?v=2", 200, &[], r#"{"name":"b"}"#),
    ];
    let mut rules = Rules::defaults();
    rules.learn(rec.iter());
    let now = json_ex(r#"{"n":9,"name":"z","hits":99}"#);
    let v = Judge::new(rules).compare(&rec[0], &now);
    assert_eq!(paths(&v), ["$.name"]);
    assert!(
        v.ignored.iter().all(|i| i.rule.starts_with("learned")),
        "{v:?}"
    );
    assert_eq!(v.ignored.len(), 2);
}

#[test]
fn text_by_line_with_noise_inside_lines() {
    let a = ex(
        "GET",
        "/page",
        200,
        &[("Content-Type", "text/html")],
        "<h1>Hi</h1>\n<p>a</p>\n<footer>2026-12-01T14:00:00Z</footer>\n",
    );
    let b = ex(
        "GET",
        "/page",
        200,
        &[("Content-Type", "text/html")],
        "<h1>Hi</h1>\n<p>b</p>\n<footer>2026-12-01T14:00:09Z</footer>\n",
    );
    let v = Judge::new(Rules::defaults()).compare(&a, &b);
    assert_eq!(paths(&v), ["body line 2"]);
    assert_eq!(v.ignored[0].path, "body line 3");
}

#[test]
fn binary_by_hash() {
    let mut a = ex("GET", "/img", 200, &[], "");
    let mut b = a.clone();
    a.response.as_mut().unwrap().body = Body::full(vec![0u8, 1, 2, 3]);
    b.response.as_mut().unwrap().body = Body::full(vec![0u8, 1, 2, 4]);
    let v = Judge::new(Rules::defaults()).compare(&a, &b);
    assert_eq!(paths(&v), ["body"]);
    assert!(v.differences[0].recorded.starts_with("4 bytes, blake3 "));
}

#[test]
fn gzip_bodies_compare_inflated() {
    use std::io::Write;
    let gz = |s: &str| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(s.as_bytes()).unwrap();
        e.finish().unwrap()
    };
    let mut a = json_ex("");
    let mut b = json_ex("");
    for (x, s) in [(&mut a, r#"{"a":1}"#), (&mut b, r#"{"a":2}"#)] {
        let r = x.response.as_mut().unwrap();
        r.headers.push(Header::new("Content-Encoding", "gzip"));
        r.body = Body::full(gz(s));
    }
    assert_eq!(
        paths(&Judge::new(Rules::defaults()).compare(&a, &b)),
        ["$.a"]
    );
}

fn msg(dir: Direction, kind: MessageKind, data: &str) -> StreamMessage {
    StreamMessage {
        direction: dir,
        offset_ns: 0,
        kind,
        data: Bytes::from(data.to_string()),
    }
}

#[test]
fn grpc_messages_in_order_and_trailers() {
    let grpc = MessageKind::Grpc { compressed: false };
    let mut a = ex(
        "POST",
        "/routes.Routes/Chat",
        200,
        &[("content-type", "application/grpc")],
        "",
    );
    a.protocol = Some(Protocol::Grpc);
    let mut b = a.clone();
    a.messages = vec![
        msg(Direction::ClientToServer, grpc.clone(), "ignored"),
        msg(Direction::ServerToClient, grpc.clone(), r#"{"x":1}"#),
        msg(Direction::ServerToClient, grpc.clone(), r#"{"x":2}"#),
    ];
    b.messages = vec![
        msg(Direction::ServerToClient, grpc.clone(), r#"{"x":1}"#),
        msg(Direction::ServerToClient, grpc.clone(), r#"{"x":3}"#),
        msg(Direction::ServerToClient, grpc.clone(), "\u{1}\u{2}"),
    ];
    a.response.as_mut().unwrap().trailers = vec![Header::new("grpc-status", "0")];
    b.response.as_mut().unwrap().trailers = vec![
        Header::new("grpc-status", "5"),
        Header::new("grpc-message", "not found"),
    ];
    let v = Judge::new(Rules::defaults()).compare(&a, &b);
    assert_eq!(
        paths(&v),
        [
            "grpc trailer grpc-status",
            "grpc trailer grpc-message",
            "grpc message 2 $.x",
            "grpc message 3"
        ]
    );
    assert_eq!(v.differences[3].recorded, "(absent)");
}

#[test]
fn websocket_frames_in_order_json_by_value_pings_skipped() {
    let text = MessageKind::WebSocket {
        opcode: 1,
        fin: true,
        compressed: false,
    };
    let ping = MessageKind::WebSocket {
        opcode: 9,
        fin: true,
        compressed: false,
    };
    let mut a = ex(
        "GET",
        "/ws",
        101,
        &[("Upgrade", "websocket"), ("Sec-WebSocket-Accept", "abc")],
        "",
    );
    a.protocol = Some(Protocol::WebSocket);
    let mut b = a.clone();
    b.response.as_mut().unwrap().headers[1] = Header::new("Sec-WebSocket-Accept", "xyz");
    a.messages = vec![
        msg(Direction::ServerToClient, text.clone(), "hello"),
        msg(
            Direction::ServerToClient,
            text.clone(),
            r#"{"n":1,"at":"2026-12-01T14:00:00Z"}"#,
        ),
        msg(Direction::ServerToClient, text.clone(), "bye"),
    ];
    b.messages = vec![
        msg(Direction::ServerToClient, text.clone(), "hello"),
        msg(Direction::ServerToClient, ping, ""),
        msg(
            Direction::ServerToClient,
            text.clone(),
            r#"{"at":"2026-12-01T14:00:02Z","n":1}"#,
        ),
        msg(Direction::ServerToClient, text, "BYE"),
    ];
    let v = Judge::new(Rules::defaults()).compare(&a, &b);
    assert_eq!(paths(&v), ["ws frame 3"]);
}

#[test]
fn no_answer_is_a_status_difference() {
    let a = json_ex("{}");
    let mut b = a.clone();
    b.response = None;
    b.error = Some(crate::model::ExchangeError::new(
        crate::model::ErrorKind::UpstreamReset,
        "reset",
    ));
    let v = Judge::new(Rules::defaults()).compare(&a, &b);
    assert_eq!(v.differences[0].now, "(no answer: reset)");
}

#[test]
fn many_differences_are_capped() {
    let a: Vec<u32> = (0..500).collect();
    let b: Vec<u32> = (1..501).collect();
    let a = json_ex(&serde_json::to_string(&a).unwrap());
    let b = json_ex(&serde_json::to_string(&b).unwrap());
    let v = Judge::new(Rules::defaults()).compare(&a, &b);
    assert_eq!(v.differences.len(), 51);
    assert_eq!(v.differences[50].now, "450 more differences");
}

#[test]
fn credentials_never_reach_a_difference() {
    let a = json_ex(r#"{"auth":{"access_token":"s3cr3t-one"},"tokens":["t1"],"name":"a"}"#);
    let b = json_ex(r#"{"auth":{"access_token":"s3cr3t-two"},"tokens":["t2"],"name":"b"}"#);
    let v = Judge::new(Rules::defaults()).compare(&a, &b);
    assert_eq!(paths(&v), ["$.auth.access_token", "$.tokens[0]", "$.name"]);
    assert_eq!(v.differences[0].recorded, "<redacted>");
    assert_eq!(v.differences[1].now, "<redacted>");
    assert_eq!(v.differences[2].now, "\"b\"");
    let a = ex("GET", "/", 200, &[("X-Auth-Token", "one")], "");
    let b = ex("GET", "/", 200, &[("X-Auth-Token", "two")], "");
    let v = Judge::new(Rules::defaults()).compare(&a, &b);
    assert_eq!(v.differences[0].now, "<redacted>");
}

#[test]
fn grpc_protobuf_messages_compare_field_by_field() {
    let grpc = MessageKind::Grpc { compressed: false };
    let mut a = ex("POST", "/routes.Routes/Get", 200, &[], "");
    a.protocol = Some(Protocol::Grpc);
    let mut b = a.clone();
    let proto = |name: &[u8], n: u8| {
        let mut m = vec![0x0a, name.len() as u8];
        m.extend_from_slice(name);
        m.extend_from_slice(&[0x10, n]);
        StreamMessage {
            direction: Direction::ServerToClient,
            offset_ns: 0,
            kind: grpc.clone(),
            data: Bytes::from(m),
        }
    };
    a.messages = vec![proto(b"route-1", 3)];
    b.messages = vec![proto(b"route-1", 4)];
    let v = Judge::new(Rules::defaults()).compare(&a, &b);
    assert_eq!(paths(&v), ["grpc message 1 $.2"]);
    assert_eq!(
        (
            v.differences[0].recorded.as_str(),
            v.differences[0].now.as_str()
        ),
        ("3", "4")
    );
}

#[test]
fn learning_skips_status_and_shape_changes() {
    // The same request answered 200 then 404 (deleted meanwhile), then with a new field:
    // the service's state moved on; none of it is noise.
    let rec = [
        json_ex(r#"{"name":"a"}"#),
        ex("GET", "/users/3", 404, &[], r#"{"error":"gone"}"#),
        json_ex(r#"{"name":"a","extra":1}"#),
    ];
    let mut rules = Rules::defaults();
    rules.learn(rec.iter());
    let v = Judge::new(rules).compare(&rec[0], &json_ex(r#"{"name":"a","extra":2}"#));
    assert_eq!(paths(&v), ["$.extra"]);
}
