//! The `grpc-message` value: a status message as gRPC's HTTP/2 mapping writes it
//! (PROTOCOL-HTTP2.md, "Responses": `Status-Message → Percent-Encoded`).
//!
//! The message is UTF-8; bytes from 0x20 to 0x7E stay as they are except `%`, and every
//! other byte (controls, DEL, each byte of a non-ASCII character) becomes `%XX`. Clients
//! show what they decode to the user, so encoding more than this (spaces, `:`, `/`, `.`)
//! shows escapes wherever a client does not decode them all.

use std::fmt::Write as _;

/// Encodes `message` for a `grpc-message` field.
///
/// One exception to "only outside 0x20–0x7E": a space at the very start or end is encoded
/// too, because an HTTP field value must not begin or end with whitespace (RFC 9113 §8.2.1)
/// and a peer may reject or trim it; `%20` decodes to the same message.
pub(crate) fn encode(message: &str) -> String {
    let bytes = message.as_bytes();
    let mut out = String::with_capacity(bytes.len());
    for (i, &b) in bytes.iter().enumerate() {
        let edge_space = b == b' ' && (i == 0 || i + 1 == bytes.len());
        if (0x20..=0x7E).contains(&b) && b != b'%' && !edge_space {
            out.push(char::from(b));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// gRPC's decoding: `%XX` becomes the byte, anything else stays (an invalid escape is
    /// kept as written, as the spec asks of receivers).
    fn decode(value: &str) -> String {
        percent_encoding::percent_decode_str(value)
            .decode_utf8_lossy()
            .into_owned()
    }

    #[test]
    fn readable_ascii_stays_readable() {
        assert_eq!(
            encode("mf: no recorded call matches /pkg.Svc/Method"),
            "mf: no recorded call matches /pkg.Svc/Method"
        );
        assert_eq!(
            encode("a b:c/d.e-f_g~h!*'()[]{}<>=?&#@$,;+\"\\"),
            "a b:c/d.e-f_g~h!*'()[]{}<>=?&#@$,;+\"\\"
        );
    }

    #[test]
    fn percent_controls_and_non_ascii_are_escaped() {
        assert_eq!(encode("100%"), "100%25");
        assert_eq!(encode("a\nb\tc\r\0"), "a%0Ab%09c%0D%00");
        assert_eq!(encode("del\x7f"), "del%7F");
        assert_eq!(encode("café ☃"), "caf%C3%A9 %E2%98%83");
        assert_eq!(encode(" padded "), "%20padded%20");
        assert_eq!(encode(""), "");
    }

    #[test]
    fn output_is_a_valid_header_value() {
        let v = encode(" weird\u{1}\u{7f}é% ");
        assert!(http::HeaderValue::from_str(&v).is_ok(), "{v}");
        assert!(v.bytes().all(|b| (0x21..=0x7E).contains(&b) || b == b' '));
    }

    proptest! {
        #[test]
        fn round_trips(message in any::<String>()) {
            let encoded = encode(&message);
            prop_assert!(encoded.bytes().all(|b| (0x20..=0x7E).contains(&b)));
            prop_assert!(!encoded.starts_with(' ') && !encoded.ends_with(' '));
            prop_assert_eq!(decode(&encoded), message);
        }
    }
}
