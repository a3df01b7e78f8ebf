//! The rebinder's unit tests: a created id and a login token flow into later requests.

use super::Rebinder;
use crate::model::{
    Body, Direction, Exchange, Header, MessageKind, Request, Response, StreamMessage,
};

fn answered(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Exchange {
    Exchange {
        request: Request {
            method: method.into(),
            target: target.into(),
            ..Default::default()
        },
        response: Some(Response {
            status: 200,
            headers: headers.iter().map(|(n, v)| Header::new(*n, v)).collect(),
            body: Body::full(body.to_string()),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn request(method: &str, target: &str, headers: &[(&str, &str)], body: &str) -> Exchange {
    let mut e = answered(method, target, headers, body);
    e.request.headers = e.response.take().unwrap().headers;
    e.request.body = Body::full(body.to_string());
    e
}

#[test]
fn a_created_id_is_rebound_in_later_paths_and_bodies() {
    let mut r = Rebinder::new();
    let rec = answered("POST", "/items", &[], r#"{"id":7,"name":"pen"}"#);
    let now = answered("POST", "/items", &[], r#"{"id":12,"name":"pen"}"#);
    r.learn(&rec, &now);
    let mut get = request("GET", "/items/7", &[], "");
    r.rewrite(&mut get);
    assert_eq!(get.request.target, "/items/12");
    let mut put = request(
        "PUT",
        "/orders?item_id=7&page=7",
        &[
            ("Content-Type", "application/json"),
            ("Content-Length", "26"),
        ],
        r#"{"item_id":7,"quantity":7}"#,
    );
    r.rewrite(&mut put);
    assert_eq!(put.request.target, "/orders?item_id=12&page=7");
    assert_eq!(
        &put.request.body.data[..],
        br#"{"item_id":12,"quantity":7}"#
    );
    assert_eq!(put.request.headers[1].value[..], b"27"[..]);
}

#[test]
fn a_login_token_is_rebound_in_authorization_and_cookies() {
    let mut r = Rebinder::new();
    let rec = answered(
        "POST",
        "/login",
        &[("Set-Cookie", "sid=old-session; Path=/")],
        r#"{"access_token":"tok-recorded-1"}"#,
    );
    let now = answered(
        "POST",
        "/login",
        &[("Set-Cookie", "sid=new-session; Path=/")],
        r#"{"access_token":"tok-fresh-2"}"#,
    );
    r.learn(&rec, &now);
    let mut get = request(
        "GET",
        "/me",
        &[
            ("Authorization", "Bearer tok-recorded-1"),
            ("Cookie", "theme=dark; sid=old-session"),
        ],
        "",
    );
    r.rewrite(&mut get);
    assert_eq!(get.request.headers[0].value[..], b"Bearer tok-fresh-2"[..]);
    assert_eq!(
        get.request.headers[1].value[..],
        b"theme=dark; sid=new-session"[..]
    );
}

#[test]
fn location_uuids_and_messages() {
    let mut r = Rebinder::new();
    let u1 = "3f2a1c9e-1b2c-4d5e-8f90-123456789abc";
    let u2 = "0b8e2f4c-9a1d-4e7f-a2b3-c4d5e6f70812";
    let rec = answered(
        "POST",
        "/carts",
        &[("Location", "/carts/41")],
        &format!(r#"{{"ref":"{u1}"}}"#),
    );
    let now = answered(
        "POST",
        "/carts",
        &[("Location", "http://h/carts/99")],
        &format!(r#"{{"ref":"{u2}"}}"#),
    );
    r.learn(&rec, &now);
    let mut get = request("GET", &format!("/carts/41/lines?ref={u1}"), &[], "");
    get.messages.push(StreamMessage {
        direction: Direction::ClientToServer,
        offset_ns: 0,
        kind: MessageKind::WebSocket {
            opcode: 1,
            fin: true,
            compressed: false,
        },
        data: format!(r#"{{"cart":"{u1}"}}"#).into(),
    });
    r.rewrite(&mut get);
    assert_eq!(get.request.target, format!("/carts/99/lines?ref={u2}"));
    assert_eq!(get.messages[0].data, format!(r#"{{"cart":"{u2}"}}"#));
}

#[test]
fn nothing_learned_nothing_changed() {
    let mut r = Rebinder::new();
    let same = answered(
        "POST",
        "/items",
        &[],
        r#"{"id":7,"at":"2026-12-01T14:00:00Z"}"#,
    );
    let mut later = answered(
        "POST",
        "/items",
        &[],
        r#"{"id":7,"at":"2026-12-01T14:00:05Z"}"#,
    );
    r.learn(&same, &later);
    assert_eq!(r.len(), 0, "a timestamp is not an id");
    let before = later.clone();
    r.rewrite(&mut later);
    assert_eq!(later, before);
}

#[test]
fn rebound_ids_are_not_differences_but_changed_named_ids_are() {
    use super::{Judge, Rules};
    let mut r = Rebinder::new();
    let rec = answered("POST", "/items", &[], r#"{"id":7,"name":"pen"}"#);
    let now = answered("POST", "/items", &[], r#"{"id":12,"name":"Pen"}"#);
    r.learn(&rec, &now);
    let mut v = Judge::new(Rules::defaults()).compare(&rec, &now);
    r.absorb(&mut v);
    assert_eq!(v.differences.len(), 1, "{v:?}");
    assert_eq!(v.differences[0].path, "$.name");
    assert_eq!(
        v.ignored[0].rule,
        "rebound: an id or token this run created"
    );
    // GET /users/3 answering id 4: the request named 3, so 4 is a difference.
    let rec = answered("GET", "/users/3", &[], r#"{"id":3}"#);
    let now = answered("GET", "/users/3", &[], r#"{"id":4}"#);
    let mut r = Rebinder::new();
    r.learn(&rec, &now);
    let mut v = Judge::new(Rules::defaults()).compare(&rec, &now);
    r.absorb(&mut v);
    assert_eq!(v.differences.len(), 1);
}
