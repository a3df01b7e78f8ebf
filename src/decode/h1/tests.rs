//! Decoder tests: framing cases, hostile input, and any split of the input giving the
//! same events (property test).

use super::*;
use proptest::prelude::*;

fn drain(d: &mut Decoder) -> Result<Vec<Event>, Error> {
    let mut out = Vec::new();
    while let Some(ev) = d.poll()? {
        out.push(ev);
    }
    Ok(out)
}

/// Merges adjacent Data events so that differently split inputs compare equal.
fn normalise(events: Vec<Event>) -> Vec<Event> {
    let mut out: Vec<Event> = Vec::new();
    for ev in events {
        if let (Some(Event::Data(prev)), Event::Data(d)) = (out.last_mut(), &ev) {
            let mut joined = prev.to_vec();
            joined.extend_from_slice(d);
            *prev = Bytes::from(joined);
            continue;
        }
        if matches!(&ev, Event::Data(d) if d.is_empty()) {
            continue;
        }
        out.push(ev);
    }
    out
}

#[test]
fn head_incomplete_gives_no_event_then_request() {
    let mut d = Decoder::new(Role::Request);
    d.feed(b"GET /users/7 HTTP/1.1\r\nHost: a\r\n");
    assert_eq!(d.poll(), Ok(None));
    d.feed(b"\r\n");
    let Some(Event::RequestHead(h)) = d.poll().unwrap() else {
        panic!("no head")
    };
    assert_eq!(h.method, "GET");
    assert_eq!(h.target, "/users/7");
    assert_eq!(h.headers, vec![Header::new("Host", "a")]);
    assert_eq!(d.poll(), Ok(Some(Event::End)));
    assert!(d.is_idle());
}

#[test]
fn keeps_header_case_order_and_duplicates() {
    let mut d = Decoder::new(Role::Response);
    d.push_request_method("GET");
    d.feed(b"HTTP/1.1 200 OK\r\nX-B: 1\r\nset-cookie: a\r\nX-A: 2\r\nSet-Cookie: b\r\nContent-Length: 0\r\n\r\n");
    let Some(Event::ResponseHead(h)) = d.poll().unwrap() else {
        panic!()
    };
    let names: Vec<_> = h.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        names,
        ["X-B", "set-cookie", "X-A", "Set-Cookie", "Content-Length"]
    );
}

#[test]
fn chunked_with_trailers() {
    let mut d = Decoder::new(Role::Request);
    d.feed(b"POST /u HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Sum: 9\r\n\r\n");
    let ev = normalise(drain(&mut d).unwrap());
    assert!(matches!(&ev[0], Event::RequestHead(h) if h.framing == Framing::Chunked));
    assert_eq!(ev[1], Event::Data(Bytes::from_static(b"hello world")));
    assert_eq!(ev[2], Event::Trailers(vec![Header::new("X-Sum", "9")]));
    assert_eq!(ev[3], Event::End);
}

#[test]
fn head_and_304_responses_have_no_body() {
    let mut d = Decoder::new(Role::Response);
    d.push_request_method("HEAD");
    d.push_request_method("GET");
    d.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 304 Not Modified\r\nContent-Length: 10\r\n\r\n");
    let ev = drain(&mut d).unwrap();
    assert_eq!(ev.len(), 4, "{ev:?}");
    assert!(d.is_idle());
}

#[test]
fn interim_100_does_not_consume_the_request() {
    let mut d = Decoder::new(Role::Response);
    d.push_request_method("HEAD");
    d.feed(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n");
    let ev = drain(&mut d).unwrap();
    // 100 head, end, 200 head (HEAD: no body), end.
    assert_eq!(ev.len(), 4, "{ev:?}");
}

#[test]
fn close_delimited_response_ends_at_finish() {
    let mut d = Decoder::new(Role::Response);
    d.push_request_method("GET");
    d.feed(b"HTTP/1.0 200 OK\r\n\r\nabc");
    let ev = drain(&mut d).unwrap();
    assert_eq!(ev.len(), 2);
    assert_eq!(d.finish(), Ok(Some(Event::End)));
}

#[test]
fn truncated_body_is_incomplete() {
    let mut d = Decoder::new(Role::Request);
    d.feed(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc");
    drain(&mut d).unwrap();
    assert_eq!(d.finish(), Err(Error::Incomplete));
}

#[test]
fn upgrade_waits_for_verdict() {
    let mut d = Decoder::new(Role::Request);
    d.feed(b"GET /ws HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n\x81\x00");
    let ev = drain(&mut d).unwrap();
    assert_eq!(ev.len(), 2);
    d.resolve_upgrade(true);
    assert_eq!(d.poll(), Ok(Some(Event::Upgraded)));
    assert_eq!(&d.take_buffered()[..], b"\x81\x00");
}

#[test]
fn garbage_and_oversized_heads_are_errors() {
    let mut d = Decoder::new(Role::Request);
    d.feed(b"\x16\x03\x01\x02\x00garbage\r\n\r\n");
    assert!(d.poll().is_err());
    let mut d = Decoder::new(Role::Request).with_max_head(1024);
    d.feed(b"GET / HTTP/1.1\r\n");
    d.feed(&vec![b'a'; 2000]);
    assert_eq!(d.poll().map_err(|e| e.status()), Err(431));
}

#[test]
fn conflicting_content_length_is_rejected() {
    let mut d = Decoder::new(Role::Request);
    d.feed(b"POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n");
    assert_eq!(d.poll(), Err(Error::BadContentLength));
}

#[test]
fn body_framing_reads_both_fields_in_any_case_and_order() {
    let h = |pairs: &[(&str, &str)]| -> Vec<Header> {
        pairs.iter().map(|(n, v)| Header::new(*n, *v)).collect()
    };
    let f = |pairs: &[(&str, &str)]| framing::body_framing(&h(pairs));
    assert_eq!(
        f(&[("content-LENGTH", "5, 5"), ("Content-Length", "5")]),
        Ok(Some(Framing::Length(5)))
    );
    assert_eq!(f(&[("Content-Length", "0")]), Ok(Some(Framing::Empty)));
    assert_eq!(f(&[("X-Length", "5")]), Ok(None));
    // Transfer-Encoding wins over any Content-Length, even a malformed one before it.
    assert_eq!(
        f(&[
            ("Content-Length", "x"),
            ("TRANSFER-encoding", "gzip, chunked")
        ]),
        Ok(Some(Framing::Chunked))
    );
    assert_eq!(
        f(&[("Transfer-Encoding", "chunked, gzip")]),
        Ok(Some(Framing::UntilClose))
    );
    assert_eq!(
        f(&[("Content-Length", "3"), ("Content-Length", "4")]),
        Err(Error::BadContentLength)
    );
    assert_eq!(f(&[("Content-Length", "")]), Err(Error::BadContentLength));
    assert_eq!(
        f(&[("Content-Length", "12345678901234567890")]),
        Err(Error::BadContentLength)
    );
}

#[test]
fn a_hole_inside_a_body_is_skipped_without_losing_the_framing() {
    let mut d = Decoder::new(Role::Response);
    d.feed(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n012");
    assert!(matches!(
        drain(&mut d).unwrap()[..],
        [Event::ResponseHead(_), Event::Data(_)]
    ));
    assert_eq!(d.body_left(), Some(7));
    assert!(
        !d.skip_body(8),
        "a hole past the body's end is not the body's"
    );
    assert!(d.skip_body(4));
    d.feed(b"789HTTP/1.1 204 No Content\r\n\r\n");
    let evs = normalise(drain(&mut d).unwrap());
    assert_eq!(evs[0], Event::Data(Bytes::from_static(b"789")));
    assert_eq!(evs[1], Event::End);
    assert!(matches!(&evs[2], Event::ResponseHead(h) if h.status == 204));
    assert_eq!(d.body_left(), None);

    // Chunked: a hole that ends a chunk's data exactly leaves the next size line in place.
    let mut d = Decoder::new(Role::Request);
    d.feed(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab");
    drain(&mut d).unwrap();
    assert!(d.skip_body(3));
    d.feed(b"\r\n0\r\n\r\n");
    assert_eq!(normalise(drain(&mut d).unwrap()), vec![Event::End]);
    assert!(d.is_idle());
}

#[test]
fn bare_lf_pipelined_requests() {
    let mut d = Decoder::new(Role::Request);
    d.feed(b"GET /bar/ HTTP/1.1\nHost: x\n\nGET /foo/ HTTP/1.1\nHost: x\n\n");
    let heads = drain(&mut d)
        .unwrap()
        .into_iter()
        .filter(|e| matches!(e, Event::RequestHead(_)))
        .count();
    assert_eq!(heads, 2);
}

const STREAM: &[u8] = b"POST /a?x=1 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nT: 1\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\nPUT /c HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";

proptest! {
    #[test]
    fn any_split_gives_the_same_events(cuts in proptest::collection::vec(0usize..STREAM.len(), 0..8)) {
        let mut whole = Decoder::new(Role::Request);
        whole.feed(STREAM);
        let expected = normalise(drain(&mut whole).unwrap());

        let mut cuts = cuts;
        cuts.sort_unstable();
        let mut d = Decoder::new(Role::Request);
        let mut got = Vec::new();
        let mut start = 0;
        for cut in cuts.into_iter().chain([STREAM.len()]) {
            d.feed(&STREAM[start..cut.max(start)]);
            start = cut.max(start);
            got.extend(drain(&mut d).unwrap());
        }
        prop_assert_eq!(normalise(got), expected);
    }

    #[test]
    fn never_panics_on_arbitrary_bytes(data in proptest::collection::vec(any::<u8>(), 0..512)) {
        for role in [Role::Request, Role::Response] {
            let mut d = Decoder::new(role);
            d.feed(&data);
            while let Ok(Some(_)) = d.poll() {}
            let _ = d.finish();
        }
    }
}

fn hdr(name: &str, value: &str) -> crate::model::Header {
    crate::model::Header::new(name, value)
}

fn sent_names(status: u16, headers: &[crate::model::Header], close: bool) -> Vec<String> {
    client_response_fields(status, headers, close)
        .map(|(n, _)| n.to_string())
        .collect()
}

#[test]
fn response_fields_drop_hop_by_hop_and_what_connection_names() {
    let plain = [
        hdr("Server", "nginx"),
        hdr("Connection", "keep-alive"),
        hdr("Keep-Alive", "timeout=5"),
        hdr("Content-Length", "2"),
        hdr("TE", "trailers"),
    ];
    assert_eq!(sent_names(200, &plain, false), ["Server", "Content-Length"]);
    assert_eq!(
        sent_names(200, &plain, true),
        ["Server", "Content-Length", "Connection"]
    );
    // A field the Connection header names is dropped, in any case and list position.
    let named = [
        hdr("X-Hop", "1"),
        hdr("connection", "Keep-Alive , x-hop"),
        hdr("X-End", "2"),
        hdr("Transfer-Encoding", "chunked"),
    ];
    assert_eq!(
        sent_names(200, &named, false),
        ["X-End", "Transfer-Encoding"]
    );
    assert!(is_hop_by_hop("X-Hop", &named));
    assert!(is_hop_by_hop("PROXY-AUTHORIZATION", &[]));
    assert!(!is_hop_by_hop("X-End", &named));
    assert!(!is_hop_by_hop("Content-Type", &[]));
    // A 101 keeps the upgrade handshake.
    let upgrade = [hdr("Connection", "Upgrade"), hdr("Upgrade", "websocket")];
    assert_eq!(sent_names(101, &upgrade, true), ["Connection", "Upgrade"]);
}
