use serde_json::json;

use super::*;
use crate::model::{Body, Exchange, Header, Request, Response};

fn keys() -> Placeholders {
    Placeholders::with_key(b"test key")
}

#[test]
fn header_verdicts_stay_right_when_remembered_names_are_replaced() {
    let r = Rules::default();
    let secret = [
        "Authorization",
        "cookie",
        "X-Csrf-Token",
        "x-api-key",
        "TOKEN",
    ];
    let plain = [
        "Content-Type",
        "content-type",
        "Accept",
        "X-Request-Id",
        "Date",
        "t",
    ];
    // Many names of every length and letter, so that remembered names keep being evicted
    // and looked up again in between.
    let crowd: Vec<String> = (0..500)
        .map(|i| format!("x-h{i}-{}", (b'a' + (i % 26) as u8) as char))
        .collect();
    for round in 0..3 {
        for (i, name) in crowd.iter().enumerate() {
            assert!(!r.is_secret_header(name), "{name} (round {round})");
            let s = secret[i % secret.len()];
            assert!(r.is_secret_header(s), "{s} (round {round})");
            let p = plain[i % plain.len()];
            assert!(!r.is_secret_header(p), "{p} (round {round})");
        }
    }
    // The user's names are not remembered with the built-in verdicts.
    let extra = Rules::new(&["Content-Type".into()]);
    assert!(extra.is_secret_header("content-type"));
    assert!(!r.is_secret_header("content-type"));
}

#[test]
fn placeholders_are_stable_per_key_and_recognisable() {
    let k = keys();
    let a = k.of("sk-live-123456");
    assert_eq!(a, k.of("sk-live-123456"));
    assert_ne!(a, k.of("sk-live-654321"));
    assert!(is_placeholder(&a), "{a}");
    assert_eq!(a.len(), PLACEHOLDER_LEN);
    assert_ne!(a, Placeholders::with_key(b"other").of("sk-live-123456"));
    // Redacting a placeholder again changes nothing.
    assert_eq!(k.of(&a), a);
    assert!(!is_placeholder("mf-redacted-xyz"));
}

#[test]
fn name_rules() {
    let r = Rules::new(&["X-Tenant".into(), "$.user.ssn".into()]);
    for h in [
        "Authorization",
        "cookie",
        "Set-Cookie",
        "X-Api-Key",
        "X-CSRF-Token",
        "my-secret",
        "x-tenant",
        "TOKEN",
        "x-passwordless",
        "Sub-ApiKey",
        "ssecret",
    ] {
        assert!(r.is_secret_header(h), "{h}");
    }
    for h in [
        "Content-Type",
        "Accept",
        "X-Request-Id",
        "",
        "t",
        "toke",
        "x-tok",
        "Secre",
        "api-ke",
    ] {
        assert!(!r.is_secret_header(h), "{h}");
    }
    for f in [
        "password",
        "client_secret",
        "refresh_token",
        "user_password",
        "api_key",
    ] {
        assert!(r.is_secret_field(f), "{f}");
    }
    for f in ["token_type", "next_page_token", "password_policy", "name"] {
        assert!(!r.is_secret_field(f), "{f}");
    }
    assert!(r.is_secret_param("key"));
    assert!(r.is_secret_path(&["user", "ssn"]));
    assert!(!r.is_secret_path(&["ssn"]));
}

#[test]
fn header_values_keep_their_shape() {
    let (rules, k) = (Rules::new(&[]), keys());
    let mut red = Redaction::new(&rules, &k);
    let tok = k.of("sk-live-abcdef");
    assert_eq!(
        red.header_value("Authorization", b"Bearer sk-live-abcdef")
            .unwrap(),
        format!("Bearer {tok}").into_bytes()
    );
    let c = String::from_utf8(
        red.header_value("Cookie", b"a=1; session=s3ss10nv4lue")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        c,
        format!("a={}; session={}", k.of("1"), k.of("s3ss10nv4lue"))
    );
    let sc = String::from_utf8(
        red.header_value("Set-Cookie", b"session=s3ss10nv4lue; Path=/; HttpOnly")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        sc,
        format!("session={}; Path=/; HttpOnly", k.of("s3ss10nv4lue"))
    );
    assert!(red.header_value("Accept", b"*/*").is_none());
}

#[test]
fn query_form_json_and_multipart() {
    let (rules, k) = (Rules::new(&["$.user.ssn".into()]), keys());
    let mut red = Redaction::new(&rules, &k);
    assert_eq!(
        red.query("page=2&api_key=abc%2Fdef").unwrap(),
        format!("page=2&api_key={}", k.of("abc/def"))
    );
    assert!(red.query("page=2&q=x").is_none());
    let form = red
        .body(
            "application/x-www-form-urlencoded",
            b"user=ada&password=hunter22",
        )
        .unwrap();
    assert_eq!(
        form,
        format!("user=ada&password={}", k.of("hunter22")).into_bytes()
    );

    let doc = br#"{"user": {"name": "ada", "password": "hunter22", "ssn": "123-45"}, "n": [ {"token": 42} ]}"#;
    let out = red.body("application/json", doc).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["user"]["password"], k.of("hunter22"));
    assert_eq!(v["user"]["ssn"], k.of("123-45"));
    assert_eq!(v["user"]["name"], "ada");
    assert_eq!(v["n"][0]["token"], k.of("42"));
    // String-only redactions keep the document's formatting.
    let out = red.json(br#"{ "a" : 1,  "secret": "hunter22" }"#).unwrap();
    assert_eq!(
        out,
        format!(r#"{{ "a" : 1,  "secret": "{}" }}"#, k.of("hunter22")).into_bytes()
    );

    // A secret that is also a key elsewhere: the key stays.
    let out = red.json(br#"{"password": "name", "name": "x"}"#).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["name"], "x");
    assert_eq!(v["password"], k.of("name"));

    let mp = b"--XyZ\r\nContent-Disposition: form-data; name=\"user\"\r\n\r\nada\r\n--XyZ\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nhunter22\r\n--XyZ--\r\n";
    let out = red.body("multipart/form-data; boundary=XyZ", mp).unwrap();
    let expected = String::from_utf8_lossy(mp).replace("hunter22", &k.of("hunter22"));
    assert_eq!(String::from_utf8(out).unwrap(), expected);
}

#[test]
fn media_types_match_whatever_their_case() {
    let (rules, k) = (Rules::new(&[]), keys());
    let mut red = Redaction::new(&rules, &k);
    let form = red
        .body(
            "Application/X-WWW-Form-URLEncoded; charset=UTF-8",
            b"user=ada&password=hunter22",
        )
        .unwrap();
    assert_eq!(
        form,
        format!("user=ada&password={}", k.of("hunter22")).into_bytes()
    );
    // A JSON media type in capitals, on a body that does not start like JSON.
    let out = red
        .body("Application/Problem+JSON", b" \"password\"")
        .is_none();
    assert!(out, "not a document: nothing to rewrite, and no panic");
    let doc = br#"{"password": "hunter22"}"#;
    let out = red.body("TEXT/PLAIN+JSON", doc).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["password"], k.of("hunter22"));
    let mp =
        b"--B\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\nhunter22\r\n--B--\r\n";
    let out = red.body("Multipart/Form-Data; boundary=B", mp).unwrap();
    assert!(!String::from_utf8_lossy(&out).contains("hunter22"));
}

#[test]
fn exchange_redaction_scrubs_echoes_and_fixes_sizes() {
    let (rules, k) = (Rules::new(&[]), keys());
    let mut red = Redaction::new(&rules, &k);
    let mut ex = Exchange {
        request: Request {
            method: "POST".into(),
            target: "/login?token=tok-1234567890".into(),
            headers: vec![Header::new("Content-Type", "application/json")],
            body: Body::full(&br#"{"password":"hunter2222"}"#[..]),
            ..Default::default()
        },
        response: Some(Response {
            status: 200,
            headers: vec![
                Header::new("Content-Type", "text/plain"),
                Header::new("Set-Cookie", "sid=abcdefgh12345; Path=/"),
            ],
            body: Body::full(&b"you sent hunter2222 and tok-1234567890"[..]),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert!(redact_exchange(&mut ex, &mut red) >= 3);
    let resp = ex.response.as_ref().unwrap();
    let text = String::from_utf8_lossy(&resp.body.data).into_owned();
    assert!(
        !text.contains("hunter2222") && !text.contains("tok-1234567890"),
        "{text}"
    );
    assert_eq!(resp.body.size, resp.body.data.len() as u64);
    assert_eq!(ex.request.body.size, ex.request.body.data.len() as u64);
    assert!(ex.request.target.starts_with("/login?token=mf-redacted-"));
}

#[test]
fn placeholders_match_anything() {
    let p = keys().of("x");
    let rec = json!({"user": "ada", "password": p});
    assert!(json_matches(
        &rec,
        &json!({"password": "real", "user": "ada"})
    ));
    assert!(!json_matches(
        &rec,
        &json!({"password": "real", "user": "bob"})
    ));
    assert!(!json_matches(&rec, &json!({"user": "ada"})));
    let form = format!("user=ada&password={p}&x=1");
    assert!(raw_matches(
        form.as_bytes(),
        b"user=ada&password=hunter2&x=1"
    ));
    assert!(!raw_matches(
        form.as_bytes(),
        b"user=bob&password=hunter2&x=1"
    ));
    assert!(!raw_matches(
        form.as_bytes(),
        b"user=ada&password=hunter2&x=2"
    ));
    assert!(raw_matches(format!("a={p}").as_bytes(), b"a=anything"));
    assert!(raw_matches(b"plain", b"plain"));
    assert!(!raw_matches(b"plain", b"plainer"));
}

#[test]
fn gzip_bodies_are_redacted_inside_and_stay_gzip() {
    use std::io::{Read, Write};
    let (rules, k) = (Rules::new(&[]), keys());
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(br#"{"refresh_token":"gz-secret-12345"}"#)
        .unwrap();
    let gz = enc.finish().unwrap();
    let mut ex = Exchange {
        response: Some(Response {
            status: 200,
            headers: vec![
                Header::new("Content-Type", "application/json"),
                Header::new("Content-Encoding", "gzip"),
            ],
            body: Body::full(gz),
            ..Default::default()
        }),
        ..Default::default()
    };
    assert_eq!(redact_exchange(&mut ex, &mut Redaction::new(&rules, &k)), 1);
    let body = &ex.response.as_ref().unwrap().body;
    let mut plain = String::new();
    flate2::read::GzDecoder::new(&body.data[..])
        .read_to_string(&mut plain)
        .unwrap();
    assert_eq!(
        plain,
        format!(r#"{{"refresh_token":"{}"}}"#, k.of("gz-secret-12345"))
    );
    assert_eq!(body.size, body.data.len() as u64);
}

#[test]
fn secret_words_are_found_in_any_case_and_across_fold_chunks() {
    let rules = Rules::new(&["X-Internal-Ssn".into(), "$.Profile.Birth_Date".into()]);
    assert!(rules.may_hold_secret_field(br#"{"PassWord":"x"}"#));
    assert!(rules.may_hold_secret_field(br#"{"x-INTERNAL-ssn":1}"#));
    assert!(rules.may_hold_secret_field(br#"{"birth_DATE":1}"#));
    assert!(!rules.may_hold_secret_field(br#"{"users":[{"id":1,"name":"a"}]}"#));
    assert!(!rules.may_hold_secret_field(b""));
    // Every offset around the 4096-byte chunk boundaries, so a word split by one is seen.
    for at in (4096 - 12..4096 + 4).chain(8192 - 20..8192 - 8) {
        let mut data = vec![b'x'; 12_000];
        data[at..at + 8].copy_from_slice(b"PASSWORD");
        assert!(rules.may_hold_secret_field(&data), "word at {at}");
    }
    assert!(!rules.may_hold_secret_field(&vec![b'x'; 12_000]));
}

#[test]
fn many_redact_names_are_found_like_few() {
    let extra: Vec<String> = (0..40).map(|i| format!("Field_{i}_Name")).collect();
    let rules = Rules::new(&extra);
    assert!(rules.may_hold_secret_field(br#"{"FIELD_39_name":1}"#));
    assert!(rules.may_hold_secret_field(br#"{"Token":1}"#));
    assert!(!rules.may_hold_secret_field(br#"{"field_40_name":1}"#));
}
