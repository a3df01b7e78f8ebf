//! Connection-level header rules shared by everything that speaks HTTP/1 to a peer: which
//! fields are hop-by-hop, whether a connection stays open, how a recorded response is
//! framed when sent again, and which response headers a client gets.

use super::framing::body_framing;
use super::Framing;
use crate::model::{Header, HeaderValue};

/// Headers that describe one connection rather than the message (RFC 9110 §7.6.1), plus any
/// field the `Connection` header names. A proxy must not forward them.
pub fn is_hop_by_hop(name: &str, headers: &[Header]) -> bool {
    is_fixed_hop_by_hop(name) || named_by_connection(name, headers)
}

/// The hop-by-hop fields RFC 9110 §7.6.1 names. Told apart by length first: a proxy asks
/// this of every header of every message, and comparing each name with all eight words was
/// 5.7% of the recording proxy's instructions (callgrind, small JSON answers).
fn is_fixed_hop_by_hop(name: &str) -> bool {
    let words: &[&str] = match name.len() {
        2 => &["te"],
        7 => &["upgrade"],
        10 => &["connection", "keep-alive"],
        16 => &["proxy-connection"],
        17 => &["transfer-encoding"],
        18 => &["proxy-authenticate"],
        19 => &["proxy-authorization"],
        _ => return false,
    };
    words.iter().any(|w| name.eq_ignore_ascii_case(w))
}

/// True when a `Connection` header of `headers` lists a name that is not a fixed hop-by-hop
/// field, i.e. when [`named_by_connection`] can say more than [`is_fixed_hop_by_hop`].
fn names_other_fields(headers: &[Header]) -> bool {
    headers
        .iter()
        .filter(|h| h.name.eq_ignore_ascii_case("connection"))
        .any(|h| {
            h.value.split(|b| *b == b',').any(|t| {
                let t = t.trim_ascii();
                !t.is_empty() && std::str::from_utf8(t).map_or(true, |t| !is_fixed_hop_by_hop(t))
            })
        })
}

/// True when a `Connection` header of `headers` lists `name`.
fn named_by_connection(name: &str, headers: &[Header]) -> bool {
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
            name: name.into(),
            value: HeaderValue::from_slice(value),
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
    // Most responses have no `Connection` header, or one that names only fields dropped
    // anyway (nginx sends `Connection: keep-alive`): then no field needs the look through
    // all headers for one that names it, per field and twice (the walk that sizes the head).
    let listed = names_other_fields(headers);
    headers
        .iter()
        .filter(move |h| {
            h.name.eq_ignore_ascii_case("transfer-encoding")
                || (status == 101
                    && (h.name.eq_ignore_ascii_case("connection")
                        || h.name.eq_ignore_ascii_case("upgrade")))
                || !(is_fixed_hop_by_hop(&h.name)
                    || (listed && named_by_connection(&h.name, headers)))
        })
        .map(|h| (h.name.as_str(), &h.value[..]))
        .chain(closing)
}
