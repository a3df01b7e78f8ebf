//! Values that change on every request or answer by construction — UUIDs, ULIDs, JWTs,
//! timestamps, request-id hex, random tokens — and values that name an identifier or a
//! credential. `infer` uses these to find noise and value flows; `diff` to tell noise from
//! differences and to pick the values it rebinds.

use super::{is_date, is_uuid};

/// The volatile form a value has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    Uuid,
    /// 26 characters of Crockford base32 (a ULID).
    Ulid,
    /// `header.payload.signature`, base64url, header starting `eyJ` (`{"`).
    Jwt,
    /// ISO 8601 / RFC 3339 date and time.
    DateTime,
    /// 10 to 19 digits: epoch seconds, milliseconds, micro- or nanoseconds.
    EpochDigits,
    /// 12 or more hex digits (request ids, trace ids, hashes).
    Hex,
    /// 16 or more letters, digits, `-` or `_`, with both letters and digits.
    Token,
}

impl Form {
    /// The stable name, used in reports (`form:uuid`).
    pub fn as_str(self) -> &'static str {
        match self {
            Form::Uuid => "uuid",
            Form::Ulid => "ulid",
            Form::Jwt => "jwt",
            Form::DateTime => "timestamp",
            Form::EpochDigits => "epoch",
            Form::Hex => "hex-id",
            Form::Token => "token",
        }
    }

    /// True for the forms that hold a time.
    pub fn is_time(self) -> bool {
        matches!(self, Form::DateTime | Form::EpochDigits)
    }
}

/// `YYYY-MM-DD[T ]HH:MM…`.
pub fn is_datetime(s: &str) -> bool {
    s.len() >= 19
        && s.is_char_boundary(10)
        && is_date(&s[..10])
        && matches!(s.as_bytes()[10], b'T' | b't' | b' ')
        && s.as_bytes()[13] == b':'
}

fn is_ulid(s: &str) -> bool {
    // Crockford base32 leaves out I, L, O and U; the first character is at most 7 (128 bits).
    s.len() == 26
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b.is_ascii_alphabetic() && !b"ILOUilou".contains(&b)))
        && s.as_bytes()[0] <= b'7'
        && s.bytes().any(|b| b.is_ascii_alphabetic())
}

fn is_jwt(s: &str) -> bool {
    let mut parts = s.split('.');
    let b64url = |p: &str| {
        !p.is_empty()
            && p.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'='))
    };
    let (Some(h), Some(p), Some(sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return false;
    };
    h.starts_with("eyJ") && b64url(h) && b64url(p) && (sig.is_empty() || b64url(sig))
}

/// The volatile form of `v`, if it has one.
pub fn form_of(v: &str) -> Option<Form> {
    if is_uuid(v) {
        return Some(Form::Uuid);
    }
    if is_jwt(v) {
        return Some(Form::Jwt);
    }
    if is_datetime(v) {
        return Some(Form::DateTime);
    }
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return match v.len() {
            10..=19 => Some(Form::EpochDigits),
            20.. => Some(Form::Hex),
            _ => None,
        };
    }
    if is_ulid(v) {
        return Some(Form::Ulid);
    }
    if v.len() >= 12 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Some(Form::Hex);
    }
    let token = v.len() >= 16
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        && v.bytes().any(|b| b.is_ascii_digit())
        && v.bytes().any(|b| b.is_ascii_alphabetic());
    token.then_some(Form::Token)
}

/// True when `v` has a volatile form: it differs on every request by construction.
pub fn is_volatile(v: &str) -> bool {
    form_of(v).is_some()
}

/// The time a timestamp-shaped value holds, in nanoseconds since the Unix epoch: epoch
/// seconds (10 digits), milliseconds (13), microseconds (16), nanoseconds (19), or an
/// ISO 8601 date-time (the zone offset is ignored: callers compare with a tolerance of hours).
pub fn timestamp_ns(v: &str) -> Option<i64> {
    if v.bytes().all(|b| b.is_ascii_digit()) {
        let n: i64 = v.parse().ok()?;
        return match v.len() {
            10 => n.checked_mul(1_000_000_000),
            13 => n.checked_mul(1_000_000),
            16 => n.checked_mul(1_000),
            19 => Some(n),
            _ => None,
        };
    }
    if !is_datetime(v) {
        return None;
    }
    let num = |r: std::ops::Range<usize>| v.get(r)?.parse::<i64>().ok();
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi) = (num(11..13)?, num(14..16)?);
    let s = num(17..19).unwrap_or(0);
    let days = days_from_civil(y, mo, d);
    Some((((days * 24 + h) * 60 + mi) * 60 + s) * 1_000_000_000)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Whether a JSON field (dotted path; its last key counts) holding `value` names an
/// identifier or a credential: `Some(true)` for a credential (`token`, `session`),
/// `Some(false)` for an id (`id`, `user_id`, `orderId`, `uuid`, `…key`, or a UUID value),
/// `None` otherwise. Numbers shorter than `min_numeric_len` digits are not identifiers
/// (value-flow inference wants 2: single digits collide; rebinding takes 1).
pub fn identifier_like(field: &str, value: &str, min_numeric_len: usize) -> Option<bool> {
    let leaf = field.rsplit('.').next().unwrap_or(field);
    let lower = leaf.to_ascii_lowercase();
    let credential = lower.contains("token") || lower.contains("session");
    let id_name = lower == "id"
        || lower.ends_with("_id")
        || leaf.ends_with("Id")
        || lower == "uuid"
        || lower.ends_with("key");
    let numeric = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
    let long_enough = if numeric {
        value.len() >= min_numeric_len
    } else {
        value.len() >= 4
    };
    (long_enough && (credential || id_name || is_uuid(value))).then_some(credential)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        assert_eq!(
            form_of("3f2a1c9e-1b2c-4d5e-8f90-123456789abc"),
            Some(Form::Uuid)
        );
        assert_eq!(form_of("01ARZ3NDEKTSV4RRFFQ69G5FAV"), Some(Form::Ulid));
        assert_eq!(
            form_of("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2lnbmF0dXJl"),
            Some(Form::Jwt)
        );
        assert_eq!(form_of("2026-12-01T14:00:00Z"), Some(Form::DateTime));
        assert_eq!(form_of("1764597600"), Some(Form::EpochDigits));
        assert_eq!(form_of("4bf92f3577b34da6"), Some(Form::Hex));
        assert_eq!(form_of("user-3"), None);
        assert_eq!(form_of("42"), None);
        assert_eq!(form_of("Hello world"), None);
    }

    #[test]
    fn timestamps_agree_across_forms() {
        let iso = timestamp_ns("2026-12-01T14:00:00Z").unwrap();
        assert_eq!(timestamp_ns("1796133600"), Some(iso));
        assert_eq!(timestamp_ns("1796133600000"), Some(iso));
        assert_eq!(timestamp_ns("1970-01-01 00:00:00"), Some(0));
        assert_eq!(timestamp_ns("12345"), None);
    }

    #[test]
    fn identifiers() {
        assert_eq!(identifier_like("items.[].id", "7", 1), Some(false));
        assert_eq!(identifier_like("items.[].id", "7", 2), None);
        assert_eq!(identifier_like("access_token", "abcd", 2), Some(true));
        assert_eq!(identifier_like("name", "bob", 1), None);
    }
}
