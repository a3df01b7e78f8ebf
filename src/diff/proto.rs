//! Protobuf messages read without their schema, so that a changed gRPC message shows which
//! field changed (`grpc message 2 $.1.3`) instead of only "the bytes differ". Hand-written:
//! the wire format's four kinds of value are a few lines, and a schema-based crate needs the
//! `.proto` files a recording does not have.

use serde_json::{Map, Value};

/// Nested messages deeper than this are shown as bytes.
const MAX_DEPTH: usize = 16;

fn varint(data: &[u8], pos: &mut usize) -> Option<u64> {
    let mut v: u64 = 0;
    for shift in (0..64).step_by(7) {
        let b = *data.get(*pos)?;
        *pos += 1;
        v |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(v);
        }
    }
    None
}

fn take<'a>(data: &'a [u8], pos: &mut usize, n: usize) -> Option<&'a [u8]> {
    let end = pos.checked_add(n)?;
    let s = data.get(*pos..end)?;
    *pos = end;
    Some(s)
}

fn printable(s: &str) -> bool {
    s.chars()
        .all(|c| !c.is_control() || matches!(c, '\n' | '\r' | '\t'))
}

/// The message as JSON: an object of field number → value (an array when the field repeats);
/// varints and fixed-width numbers as numbers, length-delimited fields as text when they are
/// printable UTF-8, else as a nested message when they parse as one, else as hex. `None` when
/// the bytes are not a protobuf message.
pub(super) fn decode(data: &[u8]) -> Option<Value> {
    decode_at(data, 0)
}

fn decode_at(data: &[u8], depth: usize) -> Option<Value> {
    let mut fields = Map::new();
    let mut pos = 0;
    while pos < data.len() {
        let key = varint(data, &mut pos)?;
        let (number, wire) = (key >> 3, key & 7);
        if number == 0 || number > (1 << 29) {
            return None;
        }
        let value = match wire {
            0 => Value::from(varint(data, &mut pos)?),
            1 => Value::from(u64::from_le_bytes(
                take(data, &mut pos, 8)?.try_into().ok()?,
            )),
            5 => Value::from(u32::from_le_bytes(
                take(data, &mut pos, 4)?.try_into().ok()?,
            )),
            2 => {
                let n = usize::try_from(varint(data, &mut pos)?).ok()?;
                let bytes = take(data, &mut pos, n)?;
                match std::str::from_utf8(bytes) {
                    Ok(s) if printable(s) => Value::from(s),
                    _ => match (depth < MAX_DEPTH)
                        .then(|| decode_at(bytes, depth + 1))
                        .flatten()
                    {
                        Some(m) if !bytes.is_empty() => m,
                        _ => Value::from(format!("0x{}", hex(bytes))),
                    },
                }
            }
            _ => return None,
        };
        let name = number.to_string();
        match fields.get_mut(&name) {
            Some(Value::Array(items)) => items.push(value),
            Some(first) => {
                let first = first.take();
                fields.insert(name, Value::Array(vec![first, value]));
            }
            None => {
                fields.insert(name, value);
            }
        }
    }
    Some(Value::Object(fields))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_nested_messages_and_repeats() {
        // 1: 150, 2: "pen", 3: {1: 7}, 4: [1, 2], 5: fixed32 1
        let data = [
            0x08, 0x96, 0x01, 0x12, 3, b'p', b'e', b'n', 0x1a, 2, 0x08, 7, 0x20, 1, 0x20, 2, 0x2d,
            1, 0, 0, 0,
        ];
        let v = decode(&data).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"1": 150, "2": "pen", "3": {"1": 7}, "4": [1, 2], "5": 1})
        );
        assert_eq!(decode(&[0x08]), None, "a cut varint");
        assert_eq!(decode(&[0x0f, 1]), None, "wire type 7");
        assert_eq!(decode(&[0x12, 9, 1]), None, "a length beyond the end");
        assert_eq!(decode(&[]), Some(serde_json::json!({})));
    }
}
