//! How header lists and body chunk tables are laid out in the store.
//!
//! Headers are stored as their wire form, `Name: value\n` per field. HTTP forbids CR and LF in
//! names and values, so the form round-trips exactly (case, order, duplicates, raw bytes),
//! stays readable in the `sqlite3` shell, and costs no framing overhead.
//!
//! A body's chunk table (`model::BodyChunk`s) is a format byte (1) followed by one pair of
//! LEB128 varints per chunk: the offset's increase over the previous chunk's offset (the
//! first chunk's offset itself), then the length. Twenty events 200 ms apart take about six
//! bytes each; a body that arrived at once has no table at all (NULL).

use crate::model::{BodyChunk, Header, HeaderValue, Text};

/// The first byte of every chunk table this build writes.
const CHUNKS_FORMAT: u8 = 1;

/// Encodes headers; fields that contain a newline (impossible on a valid wire) are escaped.
pub(super) fn encode_headers(headers: &[Header]) -> Vec<u8> {
    let mut out = Vec::new();
    encode_headers_into(&mut out, headers);
    out
}

/// [`encode_headers`] into `out`, replacing what it held (the writer reuses one per batch).
pub(super) fn encode_headers_into(out: &mut Vec<u8>, headers: &[Header]) {
    out.clear();
    out.reserve(
        headers
            .iter()
            .map(|h| h.name.len() + h.value.len() + 3)
            .sum(),
    );
    for h in headers {
        out.extend_from_slice(h.name.as_bytes());
        out.extend_from_slice(b": ");
        // Escape so that a decoded value is never split; `\` itself is escaped too. Values
        // almost never hold either: copying the runs between them (found by a vectorised
        // search) beat a byte-by-byte push, which showed in the writer's profile.
        let mut rest = &h.value[..];
        while let Some(i) = memchr::memchr2(b'\n', b'\\', rest) {
            out.extend_from_slice(&rest[..i]);
            out.extend_from_slice(if rest[i] == b'\n' { b"\\n" } else { b"\\\\" });
            rest = &rest[i + 1..];
        }
        out.extend_from_slice(rest);
        out.push(b'\n');
    }
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
        let name = Text::from_utf8_lossy(&line[..colon]);
        let mut value = HeaderValue::with_capacity(line.len() - colon);
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

/// Encodes a chunk table; `None` for an empty one (nothing is stored).
pub(super) fn encode_chunks(chunks: &[BodyChunk]) -> Option<Vec<u8>> {
    if chunks.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(1 + chunks.len() * 6);
    out.push(CHUNKS_FORMAT);
    let mut previous = 0u64;
    for c in chunks {
        // Offsets never decrease (the recorder sees them in order); clamp rather than wrap.
        let offset = c.offset_ns.max(previous);
        put_varint(&mut out, offset - previous);
        put_varint(&mut out, c.len);
        previous = offset;
    }
    Some(out)
}

/// Inverse of [`encode_chunks`]; `Err` says what is wrong with a damaged table.
pub(super) fn decode_chunks(data: &[u8]) -> Result<Vec<BodyChunk>, String> {
    let Some((&format, mut rest)) = data.split_first() else {
        return Ok(Vec::new());
    };
    if format != CHUNKS_FORMAT {
        return Err(format!("body chunk table of unknown format {format}"));
    }
    let mut chunks = Vec::new();
    let mut offset = 0u64;
    while !rest.is_empty() {
        let delta = take_varint(&mut rest)?;
        let len = take_varint(&mut rest)?;
        offset = offset
            .checked_add(delta)
            .ok_or("body chunk offset overflows")?;
        chunks.push(BodyChunk {
            offset_ns: offset,
            len,
        });
    }
    Ok(chunks)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn take_varint(data: &mut &[u8]) -> Result<u64, String> {
    let mut v = 0u64;
    for (i, &b) in data.iter().enumerate().take(10) {
        let bits = u64::from(b & 0x7f);
        if i == 9 && bits > 1 {
            return Err("body chunk table varint overflows".into());
        }
        v |= bits << (7 * i);
        if b & 0x80 == 0 {
            *data = &data[i + 1..];
            return Ok(v);
        }
    }
    Err("body chunk table ends inside a number".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn chunk_tables_are_small_and_refuse_damage() {
        assert_eq!(encode_chunks(&[]), None);
        let sse: Vec<BodyChunk> = (0..5)
            .map(|i| BodyChunk {
                offset_ns: 3_000_000 + i * 200_000_000,
                len: 24,
            })
            .collect();
        let table = encode_chunks(&sse).unwrap();
        assert!(table.len() <= 1 + 5 * 6, "{} bytes", table.len());
        assert_eq!(decode_chunks(&table).unwrap(), sse);
        assert!(decode_chunks(&table[..table.len() - 1]).is_err());
        assert!(decode_chunks(&[9, 0, 0]).is_err());
        assert!(
            decode_chunks(&[1, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0])
                .is_err()
        );
        assert_eq!(decode_chunks(&[]).unwrap(), vec![]);
    }

    proptest! {
        #[test]
        fn chunk_tables_round_trip(mut raw in proptest::collection::vec((any::<u64>(), any::<u64>()), 0..20)) {
            raw.sort_by_key(|(o, _)| *o);
            let chunks: Vec<BodyChunk> = raw.into_iter().map(|(offset_ns, len)| BodyChunk { offset_ns, len }).collect();
            let decoded = encode_chunks(&chunks).map(|t| decode_chunks(&t).unwrap()).unwrap_or_default();
            prop_assert_eq!(decoded, chunks);
        }

        #[test]
        fn headers_round_trip(fields in proptest::collection::vec(("[A-Za-z-]{1,12}", proptest::collection::vec(any::<u8>(), 0..40)), 0..10)) {
            let headers: Vec<Header> = fields.into_iter().map(|(n, v)| Header { name: n.into(), value: v.into() }).collect();
            prop_assert_eq!(decode_headers(&encode_headers(&headers)), headers);
        }
    }
}
