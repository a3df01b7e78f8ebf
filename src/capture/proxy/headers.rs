//! What the proxy forwards of a request head: the client's headers in their order and case,
//! minus hop-by-hop fields (except an upgrade handshake and the body framing), with Host and
//! X-Forwarded-For adjusted. What is recorded is decided by the recorder, not here.

use std::borrow::Cow;
use std::net::SocketAddr;

use crate::capture::setup::ProxyConfig;
use crate::decode::h1::{self, RequestHead};
use crate::decode::ws_deflate;
use crate::model::{Header, HeaderList};

pub(super) fn is_websocket_upgrade(headers: &[Header]) -> bool {
    headers
        .header("upgrade")
        .is_some_and(|v| v.trim_ascii().eq_ignore_ascii_case(b"websocket"))
}

/// The request headers sent upstream, in the client's order and case. `host_override`
/// replaces the Host value (reverse proxy); a request without Host gets `authority`.
///
/// The fields borrow from the client's head where they are forwarded unchanged: encoding
/// them copies each header once, into the upstream's buffer, not into a list first.
pub(super) fn forward_request_headers<'a>(
    head: &'a RequestHead,
    config: &ProxyConfig,
    peer: SocketAddr,
    host_override: Option<&'a str>,
    authority: &'a str,
) -> Fields<'a> {
    // `Upgrade: h2c` is declined (the request goes on as HTTP/1.1, which RFC 9113 §3.2 allows):
    // hyper and h2 cannot adopt an upgraded request as stream 1, so the proxy could not record
    // it. Clients that want HTTP/2 from the start use prior knowledge, which is recorded.
    let upgrading = head
        .headers
        .header("upgrade")
        .is_some_and(|v| !v.trim_ascii().eq_ignore_ascii_case(b"h2c"));
    let mut out = Fields::new();
    let mut saw_host = false;
    let mut saw_xff = false;
    for h in &head.headers {
        let keep_hop = h.name.eq_ignore_ascii_case("transfer-encoding")
            || (upgrading
                && (h.name.eq_ignore_ascii_case("connection")
                    || h.name.eq_ignore_ascii_case("upgrade")));
        if !keep_hop && h1::is_hop_by_hop(&h.name, &head.headers) {
            continue;
        }
        // Of WebSocket extensions only permessage-deflate is offered upstream: its frames are
        // recorded inflated with their compressed flag (capture::ws) and replay can deflate
        // them again; another extension's RSV bits or payload transform could be neither.
        if h.name.eq_ignore_ascii_case("sec-websocket-extensions")
            && is_websocket_upgrade(&head.headers)
        {
            if let Some(value) = deflate_offers(&h.value) {
                out.push((&h.name, Cow::Owned(value)));
            }
            continue;
        }
        if h.name.eq_ignore_ascii_case("host") {
            saw_host = true;
            if let Some(host) = host_override {
                out.push((&h.name, Cow::Borrowed(host.as_bytes())));
                continue;
            }
        }
        if config.x_forwarded_for && h.name.eq_ignore_ascii_case("x-forwarded-for") && !saw_xff {
            saw_xff = true;
            let mut value = h.value.to_vec();
            value.extend_from_slice(format!(", {}", peer.ip()).as_bytes());
            out.push((&h.name, Cow::Owned(value)));
            continue;
        }
        out.push((&h.name, Cow::Borrowed(&h.value)));
    }
    if !saw_host {
        let host = host_override.unwrap_or(authority);
        out.insert(0, ("Host", Cow::Borrowed(host.as_bytes())));
    }
    if config.x_forwarded_for && !saw_xff {
        out.push((
            "X-Forwarded-For",
            Cow::Owned(peer.ip().to_string().into_bytes()),
        ));
    }
    out
}

/// One forwarded header: its name and value, borrowed unless the proxy changed it.
pub(super) type Field<'a> = (&'a str, Cow<'a, [u8]>);

/// A request's forwarded headers, on the stack up to 16 (they live only while the head is
/// encoded).
pub(super) type Fields<'a> = smallvec::SmallVec<[Field<'a>; 16]>;

/// The permessage-deflate offers of one `Sec-WebSocket-Extensions` value: the value itself
/// when it offers nothing else (forwarded byte for byte), those offers alone otherwise, and
/// `None` when there are none.
fn deflate_offers(value: &[u8]) -> Option<Vec<u8>> {
    let all = ws_deflate::elements(value);
    let kept: Vec<&[u8]> = all
        .iter()
        .copied()
        .filter(|e| ws_deflate::is_deflate(e))
        .collect();
    if kept.is_empty() {
        None
    } else if kept.len() == all.len() {
        Some(value.to_vec())
    } else {
        Some(kept.join(&b", "[..]))
    }
}

#[cfg(test)]
mod tests {
    use super::deflate_offers;

    #[test]
    fn only_permessage_deflate_offers_go_upstream() {
        let v = b"permessage-deflate; client_max_window_bits";
        assert_eq!(deflate_offers(v).as_deref(), Some(&v[..]));
        assert_eq!(
            deflate_offers(b"x-foo; a=\"1,2\", permessage-deflate, x-webkit-deflate-frame")
                .as_deref(),
            Some(&b"permessage-deflate"[..])
        );
        assert_eq!(deflate_offers(b"x-webkit-deflate-frame"), None);
    }
}
