use super::*;
use crate::model::{Body, Request};

fn ex(id: i64, method: &str, target: &str, body: &str) -> Exchange {
    Exchange {
        id,
        request: Request {
            method: method.into(),
            target: target.into(),
            body: Body::full(body.as_bytes().to_vec()),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn found(r: MatchResult) -> usize {
    match r {
        MatchResult::Found { index, .. } => index,
        MatchResult::NotFound { near_misses } => panic!("no match: {near_misses:?}"),
    }
}

#[test]
fn identical_requests_get_recorded_order_then_last_repeats() {
    let recs = [
        ex(1, "GET", "/n", ""),
        ex(2, "GET", "/other", ""),
        ex(3, "GET", "/n", ""),
    ];
    let m = Matcher::new(&recs, RepeatPolicy::Last);
    let req = Incoming {
        method: "GET",
        target: "/n",
        body: b"",
    };
    assert_eq!(found(m.find(&req)), 0);
    assert_eq!(found(m.find(&req)), 2);
    assert_eq!(found(m.find(&req)), 2);
    m.reset();
    assert_eq!(found(m.find(&req)), 0);
}

#[test]
fn query_order_and_json_key_order_do_not_matter() {
    let recs = [ex(
        1,
        "POST",
        "/s?a=1&b=2",
        r#"{"x": 1, "y": [1, {"k": 2, "j": 3}]}"#,
    )];
    let m = Matcher::new(&recs, RepeatPolicy::Last);
    let req = Incoming {
        method: "POST",
        target: "/s?b=2&a=1",
        body: br#"{"y":[1,{"j":3,"k":2}],"x":1}"#,
    };
    assert_eq!(found(m.find(&req)), 0);
}

#[test]
fn near_miss_names_what_differs() {
    let recs = [
        ex(7, "POST", "/users?page=1", "{}"),
        ex(8, "GET", "/orders", ""),
    ];
    let m = Matcher::new(&recs, RepeatPolicy::Last);
    let MatchResult::NotFound { near_misses } = m.find(&Incoming {
        method: "POST",
        target: "/users?page=2",
        body: b"{}",
    }) else {
        panic!("matched")
    };
    assert_eq!(near_misses[0].id, 7);
    assert_eq!(
        near_misses[0].mismatches,
        vec!["query: missing page=1; unexpected page=2".to_string()]
    );
}

#[test]
fn repeat_not_found_stops_after_the_recorded_answers() {
    let recs = [ex(1, "GET", "/n", "")];
    let m = Matcher::new(&recs, RepeatPolicy::NotFound);
    let req = Incoming {
        method: "GET",
        target: "/n",
        body: b"",
    };
    assert_eq!(found(m.find(&req)), 0);
    assert!(matches!(m.find(&req), MatchResult::NotFound { .. }));
}

#[test]
fn placeholders_in_the_recorded_request_match_any_live_value() {
    let p = crate::vocab::secrets::Placeholders::with_key(b"k");
    let (a, b) = (p.of("secret-one"), p.of("secret-two"));
    let recs = [
        ex(1, "GET", &format!("/q?page=1&api_key={a}"), ""),
        ex(
            2,
            "POST",
            "/login",
            &format!(r#"{{"user":"ada","password":"{a}"}}"#),
        ),
        ex(3, "POST", "/form", &format!("user=ada&password={a}&x=1")),
        ex(
            4,
            "POST",
            "/login",
            &format!(r#"{{"user":"ada","password":"{b}"}}"#),
        ),
    ];
    let m = Matcher::new(&recs, RepeatPolicy::Last);
    let get = |target: &'static str, method: &'static str, body: &'static [u8]| Incoming {
        method,
        target,
        body,
    };
    assert_eq!(found(m.find(&get("/q?api_key=real&page=1", "GET", b""))), 0);
    assert!(matches!(
        m.find(&get("/q?api_key=real&page=2", "GET", b"")),
        MatchResult::NotFound { .. }
    ));
    // The same call made with two secrets is one group, answered in recorded order.
    let login = get("/login", "POST", br#"{"password":"hunter2","user":"ada"}"#);
    assert_eq!(found(m.find(&login)), 1);
    assert_eq!(found(m.find(&login)), 3);
    assert!(matches!(
        m.find(&get("/login", "POST", br#"{"password":"x","user":"bob"}"#)),
        MatchResult::NotFound { .. }
    ));
    assert_eq!(
        found(m.find(&get("/form", "POST", b"user=ada&password=hunter2&x=1"))),
        2
    );
}

fn misses(m: &Matcher, method: &str, target: &str, body: &str) -> Vec<NearMiss> {
    match m.find(&Incoming {
        method,
        target,
        body: body.as_bytes(),
    }) {
        MatchResult::NotFound { near_misses } => near_misses,
        MatchResult::Found { index, .. } => panic!("matched {index}"),
    }
}

#[test]
fn candidate_near_misses_agree_with_scoring_everything() {
    let mut recs = Vec::new();
    for i in 0..400i64 {
        let (m, t, b) = match i % 4 {
            0 => ("GET", format!("/users/{i}"), String::new()),
            1 => ("GET", format!("/users?page={i}"), String::new()),
            2 => ("POST", "/login".to_string(), format!(r#"{{"u":{i}}}"#)),
            _ => ("GET", format!("/v1/orders/{i}/items"), String::new()),
        };
        recs.push(ex(i + 1, m, &t, &b));
    }
    let build = |full_scan| {
        let mut b = MatcherBuilder::default().full_scan_up_to(full_scan);
        for r in &recs {
            b.push(r);
        }
        b.finish(RepeatPolicy::Last)
    };
    let (whole, indexed) = (build(usize::MAX), build(10));
    // The request's own path is always a candidate: the same best line either way, and
    // lines as close after it.
    for (m, t, b) in [
        ("GET", "/users?page=9999", ""),
        ("POST", "/login", r#"{"u":-1}"#),
        ("PUT", "/users/8", ""),
        ("GET", "/users/8?x=1", ""),
    ] {
        let (a, c) = (misses(&whole, m, t, b), misses(&indexed, m, t, b));
        assert_eq!(format!("{:?}", a[0]), format!("{:?}", c[0]), "{m} {t}");
        let scores = |v: &[NearMiss]| v.iter().map(|n| n.score).collect::<Vec<_>>();
        assert_eq!(scores(&a), scores(&c), "{m} {t}");
    }
    // An unknown path: neighbours and shapes find paths as close as the best of all.
    for t in ["/users/99999", "/v2/orders/7/items", "/v1/orders/77/item"] {
        let (a, c) = (misses(&whole, "GET", t, ""), misses(&indexed, "GET", t, ""));
        assert_eq!(a[0].score, c[0].score, "{t}: {a:?} vs {c:?}");
    }
}
