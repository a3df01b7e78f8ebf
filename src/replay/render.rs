//! What an answer consists of, before a protocol puts it on the wire: the recorded response
//! rendered once at start-up as HTTP/1 bytes (head with its original header order and case,
//! framed body), the 502/504 a failed recorded exchange stands for, and the body a `status`
//! fault carries. Pure: no I/O.

use bytes::{Bytes, BytesMut};

use crate::decode::h1::{self, Framing};
use crate::decode::h1_encode;
use crate::model::{Body, Exchange, Header, Response};
use crate::vocab::route_template;

/// A recorded response ready to send over HTTP/1.
pub(crate) struct Rendered {
    /// Head without `Connection: close`.
    pub head: Bytes,
    /// Head announcing that the connection closes after this response.
    pub head_close: Bytes,
    /// The framed body (chunked when recorded so).
    pub body: Bytes,
    /// The body as recorded, unframed, and its content type: what a `status` fault sends.
    pub raw_body: Bytes,
    pub content_type: Option<Vec<u8>>,
    /// The recorded framing delimits the body by closing the connection.
    pub must_close: bool,
    /// Route template of the recorded request, for metrics (computed once, not per request).
    pub route: String,
}

/// The reason phrase for a status mf makes up (a fault, a gateway error).
pub(crate) fn reason(code: u16) -> &'static str {
    match crate::vocab::reason_phrase(code) {
        "" => "Injected Fault",
        r => r,
    }
}

/// The answer the client saw when the recorded exchange failed upstream: the proxy's 502/504,
/// chosen by the error's kind.
pub(crate) fn failure_response(ex: &Exchange) -> Response {
    let (status, message) = match &ex.error {
        Some(e) => (e.kind.gateway_status(), e.message.as_str()),
        None => (502, "upstream sent no response"),
    };
    let body = format!("mf: {message}\n");
    Response {
        status,
        reason: reason(status).into(),
        version: "HTTP/1.1".into(),
        headers: vec![
            Header::new("Content-Type", "text/plain; charset=utf-8"),
            Header::new("Content-Length", body.len().to_string()),
        ],
        body: Body::full(body.into_bytes()),
        trailers: vec![],
    }
}

/// Renders the recorded response exactly as the proxy sent it to the recorded client: same
/// header filtering, same framing; `Content-Length` corrected when the stored body was cut.
pub(crate) fn render(ex: &Exchange) -> Rendered {
    let fallback;
    let resp = match &ex.response {
        Some(r) => r,
        None => {
            fallback = failure_response(ex);
            &fallback
        }
    };
    render_response(&ex.request.method, resp, route_template(ex.request.path()))
}

/// Renders `resp`, the answer to a `method` request (see [`render`]).
pub(crate) fn render_response(method: &str, resp: &Response, route: String) -> Rendered {
    let framing = h1::response_framing(method, resp.status, &resp.headers);
    let data = &resp.body.data;
    let mut headers = resp.headers.clone();
    let mut body = BytesMut::new();
    let mut must_close = false;
    match framing {
        Framing::Empty => {}
        Framing::Length(n) => {
            if n != data.len() as u64 {
                for h in headers
                    .iter_mut()
                    .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
                {
                    h.value = data.len().to_string().into_bytes();
                }
            }
            body.extend_from_slice(data);
        }
        Framing::Chunked => {
            h1_encode::chunk(&mut body, data);
            h1_encode::last_chunk(&mut body, &resp.trailers);
        }
        Framing::UntilClose => {
            must_close = true;
            body.extend_from_slice(data);
        }
    }
    let mut head = BytesMut::new();
    h1_encode::response_head(
        &mut head,
        resp.status,
        &resp.reason,
        &h1::client_response_headers(resp.status, &headers, must_close),
    );
    let mut head_close = BytesMut::new();
    h1_encode::response_head(
        &mut head_close,
        resp.status,
        &resp.reason,
        &h1::client_response_headers(resp.status, &headers, true),
    );
    Rendered {
        head: head.freeze(),
        head_close: head_close.freeze(),
        body: body.freeze(),
        raw_body: data.clone(),
        content_type: content_type(&resp.headers),
        must_close,
        route,
    }
}

fn content_type(headers: &[Header]) -> Option<Vec<u8>> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map(|h| h.value.clone())
}

/// The body and content type of a `status` fault: the configured body, else the recorded one
/// (of the matched exchange), else a short JSON error.
pub(crate) fn fault_body(
    configured: Option<&str>,
    recorded: Option<&Rendered>,
) -> (Bytes, Vec<u8>) {
    match (configured, recorded) {
        (Some(b), _) => (
            Bytes::copy_from_slice(b.as_bytes()),
            b"text/plain; charset=utf-8".to_vec(),
        ),
        (None, Some(r)) => (
            r.raw_body.clone(),
            r.content_type
                .clone()
                .unwrap_or_else(|| b"application/octet-stream".to_vec()),
        ),
        (None, None) => (
            Bytes::from_static(b"{\"error\":\"mf: injected fault\"}\n"),
            b"application/json".to_vec(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{ErrorKind, ExchangeError, Request};

    #[test]
    fn a_failed_exchange_renders_as_the_gateway_error_of_its_kind() {
        let ex = |kind| Exchange {
            request: Request {
                method: "GET".into(),
                target: "/slow".into(),
                ..Default::default()
            },
            error: Some(ExchangeError {
                kind,
                message: "no answer".into(),
            }),
            ..Default::default()
        };
        let timeout = render(&ex(ErrorKind::UpstreamTimeout));
        assert!(timeout
            .head
            .starts_with(b"HTTP/1.1 504 Gateway Timeout\r\n"));
        let refused = render(&ex(ErrorKind::UpstreamRefused));
        assert!(refused.head.starts_with(b"HTTP/1.1 502 Bad Gateway\r\n"));
        assert_eq!(&refused.body[..], b"mf: no answer\n");
    }

    #[test]
    fn fault_bodies_prefer_the_configured_then_the_recorded_body() {
        let resp = Response {
            status: 200,
            reason: "OK".into(),
            version: "HTTP/1.1".into(),
            headers: vec![Header::new("Content-Type", "application/json")],
            body: Body::full(b"{\"a\":1}".to_vec()),
            trailers: vec![],
        };
        let r = render_response("GET", &resp, "/".into());
        assert_eq!(
            fault_body(Some("busy"), Some(&r)).0,
            Bytes::from_static(b"busy")
        );
        let (body, ct) = fault_body(None, Some(&r));
        assert_eq!(
            (&body[..], &ct[..]),
            (&b"{\"a\":1}"[..], &b"application/json"[..])
        );
        assert_eq!(fault_body(None, None).1, b"application/json".to_vec());
    }
}
