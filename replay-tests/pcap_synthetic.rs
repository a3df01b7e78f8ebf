//! Passive capture of hand-made nasty captures: reordered, duplicated and missing segments,
//! truncated and random files, pcapng with several interfaces, filters.

use std::net::SocketAddr;
use std::path::Path;

use mf::capture::packet::build_frame;
use mf::capture::pcap::PcapWriter;
use mf::model::Exchange;

use crate::common::capture::*;
use crate::common::*;

const CLIENT: &str = "10.1.1.1:40000";
const SERVER: &str = "10.1.1.2:8080";

/// Segments of one HTTP/1.1 connection: (from_client, seq offset, payload), plus handshake.
fn conversation() -> Vec<(bool, u32, Vec<u8>)> {
    let req1 = b"GET /a HTTP/1.1\r\nHost: x\r\n\r\n".to_vec();
    let resp1 = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789".to_vec();
    let req2 = b"POST /b HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello".to_vec();
    let resp2 = b"HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\nok".to_vec();
    let mut segs = Vec::new();
    let (mut c, mut s) = (0u32, 0u32);
    for (from_client, data) in [(true, req1), (false, resp1), (true, req2), (false, resp2)] {
        // Each message in two segments so that reordering has something to do.
        let mid = data.len() / 2;
        for part in [&data[..mid], &data[mid..]] {
            let off = if from_client { &mut c } else { &mut s };
            segs.push((from_client, *off, part.to_vec()));
            *off += part.len() as u32;
        }
    }
    segs
}

fn write_pcap(path: &Path, segs: &[(bool, u32, Vec<u8>)]) {
    let (c, s): (SocketAddr, SocketAddr) = (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
    let (cisn, sisn) = (1000u32, 900_000u32);
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap(), 1).unwrap();
    let mut t = 1_700_000_000_000_000_000i64;
    let mut put = |frame: Vec<u8>| {
        t += 1_000_000;
        w.packet(t, &frame).unwrap();
    };
    put(build_frame(c, s, cisn, 0, true, false, false, b""));
    put(build_frame(s, c, sisn, cisn + 1, true, false, false, b""));
    for (from_client, off, data) in segs {
        if *from_client {
            put(build_frame(
                c,
                s,
                cisn + 1 + off,
                sisn + 1,
                false,
                false,
                false,
                data,
            ));
        } else {
            put(build_frame(
                s,
                c,
                sisn + 1 + off,
                cisn + 1,
                false,
                false,
                false,
                data,
            ));
        }
    }
}

fn summary(ex: &[Exchange]) -> Vec<(String, String, u16, Vec<u8>, bool)> {
    ex.iter()
        .map(|e| {
            let r = e.response.as_ref();
            (
                e.request.method.to_string(),
                e.request.target.to_string(),
                r.map_or(0, |r| r.status),
                r.map_or(Vec::new(), |r| r.body.data.to_vec()),
                e.error.is_some(),
            )
        })
        .collect()
}

#[test]
fn reordered_and_duplicated_segments_rebuild_the_same_exchanges() {
    let dir = tempfile::tempdir().unwrap();
    let segs = conversation();
    let clean = dir.path().join("clean.pcap");
    write_pcap(&clean, &segs);
    // Swap each message's halves and retransmit some segments (one overlapping).
    let mut nasty = Vec::new();
    for pair in segs.chunks(2) {
        nasty.push(pair[1].clone());
        nasty.push(pair[0].clone());
        nasty.push(pair[1].clone());
    }
    let (fc, off, data) = segs[0].clone();
    nasty.push((fc, off + 2, data[2..].to_vec()));
    let messy = dir.path().join("messy.pcap");
    write_pcap(&messy, &nasty);
    let (a, b) = (dir.path().join("a.db"), dir.path().join("b.db"));
    import(&[&clean], &a, &[]);
    import(&[&messy], &b, &[]);
    let want = vec![
        (
            "GET".to_string(),
            "/a".to_string(),
            200,
            b"0123456789".to_vec(),
            false,
        ),
        (
            "POST".to_string(),
            "/b".to_string(),
            201,
            b"ok".to_vec(),
            false,
        ),
    ];
    assert_eq!(summary(&load(&a)), want);
    assert_eq!(summary(&load(&b)), want);
}

#[test]
fn missing_segment_keeps_the_exchange_flagged_and_resynchronises() {
    let dir = tempfile::tempdir().unwrap();
    let mut segs = conversation();
    // Drop the second half of the first response: its body is lost.
    segs.remove(3);
    let path = dir.path().join("hole.pcap");
    write_pcap(&path, &segs);
    let db = dir.path().join("hole.db");
    let out = import(&[&path], &db, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("1 holes"), "{stderr}");
    let ex = load(&db);
    assert_eq!(ex.len(), 2, "{ex:?}");
    assert_eq!(ex[0].request.target, "/a");
    assert!(
        ex[0]
            .error
            .as_ref()
            .is_some_and(|e| e.message.contains("capture hole")
                && e.kind == mf::model::ErrorKind::CaptureHole),
        "{:?}",
        ex[0].error
    );
    assert_eq!(
        (
            ex[1].request.target.as_str(),
            ex[1].response.as_ref().map(|r| r.status)
        ),
        ("/b", Some(201))
    );
    assert!(ex[1].error.is_none());
}

#[test]
fn truncated_file_imports_what_precedes_the_cut() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("full.pcap");
    write_pcap(&path, &conversation());
    let bytes = std::fs::read(&path).unwrap();
    let cut = dir.path().join("cut.pcap");
    std::fs::write(&cut, &bytes[..bytes.len() - 30]).unwrap();
    let db = dir.path().join("cut.db");
    let out = import(&[&cut], &db, &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("is truncated: imported everything before the cut"),
        "{stderr}"
    );
    let ex = load(&db);
    assert_eq!(ex.len(), 2);
    assert!(ex[0].error.is_none());
    assert!(ex[1].error.is_some(), "the cut response is flagged");
}

#[test]
fn random_bytes_are_a_clear_error_with_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("random.pcap");
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 7) as u8)
        .collect();
    std::fs::write(&path, junk).unwrap();
    let db = dir.path().join("r.db");
    let out = mf()
        .arg("import")
        .arg(&path)
        .arg("-o")
        .arg(&db)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not a pcap or pcapng capture"), "{stderr}");
    assert!(
        !db.exists(),
        "no recording created for a file that is not a capture"
    );
}

/// A pcapng block: type, length, body (padded), length.
fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    while !body.len().is_multiple_of(4) {
        body.push(0);
    }
    let len = (body.len() + 12) as u32;
    let mut out = kind.to_le_bytes().to_vec();
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&body);
    out.extend_from_slice(&len.to_le_bytes());
    out
}

#[test]
fn pcapng_with_two_interfaces_of_different_link_types() {
    let dir = tempfile::tempdir().unwrap();
    let (c, s): (SocketAddr, SocketAddr) = (CLIENT.parse().unwrap(), SERVER.parse().unwrap());
    let mut file = Vec::new();
    let mut shb = 0x1a2b_3c4du32.to_le_bytes().to_vec();
    shb.extend_from_slice(&[1, 0, 0, 0]);
    shb.extend_from_slice(&u64::MAX.to_le_bytes());
    file.extend(block(0x0a0d_0d0a, &shb));
    // Interface 0: Ethernet, µs. Interface 1: raw IPv4, ns (if_tsresol = 9), with a comment.
    let mut idb0 = 1u16.to_le_bytes().to_vec();
    idb0.extend_from_slice(&[0, 0, 0, 0, 4, 0]);
    file.extend(block(1, &idb0));
    let mut idb1 = 228u16.to_le_bytes().to_vec();
    idb1.extend_from_slice(&[0, 0, 0, 0, 4, 0]);
    idb1.extend_from_slice(&[9, 0, 1, 0, 9, 0, 0, 0]);
    idb1.extend_from_slice(&[1, 0, 4, 0, b'l', b'o', b'o', b'p']);
    idb1.extend_from_slice(&[0, 0, 0, 0]);
    file.extend(block(1, &idb1));
    let req = b"GET /ng HTTP/1.1\r\nHost: x\r\n\r\n";
    let resp = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nng";
    let frames = [
        (0u32, build_frame(c, s, 10, 0, true, false, false, b"")),
        (
            1,
            build_frame(s, c, 50, 11, true, false, false, b"")[14..].to_vec(),
        ),
        (0, build_frame(c, s, 11, 51, false, false, false, req)),
        (
            1,
            build_frame(s, c, 51, 11 + req.len() as u32, false, false, false, resp)[14..].to_vec(),
        ),
    ];
    for (i, (iface, frame)) in frames.iter().enumerate() {
        let ts: u64 = if *iface == 0 {
            1_700_000_000_000_000 + i as u64
        } else {
            1_700_000_000_000_000_000 + i as u64 * 1000
        };
        let mut epb = iface.to_le_bytes().to_vec();
        epb.extend_from_slice(&((ts >> 32) as u32).to_le_bytes());
        epb.extend_from_slice(&(ts as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(&(frame.len() as u32).to_le_bytes());
        epb.extend_from_slice(frame);
        file.extend(block(6, &epb));
    }
    let path = dir.path().join("two.pcapng");
    std::fs::write(&path, file).unwrap();
    let db = dir.path().join("two.db");
    import(&[&path], &db, &[]);
    let ex = load(&db);
    assert_eq!(
        summary(&ex),
        vec![(
            "GET".to_string(),
            "/ng".to_string(),
            200,
            b"ng".to_vec(),
            false
        )]
    );
    assert_eq!(ex[0].started_at_ns / 1_000_000_000, 1_700_000_000);
}

#[test]
fn filter_and_port_select_flows() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.pcap");
    write_pcap(&path, &conversation());
    let db = dir.path().join("f.db");
    import(&[&path], &db, &["--port", "9999"]);
    assert_eq!(load(&db).len(), 0);
    let db2 = dir.path().join("f2.db");
    import(&[&path], &db2, &["--filter", "tcp", "--port", "8080"]);
    assert_eq!(load(&db2).len(), 2);
    let out = mf()
        .arg("import")
        .arg(&path)
        .args(["-o"])
        .arg(dir.path().join("x.db"))
        .args(["--filter", "tcp port nonsense("])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid filter"));
}
