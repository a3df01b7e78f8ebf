//! Typed netstrings, the serialisation of mitmproxy's flow files: `LEN:DATA` followed by one
//! type byte (`,` bytes, `;` UTF-8 text, `#` integer, `^` float, `!` boolean, `~` null,
//! `]` list, `}` dictionary of alternating keys and values).
//!
//! Written by hand: no maintained Rust crate reads the format (the format is ~10 rules), and
//! the import needs the byte offset of every error, which a small parser gives for free.

/// One parsed value. Dictionaries keep their order; keys are text (mitmproxy writes them as
/// bytes in old files and as text in new ones: both become text here).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum TValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Bytes(Vec<u8>),
    Text(String),
    List(Vec<TValue>),
    Dict(Vec<(String, TValue)>),
}

/// A malformed value, with the byte offset (from the start of the input) where it was found.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("at byte {offset}: {message}")]
pub struct TnetError {
    pub offset: usize,
    pub message: String,
}

/// Deepest nesting accepted: a hostile file cannot exhaust the stack.
const MAX_DEPTH: usize = 64;
/// Longest length prefix (mitmproxy's own reader stops at nine digits).
const MAX_LEN_DIGITS: usize = 9;

impl TValue {
    /// The value under `key` of a dictionary.
    pub(crate) fn get(&self, key: &str) -> Option<&TValue> {
        match self {
            TValue::Dict(items) => items.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Bytes or text as bytes.
    pub(crate) fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            TValue::Bytes(b) => Some(b),
            TValue::Text(t) => Some(t.as_bytes()),
            _ => None,
        }
    }

    /// Bytes or text as text (bytes decoded lossily).
    pub(crate) fn as_text(&self) -> Option<String> {
        self.as_bytes()
            .map(|b| String::from_utf8_lossy(b).into_owned())
    }

    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            TValue::Float(f) => Some(*f),
            TValue::Int(n) => Some(*n as f64),
            _ => None,
        }
    }

    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self {
            TValue::Int(n) => Some(*n),
            _ => None,
        }
    }

    pub(crate) fn as_list(&self) -> Option<&[TValue]> {
        match self {
            TValue::List(l) => Some(l),
            _ => None,
        }
    }
}

/// Parses every top-level value of `data` (a flow file is a concatenation of them), each with
/// its starting offset.
///
/// # Errors
/// The first malformed value, with its offset.
pub(crate) fn parse_all(data: &[u8]) -> Result<Vec<(usize, TValue)>, TnetError> {
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        // Trailing whitespace (a file edited by hand, a newline at the end) is not a value.
        if data[pos..].iter().all(u8::is_ascii_whitespace) {
            break;
        }
        let (value, next) = parse_at(data, pos, 0)?;
        out.push((pos, value));
        pos = next;
    }
    Ok(out)
}

/// Whether `data` starts like a tnetstring dictionary (`123:…}` with a sane length), for
/// telling flow files from other inputs by content.
pub(crate) fn looks_like(data: &[u8]) -> bool {
    let digits = data.iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 || digits > MAX_LEN_DIGITS || data.get(digits) != Some(&b':') {
        return false;
    }
    let len: usize = std::str::from_utf8(&data[..digits])
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX);
    // A dictionary whose end is within the data, or a first value longer than what was
    // sniffed (then the digits and colon alone decide).
    match data.get(digits + 1 + len) {
        Some(&t) => t == b'}',
        None => true,
    }
}

fn err(offset: usize, message: impl Into<String>) -> TnetError {
    TnetError {
        offset,
        message: message.into(),
    }
}

/// Parses the value starting at `pos`; returns it and the offset just after it.
fn parse_at(data: &[u8], pos: usize, depth: usize) -> Result<(TValue, usize), TnetError> {
    if depth > MAX_DEPTH {
        return Err(err(pos, "values nested too deeply"));
    }
    let digits = data[pos..]
        .iter()
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || data.get(pos + digits) != Some(&b':') {
        return Err(err(pos, "expected a length prefix (digits, then ':')"));
    }
    if digits > MAX_LEN_DIGITS {
        return Err(err(pos, "length prefix too long"));
    }
    let len: usize = std::str::from_utf8(&data[pos..pos + digits])
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| err(pos, "invalid length prefix"))?;
    let start = pos + digits + 1;
    let end = start
        .checked_add(len)
        .filter(|&e| e < data.len())
        .ok_or_else(|| {
            err(
                pos,
                format!(
                    "value of {len} bytes runs past the end of the file ({} bytes)",
                    data.len()
                ),
            )
        })?;
    let body = &data[start..end];
    let tag = data[end];
    let text = || std::str::from_utf8(body).map_err(|_| err(start, "text is not valid UTF-8"));
    let value = match tag {
        b',' => TValue::Bytes(body.to_vec()),
        b';' => TValue::Text(text()?.to_string()),
        b'#' => TValue::Int(text()?.parse().map_err(|_| err(start, "invalid integer"))?),
        b'^' => TValue::Float(text()?.parse().map_err(|_| err(start, "invalid float"))?),
        b'!' => match body {
            b"true" => TValue::Bool(true),
            b"false" => TValue::Bool(false),
            _ => return Err(err(start, "invalid boolean")),
        },
        b'~' if body.is_empty() => TValue::Null,
        b'~' => return Err(err(start, "null with a payload")),
        b']' => {
            let mut items = Vec::new();
            let mut p = start;
            while p < end {
                let (v, next) = parse_at(&data[..end], p, depth + 1)?;
                items.push(v);
                p = next;
            }
            TValue::List(items)
        }
        b'}' => {
            let mut items = Vec::new();
            let mut p = start;
            while p < end {
                let (k, next) = parse_at(&data[..end], p, depth + 1)?;
                let key = match k {
                    TValue::Text(t) => t,
                    TValue::Bytes(b) => String::from_utf8_lossy(&b).into_owned(),
                    _ => return Err(err(p, "dictionary key is not a string")),
                };
                if next >= end {
                    return Err(err(p, "dictionary key without a value"));
                }
                let (v, after) = parse_at(&data[..end], next, depth + 1)?;
                items.push((key, v));
                p = after;
            }
            TValue::Dict(items)
        }
        other => {
            return Err(err(
                end,
                format!("unknown type byte {:?}", char::from(other)),
            ))
        }
    };
    Ok((value, end + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_of_every_type_parse() {
        let data = b"44:1:a;5:hello,1:n;0:~1:l;17:1:1#3:1.5^4:true!]}0:}\n";
        let values = parse_all(data).unwrap();
        assert_eq!(values.len(), 2, "{values:?}");
        assert_eq!(values[1], (48, TValue::Dict(Vec::new())));
        let v = &values[0].1;
        assert_eq!(
            v.get("a").and_then(TValue::as_text).as_deref(),
            Some("hello")
        );
        assert_eq!(v.get("n"), Some(&TValue::Null));
        assert_eq!(
            v.get("l"),
            Some(&TValue::List(vec![
                TValue::Int(1),
                TValue::Float(1.5),
                TValue::Bool(true)
            ]))
        );
    }

    #[test]
    fn errors_carry_the_offset() {
        // The second value claims more bytes than there are.
        let e = parse_all(b"0:}9:abc,").unwrap_err();
        assert_eq!(e.offset, 3);
        let e = parse_all(b"3:abc?").unwrap_err();
        assert_eq!(e.offset, 5);
        assert!(parse_all(b"x").is_err());
        let e = parse_all(b"4:1:a;}").unwrap_err();
        assert!(e.message.contains("without a value"), "{e}");
    }

    #[test]
    fn sniffing_wants_a_dictionary() {
        assert!(looks_like(b"2:{}"));
        assert!(looks_like(b"0:}"));
        assert!(looks_like(b"123456:"));
        assert!(!looks_like(b"{\"log\":1}"));
        assert!(!looks_like(b"3:abc,"));
    }
}
