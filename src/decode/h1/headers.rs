//! Connection-level header rules shared by everything that speaks HTTP/1 to a peer: which
//! fields are hop-by-hop, whether a connection stays open, how a recorded response is
//! framed when sent again, and which response headers a client gets.

use super::framing::body_framing;
use super::Framing;
use crate::model::Header;

/// Headers that describe one connection rather than the message (RFC 9110 §7.6.1), plus any
/// field the `Connection` header names. A proxy must not forward them.
pub fn is_hop_by_hop(name: &str, headers: &[Header]) -> bool {
    const FIXED: [&str; 8] = [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "transfer-encoding",
        "upgrade",
    ];
    if FIXED.iter().any(|f| name.eq_ignore_ascii_case(f)) {
        return true;
    }
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| {
            h.value
                .split(|b| *b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(name.as_bytes()))
        })
}

/// True when the peer asked to close the connection after this message, or its version
/// does not keep connections alive by default.
pub fn wants_close(minor: u8, headers: &[Header]) -> bool {
    let mut close = minor == 0;
    for h in headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
    {
        for t in h.value.split(|b| *b == b',') {
            let t = t.trim_ascii();
            if t.eq_ignore_ascii_case(b"close") {
                return true;
            }
            if t.eq_ignore_ascii_case(b"keep-alive") {
                close = false;
            }
        }
    }
    close
}

/// How a response to `method` with `status` and `headers` is framed (RFC 9112 §6.3); used by
/// the replay server to send a recorded response exactly as the decoder would have read it.
pub fn response_framing(method: &str, status: u16, headers: &[Header]) -> Framing {
    let bodiless = method.eq_ignore_ascii_case("HEAD")
        || (100..200).contains(&status)
        || status == 204
        || status == 304;
    let tunnel = method.eq_ignore_ascii_case("CONNECT") && (200..300).contains(&status);
    if bodiless || tunnel {
        return Framing::Empty;
    }
    match body_framing(headers) {
        Ok(Some(f)) => f,
        Ok(None) => Framing::UntilClose,
        // A recorded Content-Length that does not parse cannot be trusted: delimit by close.
        Err(_) => Framing::UntilClose,
    }
}

/// The response headers a proxy or replay server sends to its client: hop-by-hop fields
/// dropped (RFC 9110 §7.6.1) except those that keep their meaning end to end here —
/// `Transfer-Encoding` (mf re-chunks the same body) and, on a 101, `Connection`/`Upgrade` —
/// and `Connection: close` appended when this connection ends after the response.
pub fn client_response_headers(status: u16, headers: &[Header], close: bool) -> Vec<Header> {
    client_response_fields(status, headers, close)
        .map(|(name, value)| Header {
            name: name.to_string(),
            value: value.to_vec(),
        })
        .collect()
}

/// [`client_response_headers`] as borrowed `(name, value)` fields, for encoding without
/// copying every header (the recording proxy does this for each response).
pub fn client_response_fields(
    status: u16,
    headers: &[Header],
    close: bool,
) -> impl Iterator<Item = (&str, &[u8])> + Clone {
    let closing = (close && status != 101).then_some(("Connection", &b"close"[..]));
    headers
        .iter()
        .filter(move |h| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                || (status == 101
                    && (h.name.eq_ignore_ascii_case("connection")
                        || h.name.eq_ignore_ascii_case("upgrade")))
                || !is_hop_by_hop(&h.name, headers)
        })
        .map(|h| (h.name.as_str(), &h.value[..]))
        .chain(closing)
}
