//! `mf generate synthetic-recording`: a large, realistic recording for benchmarks (hidden).
//!
//! Sessions of a CRUD API (login, browse, create, read back, order, a flaky call and its
//! retry) interleaved 64 at a time like concurrent clients, with fresh ids, nonces and
//! timestamps, from a seeded RNG: the same arguments give the same recording.

use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::model::{Body, Exchange, Header, Protocol, Request, Response, Timings};
use crate::store::{self, Meta};

const CONCURRENT: u64 = 64;
const BASE_NS: i64 = 1_714_564_800_000_000_000;

struct Session {
    conn: u64,
    step: u32,
    token: String,
    user: u64,
    order: String,
}

fn hex(rng: &mut ChaCha8Rng, n: usize) -> String {
    (0..n)
        .map(|_| char::from_digit(rng.random_range(0..16), 16).unwrap_or('0'))
        .collect()
}

fn uuid(rng: &mut ChaCha8Rng) -> String {
    let h = hex(rng, 32);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

#[allow(clippy::too_many_arguments)] // one call per scripted step reads best flat
fn exchange(
    s: &Session,
    method: &str,
    target: &str,
    req: String,
    status: u16,
    resp: String,
    at: i64,
    lat_us: u64,
) -> Exchange {
    let mut headers = vec![
        Header::new("Host", "api.example"),
        Header::new("User-Agent", "bench/1.0"),
    ];
    if !s.token.is_empty() && s.step > 0 {
        headers.push(Header::new("Authorization", format!("Bearer {}", s.token)));
    }
    if !req.is_empty() {
        headers.push(Header::new("Content-Type", "application/json"));
    }
    Exchange {
        connection_id: s.conn,
        seq: s.step,
        protocol: Some(Protocol::Http11),
        started_at_ns: at,
        scheme: "http".into(),
        authority: "api.example".into(),
        request: Request {
            method: method.into(),
            target: target.into(),
            version: "HTTP/1.1".into(),
            headers,
            body: Body::full(Bytes::from(req)),
            trailers: vec![],
        },
        response: Some(Response {
            status,
            reason: Default::default(),
            version: "HTTP/1.1".into(),
            headers: vec![
                Header::new("Content-Type", "application/json"),
                Header::new("Content-Length", resp.len().to_string()),
            ],
            body: Body::full(Bytes::from(resp)),
            trailers: vec![],
        }),
        timings: Timings {
            response_end_ns: Some(lat_us * 1000),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// Writes `count` exchanges to `path`.
pub(super) fn run(path: &Path, count: u64, seed: u64) -> anyhow::Result<u8> {
    if path.exists() {
        anyhow::bail!(
            "{} exists; the generator only creates new recordings",
            path.display()
        );
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut sessions: Vec<Session> = Vec::new();
    let mut next_conn = 1u64;
    let mut next_user = 1000u64;
    let mut produced = 0u64;
    let iter = std::iter::from_fn(move || {
        if produced >= count {
            return None;
        }
        produced += 1;
        while sessions.len() < CONCURRENT as usize {
            sessions.push(Session {
                conn: next_conn,
                step: 0,
                token: String::new(),
                user: 0,
                order: String::new(),
            });
            next_conn += 1;
        }
        let i = rng.random_range(0..sessions.len());
        let at = BASE_NS + produced as i64 * 1_000_000;
        let lat = rng.random_range(2_000..40_000);
        let nonce = hex(&mut rng, 16);
        let s = &mut sessions[i];
        let ex = match s.step {
            0 => {
                s.token = hex(&mut rng, 40);
                let t = s.token.clone();
                exchange(
                    s,
                    "POST",
                    "/login",
                    format!(r#"{{"username":"u{}","password":"pw-{nonce}"}}"#, s.conn),
                    200,
                    format!(r#"{{"token":"{t}","token_type":"bearer"}}"#),
                    at,
                    lat,
                )
            }
            1 => exchange(
                s,
                "GET",
                "/users/me",
                String::new(),
                200,
                format!(r#"{{"username":"u{}","roles":["customer"]}}"#, s.conn),
                at,
                lat,
            ),
            2 => {
                let page = rng.random_range(1..5);
                exchange(
                    s,
                    "GET",
                    &format!("/users?page={page}&_={}", at / 1_000_000),
                    String::new(),
                    200,
                    format!(
                        r#"{{"items":[{{"id":{}}}],"page":{page},"total":100}}"#,
                        next_user
                    ),
                    at,
                    lat,
                )
            }
            3 => {
                next_user += 1;
                s.user = next_user;
                let u = uuid(&mut rng);
                exchange(
                    s,
                    "POST",
                    "/users",
                    format!(
                        r#"{{"name":"n{}","email":"n{}@example.com","nonce":"{nonce}"}}"#,
                        s.user, s.user
                    ),
                    201,
                    format!(
                        r#"{{"id":{},"uuid":"{u}","email":"n{}@example.com","status":"active","created_at":"2024-05-01T12:00:00Z"}}"#,
                        s.user, s.user
                    ),
                    at,
                    lat,
                )
            }
            4 | 5 => exchange(
                s,
                "GET",
                &format!("/users/{}", s.user),
                String::new(),
                200,
                format!(
                    r#"{{"id":{},"email":"n{}@example.com","status":"active"}}"#,
                    s.user, s.user
                ),
                at,
                lat,
            ),
            6 => {
                s.order = uuid(&mut rng);
                let o = s.order.clone();
                exchange(
                    s,
                    "POST",
                    "/orders",
                    format!(
                        r#"{{"user_id":{},"qty":{},"nonce":"{nonce}"}}"#,
                        s.user,
                        lat % 5 + 1
                    ),
                    201,
                    format!(r#"{{"id":"{o}","status":"pending","user_id":{}}}"#, s.user),
                    at,
                    lat,
                )
            }
            7 => exchange(
                s,
                "GET",
                &format!("/orders/{}", s.order),
                String::new(),
                200,
                format!(r#"{{"id":"{}","status":"pending"}}"#, s.order),
                at,
                lat,
            ),
            8 => exchange(
                s,
                "GET",
                "/flaky",
                String::new(),
                503,
                r#"{"error":"try again"}"#.into(),
                at,
                lat,
            ),
            9 => exchange(
                s,
                "GET",
                "/flaky",
                String::new(),
                200,
                r#"{"ok":true}"#.into(),
                at,
                lat,
            ),
            _ => exchange(
                s,
                "GET",
                "/users/999999",
                String::new(),
                404,
                r#"{"error":"not found"}"#.into(),
                at,
                lat,
            ),
        };
        s.step += 1;
        if s.step > 10 {
            sessions.swap_remove(i);
        }
        Some(ex)
    });
    let meta = Meta {
        source: format!("synthetic {count} exchanges, seed {seed}"),
        command_line: super::util::command_line(),
        ..Meta::default()
    };
    let written = store::write_exchanges(path, &meta, iter)
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!(
        "mf: wrote {written} synthetic exchanges to {}",
        path.display()
    );
    Ok(0)
}
