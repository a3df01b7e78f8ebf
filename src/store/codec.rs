//! How header lists are laid out in the store.
//!
//! Headers are stored as their wire form, `Name: value\n` per field. HTTP forbids CR and LF in
//! names and values, so the form round-trips exactly (case, order, duplicates, raw bytes),
//! stays readable in the `sqlite3` shell, and costs no framing overhead.

use crate::model::Header;

/// Encodes headers; fields that contain a newline (impossible on a valid wire) are escaped.
pub(super) fn encode_headers(headers: &[Header]) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        headers
            .iter()
            .map(|h| h.name.len() + h.value.len() + 3)
            .sum(),
    );
    for h in headers {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        for &b in &h.value {
            // Escape so that a decoded value is never split; `\` itself is escaped too.
            match b {
                b'\n' => out.extend_from_slice(b"\\n"),
                b'\\' => out.extend_from_slice(b"\\\\"),
                _ => out.push(b),
            }
        }
        out.push(b'\n');
    }
    out
}

/// Inverse of [`encode_headers`].
pub(super) fn decode_headers(data: &[u8]) -> Vec<Header> {
    let mut headers = Vec::new();
    for line in data.split(|b| *b == b'\n') {
        if line.is_empty() {
            continue;
        }
        let Some(colon) = line.windows(2).position(|w| w == b": ") else {
            continue;
        };
        let name = String::from_utf8_lossy(&line[..colon]).into_owned();
        let mut value = Vec::with_capacity(line.len() - colon);
        let mut escaped = false;
        for &b in &line[colon + 2..] {
            if escaped {
                value.push(if b == b'n' { b'\n' } else { b });
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else {
                value.push(b);
            }
        }
        headers.push(Header { name, value });
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn headers_round_trip(fields in proptest::collection::vec(("[A-Za-z-]{1,12}", proptest::collection::vec(any::<u8>(), 0..40)), 0..10)) {
            let headers: Vec<Header> = fields.into_iter().map(|(n, v)| Header { name: n, value: v }).collect();
            prop_assert_eq!(decode_headers(&encode_headers(&headers)), headers);
        }
    }
}
