//! Recognising what a TCP flow carries from its first bytes, and where a request line
//! starts after a hole: pure functions over byte slices.

use std::net::SocketAddr;

use bytes::Bytes;

/// The first `max` bytes held for one direction.
pub(super) fn contiguous_prefix(chunks: &[(i64, Bytes)], max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (_, c) in chunks {
        let take = c.len().min(max - out.len());
        out.extend_from_slice(&c[..take]);
        if out.len() >= max {
            break;
        }
    }
    out
}

pub(super) fn drop_prefix(chunks: &mut Vec<(i64, Bytes)>, mut n: usize) {
    let mut out = Vec::new();
    for (at, c) in chunks.drain(..) {
        if n >= c.len() {
            n -= c.len();
        } else {
            out.push((at, c.slice(n..)));
            n = 0;
        }
    }
    *chunks = out;
}

/// Which side is the client when nothing in the bytes says: a `--port` hint names the
/// server; otherwise the higher port is taken as the client's ephemeral one.
pub(super) fn guess_client(hints: &[u16], addrs: &[SocketAddr; 2]) -> usize {
    if hints.contains(&addrs[0].port()) {
        1
    } else if hints.contains(&addrs[1].port()) {
        0
    } else {
        usize::from(addrs[1].port() > addrs[0].port())
    }
}

/// At least two whole, plausible HTTP/2 frames back to back (known type, sane length,
/// stream 0 only for connection frames), or a SETTINGS frame alone.
pub(super) fn looks_like_h2_frames(b: &[u8]) -> bool {
    let mut at = 0;
    let mut frames = 0;
    while b.len() >= at + 9 {
        let len = usize::from(b[at]) << 16 | usize::from(b[at + 1]) << 8 | usize::from(b[at + 2]);
        let kind = b[at + 3];
        let stream = u32::from_be_bytes([b[at + 5], b[at + 6], b[at + 7], b[at + 8]]);
        let connection_frame = matches!(kind, 4 | 6 | 7);
        if kind > 9
            || len > 1 << 20
            || stream & 0x8000_0000 != 0
            || (stream == 0) != (connection_frame || kind == 8) && kind != 8
        {
            return false;
        }
        if kind == 4 && stream == 0 && len % 6 == 0 && frames == 0 && b.len() >= at + 9 + len {
            return true;
        }
        at += 9 + len;
        if at > b.len() {
            return frames >= 1;
        }
        frames += 1;
        if frames >= 2 {
            return true;
        }
    }
    false
}

const METHODS: [&[u8]; 9] = [
    b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
];

/// `METHOD SP target SP HTTP/1.x` at the start (the line may still be incomplete).
pub(super) fn looks_like_request(b: &[u8]) -> bool {
    let Some(sp) = b.iter().take(16).position(|c| *c == b' ') else {
        return false;
    };
    let method = &b[..sp];
    if method.is_empty()
        || !method
            .iter()
            .all(|c| c.is_ascii_uppercase() || *c == b'-' || *c == b'_')
    {
        return false;
    }
    let line_end = b.iter().position(|c| *c == b'\n').unwrap_or(b.len());
    let line = &b[..line_end];
    if line_end == b.len() {
        // Incomplete line: a known method is enough to wait for the rest.
        return METHODS.contains(&method) && !line.contains(&0);
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.len() > sp + 9 && line[line.len() - 8..].starts_with(b"HTTP/1.")
}

/// Where the first complete request line after a line end starts.
pub(super) fn find_request_line(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = b[i..].iter().position(|c| *c == b'\n') {
        let start = i + p + 1;
        let rest = &b[start..];
        if rest.contains(&b'\n') && looks_like_request(rest) {
            return Some(start);
        }
        i = start;
    }
    None
}
