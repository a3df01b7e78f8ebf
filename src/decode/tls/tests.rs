//! Whole connections scripted byte by byte: hellos, encrypted handshakes and application
//! data under keys the tests log, split at arbitrary points.

use super::cipher::tests::seal;
use super::handshake::tests::{client_hello, encrypted_extensions, message, record, server_hello};
use super::handshake::{self as hs};
use super::schedule::{tls12_keys, tls13_keys, tls13_next_secret, Suite};
use super::{Decryptor, KeyLog, Plain, Status};

const CR: [u8; 32] = [0x11; 32];
const SR: [u8; 32] = [0x22; 32];

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn secret(tag: u8, len: usize) -> Vec<u8> {
    (0..len as u8).map(|i| i ^ tag).collect()
}

/// Feeds `bytes` in `step`-byte pieces; the data of each direction joined.
fn run(d: &mut Decryptor, keys: &KeyLog, script: &[(usize, Vec<u8>)], step: usize) -> [Vec<u8>; 2] {
    let mut got = [Vec::new(), Vec::new()];
    for (dir, bytes) in script {
        for piece in bytes.chunks(step) {
            let mut out = [Vec::new(), Vec::new()];
            d.feed(*dir, piece, keys, &mut out);
            for (i, o) in out.into_iter().enumerate() {
                for p in o {
                    match p {
                        Plain::Data(b) => got[i].extend(b),
                        Plain::Lost(n) => got[i].extend(std::iter::repeat_n(b'?', n)),
                    }
                }
            }
        }
    }
    got
}

struct Tls13 {
    suite: Suite,
    log: String,
    script: Vec<(usize, Vec<u8>)>,
}

/// A TLS 1.3 connection: the hellos, the server's encrypted flight with ALPN h2, the
/// client's Finished, a request, a response, a KeyUpdate from the server, another response.
fn tls13(suite_id: u16) -> Tls13 {
    let suite = Suite::lookup(suite_id, true).unwrap();
    let n = suite.hash.len();
    let (chs, shs, cap, sap) = (secret(1, n), secret(2, n), secret(3, n), secret(4, n));
    let log = format!(
        "CLIENT_HANDSHAKE_TRAFFIC_SECRET {r} {}\nSERVER_HANDSHAKE_TRAFFIC_SECRET {r} {}\n\
         CLIENT_TRAFFIC_SECRET_0 {r} {}\nSERVER_TRAFFIC_SECRET_0 {r} {}\n",
        hex(&chs),
        hex(&shs),
        hex(&cap),
        hex(&sap),
        r = hex(&CR)
    );
    let k = |s: &[u8]| tls13_keys(suite, s).unwrap();
    let sap1 = tls13_next_secret(suite.hash, &sap).unwrap();
    let mut server = record(hs::HANDSHAKE, &server_hello(SR, suite_id, true, &[]));
    server.extend(record(hs::CHANGE_CIPHER_SPEC, &[1]));
    let mut flight = encrypted_extensions(&["h2"]);
    flight.extend(message(11, &[0; 40])); // a Certificate, skipped
    flight.extend(message(hs::FINISHED, &[0; 32]));
    server.extend(seal(suite, &k(&shs), true, 0, hs::HANDSHAKE, &flight));
    let mut client = record(hs::CHANGE_CIPHER_SPEC, &[1]);
    client.extend(seal(
        suite,
        &k(&chs),
        true,
        0,
        hs::HANDSHAKE,
        &message(hs::FINISHED, &[0; 32]),
    ));
    client.extend(seal(
        suite,
        &k(&cap),
        true,
        0,
        hs::APPLICATION_DATA,
        b"GET / HTTP/1.1\r\n\r\n",
    ));
    let mut resp = seal(
        suite,
        &k(&sap),
        true,
        0,
        hs::HANDSHAKE,
        &message(4, &[0; 20]),
    );
    resp.extend(seal(
        suite,
        &k(&sap),
        true,
        1,
        hs::APPLICATION_DATA,
        b"HTTP/1.1 200 OK\r\n",
    ));
    resp.extend(seal(
        suite,
        &k(&sap),
        true,
        2,
        hs::HANDSHAKE,
        &message(hs::KEY_UPDATE, &[0]),
    ));
    resp.extend(seal(
        suite,
        &k(&sap1),
        true,
        0,
        hs::APPLICATION_DATA,
        b"after update",
    ));
    resp.extend(seal(suite, &k(&sap1), true, 1, hs::ALERT, &[1, 0]));
    Tls13 {
        suite,
        log,
        script: vec![
            (
                0,
                record(hs::HANDSHAKE, &client_hello(CR, "api.test", &["h2"])),
            ),
            (1, server),
            (0, client),
            (1, resp),
        ],
    }
}

#[test]
fn tls13_connections_decrypt_with_every_suite_and_any_split() {
    for id in [0x1301, 0x1302, 0x1303] {
        let t = tls13(id);
        let mut keys = KeyLog::new();
        keys.add(t.log.as_bytes());
        for step in [1, 7, 100_000] {
            let mut d = Decryptor::new();
            let got = run(&mut d, &keys, &t.script, step);
            assert_eq!(got[0], b"GET / HTTP/1.1\r\n\r\n", "{id:04x} step {step}");
            assert_eq!(
                got[1], b"HTTP/1.1 200 OK\r\nafter update",
                "{id:04x} step {step}"
            );
            assert_eq!(d.status(), Status::Decrypting);
            assert_eq!(
                (d.sni.as_deref(), d.alpn.as_deref()),
                (Some("api.test"), Some("h2"))
            );
            assert_eq!((d.version(), d.auth_failures), (Some("1.3"), 0));
            let _ = t.suite;
        }
    }
}

#[test]
fn tls13_without_keys_waits_then_decrypts_when_they_come() {
    let t = tls13(0x1301);
    let mut d = Decryptor::new();
    let got = run(&mut d, &KeyLog::new(), &t.script, 1000);
    assert_eq!(got, [Vec::<u8>::new(), Vec::new()]);
    assert_eq!(d.status(), Status::NoKeys);
    assert!(d.waiting());
    let mut keys = KeyLog::new();
    keys.add(b"CLIENT_RANDOM 00 11\n"); // garbage, and keys of another session:
    keys.add(format!("CLIENT_RANDOM {} {}\n", "33".repeat(32), "44".repeat(48)).as_bytes());
    keys.add(t.log.as_bytes());
    let mut out = [Vec::new(), Vec::new()];
    d.retry(&keys, &mut out);
    assert_eq!(out[0], [Plain::Data(b"GET / HTTP/1.1\r\n\r\n".to_vec())]);
    assert_eq!(out[1].len(), 2);
    assert_eq!(d.status(), Status::Decrypting);
}

#[test]
fn a_record_failing_authentication_is_counted_and_the_rest_decrypts() {
    let mut t = tls13(0x1303);
    let mut keys = KeyLog::new();
    keys.add(t.log.as_bytes());
    // Flip a byte of the server's first application record (the second record of `resp`,
    // after a NewSessionTicket record of 5 + 24 + 1 + 3 + 16 bytes).
    let resp = &mut t.script[3].1;
    let at = (5 + 24 + 1 + 3 + 16) + 7;
    resp[at] ^= 0x80;
    let mut d = Decryptor::new();
    let got = run(&mut d, &keys, &t.script, 64);
    assert_eq!(d.auth_failures, 1);
    assert!(
        got[1].ends_with(b"after update"),
        "{:?}",
        String::from_utf8_lossy(&got[1])
    );
    assert!(got[1].starts_with(b"?"));
}

fn tls12(suite_id: u16) -> (String, Vec<(usize, Vec<u8>)>) {
    let suite = Suite::lookup(suite_id, false).unwrap();
    let master = secret(9, 48);
    let [ck, sk] = tls12_keys(suite, &master, &CR, &SR);
    let log = format!("CLIENT_RANDOM {} {}\n", hex(&CR), hex(&master));
    let mut server = record(
        hs::HANDSHAKE,
        &server_hello(SR, suite_id, false, &["http/1.1"]),
    );
    server.extend(record(hs::HANDSHAKE, &message(14, &[]))); // ServerHelloDone
    let mut client = record(hs::HANDSHAKE, &message(16, &[0; 33])); // ClientKeyExchange
    client.extend(record(hs::CHANGE_CIPHER_SPEC, &[1]));
    client.extend(seal(
        suite,
        &ck,
        false,
        0,
        hs::HANDSHAKE,
        &message(hs::FINISHED, &[0; 12]),
    ));
    client.extend(seal(
        suite,
        &ck,
        false,
        1,
        hs::APPLICATION_DATA,
        b"GET /a HTTP/1.1\r\n\r\n",
    ));
    let mut back = record(hs::CHANGE_CIPHER_SPEC, &[1]);
    back.extend(seal(
        suite,
        &sk,
        false,
        0,
        hs::HANDSHAKE,
        &message(hs::FINISHED, &[0; 12]),
    ));
    back.extend(seal(
        suite,
        &sk,
        false,
        1,
        hs::APPLICATION_DATA,
        b"HTTP/1.1 204 No Content\r\n\r\n",
    ));
    let script = vec![
        (
            0,
            record(hs::HANDSHAKE, &client_hello(CR, "old.test", &["http/1.1"])),
        ),
        (1, server),
        (0, client),
        (1, back),
    ];
    (log, script)
}

#[test]
fn tls12_gcm_and_chacha_connections_decrypt() {
    for id in [0xC02F, 0xC030, 0xCCA8, 0x009C] {
        let (log, script) = tls12(id);
        let mut keys = KeyLog::new();
        keys.add(log.as_bytes());
        for step in [3, 100_000] {
            let mut d = Decryptor::new();
            let got = run(&mut d, &keys, &script, step);
            assert_eq!(got[0], b"GET /a HTTP/1.1\r\n\r\n", "{id:04x}");
            assert_eq!(got[1], b"HTTP/1.1 204 No Content\r\n\r\n", "{id:04x}");
            assert_eq!(
                (d.version(), d.alpn.as_deref()),
                (Some("1.2"), Some("http/1.1"))
            );
            assert_eq!(d.sni.as_deref(), Some("old.test"));
        }
    }
}

#[test]
fn unsupported_suites_and_foreign_bytes_stop_cleanly() {
    let mut d = Decryptor::new();
    let script = vec![
        (0, record(hs::HANDSHAKE, &client_hello(CR, "cbc.test", &[]))),
        (
            1,
            record(hs::HANDSHAKE, &server_hello(SR, 0x002F, false, &[])),
        ),
        (0, vec![23, 3, 3, 0, 40]),
    ];
    run(&mut d, &KeyLog::new(), &script, 5);
    assert_eq!(d.status(), Status::UnsupportedSuite(0x002F));
    let mut d = Decryptor::new();
    run(
        &mut d,
        &KeyLog::new(),
        &[(0, b"GET / HTTP/1.1\r\n".to_vec())],
        100,
    );
    assert_eq!(d.status(), Status::Broken);
}
