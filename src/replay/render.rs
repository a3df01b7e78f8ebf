//! What an answer consists of, before a protocol puts it on the wire: the recorded response
//! rendered once at start-up as HTTP/1 bytes (head with its original header order and case,
//! framed body), the 502/504 a failed recorded exchange stands for, and the body a `status`
//! fault carries. Pure: no I/O.

use bytes::{Bytes, BytesMut};

use super::timed::{self, Piece, TimedBody};
use crate::decode::h1::{self, Framing};
use crate::decode::h1_encode;
use crate::model::{Body, Exchange, Header, HeaderList, Response, Timings};
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
    /// When the body arrived in timed chunks: where `body` splits and when each piece is
    /// due. `None` for a body that arrived at once (most).
    pub timed: Option<Box<TimedBody>>,
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
    render_response(
        &ex.request.method,
        resp,
        &ex.timings,
        route_template(ex.request.path()),
    )
}

/// Renders `resp`, the answer to a `method` request whose recorded `timings` place its body
/// chunks (see [`render`]).
pub(crate) fn render_response(
    method: &str,
    resp: &Response,
    timings: &Timings,
    route: String,
) -> Rendered {
    let framing = h1::response_framing(method, resp.status, &resp.headers);
    let data = &resp.body.data;
    let mut headers = resp.headers.clone();
    let mut body = BytesMut::new();
    let mut must_close = false;
    let schedule = match framing {
        Framing::Empty => None,
        _ => timed::schedule(&resp.body, timings),
    };
    if let (Some((raw, end)), Framing::Chunked) = (&schedule, framing) {
        // One chunk frame per recorded chunk, so the client sees the recorded boundaries.
        let mut framed = Vec::with_capacity(raw.len() + 1);
        for p in raw {
            let start = body.len();
            h1_encode::chunk(&mut body, &data[p.range.clone()]);
            framed.push(Piece {
                after: p.after,
                range: start..body.len(),
            });
        }
        let start = body.len();
        h1_encode::last_chunk(&mut body, &resp.trailers);
        match framed.last_mut() {
            Some(last) if !timed::ends_apart(last.after, *end) => last.range.end = body.len(),
            _ => framed.push(Piece {
                after: *end,
                range: start..body.len(),
            }),
        }
        return finish(
            resp,
            headers,
            body,
            false,
            route,
            Some(TimedBody {
                raw: raw.clone(),
                framed,
                end: *end,
                event_stream: is_event_stream(&resp.headers),
            }),
        );
    }
    match framing {
        Framing::Empty => {}
        Framing::Length(n) => {
            if n != data.len() as u64 {
                for h in headers
                    .iter_mut()
                    .filter(|h| h.name.eq_ignore_ascii_case("content-length"))
                {
                    h.value =
                        crate::model::HeaderValue::from_slice(data.len().to_string().as_bytes());
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
    let timed = schedule.map(|(raw, end)| {
        let mut framed = raw.clone();
        if must_close
            && framed
                .last()
                .is_some_and(|l| timed::ends_apart(l.after, end))
        {
            // The close ends the body: it comes when the recorded body ended.
            framed.push(Piece {
                after: end,
                range: body.len()..body.len(),
            });
        }
        TimedBody {
            raw,
            framed,
            end,
            event_stream: is_event_stream(&resp.headers),
        }
    });
    finish(resp, headers, body, must_close, route, timed)
}

/// Whether `headers` announce a Server-Sent Events stream.
fn is_event_stream(headers: &[Header]) -> bool {
    headers.header("content-type").is_some_and(|v| {
        v.split(|&b| b == b';')
            .next()
            .is_some_and(|t| t.trim_ascii().eq_ignore_ascii_case(b"text/event-stream"))
    })
}

/// The heads for `headers` and the finished [`Rendered`].
fn finish(
    resp: &Response,
    headers: Vec<Header>,
    body: BytesMut,
    must_close: bool,
    route: String,
    timed: Option<TimedBody>,
) -> Rendered {
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
        raw_body: resp.body.data.clone(),
        content_type: content_type(&resp.headers),
        must_close,
        route,
        timed: timed.map(Box::new),
    }
}

fn content_type(headers: &[Header]) -> Option<Vec<u8>> {
    headers
        .iter()
        .find(|h| h.name.eq_ignore_ascii_case("content-type"))
        .map(|h| h.value.to_vec())
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

    fn streamed(content_type: &str, framing: Header) -> (Response, Timings) {
        let mut body = Body::full(&b"data: 0\n\ndata: 1\n\n"[..]);
        body.chunks = vec![
            crate::model::BodyChunk {
                offset_ns: 5_000_000,
                len: 9,
            },
            crate::model::BodyChunk {
                offset_ns: 205_000_000,
                len: 9,
            },
        ];
        let resp = Response {
            status: 200,
            reason: "OK".into(),
            version: "HTTP/1.1".into(),
            headers: vec![Header::new("Content-Type", content_type), framing],
            body,
            trailers: vec![],
        };
        let timings = Timings {
            response_first_byte_ns: Some(5_000_000),
            response_end_ns: Some(305_000_000),
            ..Timings::default()
        };
        (resp, timings)
    }

    #[test]
    fn a_chunked_stream_is_rechunked_at_its_recorded_boundaries() {
        use std::time::Duration;
        let (resp, timings) = streamed(
            "text/event-stream; charset=utf-8",
            Header::new("Transfer-Encoding", "chunked"),
        );
        let r = render_response("GET", &resp, &timings, "/".into());
        assert_eq!(
            &r.body[..],
            b"9\r\ndata: 0\n\n\r\n9\r\ndata: 1\n\n\r\n0\r\n\r\n"
        );
        let t = r.timed.expect("a timed body");
        assert!(t.event_stream);
        let framed: Vec<(Duration, &[u8])> = t
            .framed
            .iter()
            .map(|p| (p.after, &r.body[p.range.clone()]))
            .collect();
        assert_eq!(
            framed,
            vec![
                (Duration::ZERO, &b"9\r\ndata: 0\n\n\r\n"[..]),
                (Duration::from_millis(200), &b"9\r\ndata: 1\n\n\r\n"[..]),
                // The end of the stream, when the recorded one ended.
                (Duration::from_millis(300), &b"0\r\n\r\n"[..]),
            ]
        );
        assert_eq!(t.raw[1].range, 9..18);

        // A Content-Length body keeps its bytes and is cut at the same places.
        let (resp, timings) = streamed(
            "application/octet-stream",
            Header::new("Content-Length", "18"),
        );
        let r = render_response("GET", &resp, &timings, "/".into());
        assert_eq!(&r.body[..], &resp.body.data[..]);
        let t = r.timed.expect("a timed body");
        assert!(!t.event_stream);
        assert_eq!(t.framed, t.raw);
        // No table, no schedule: the fast path.
        let plain = render_response(
            "GET",
            &Response {
                body: Body::full(&b"x"[..]),
                ..resp
            },
            &timings,
            "/".into(),
        );
        assert!(plain.timed.is_none());
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
        let r = render_response("GET", &resp, &Timings::default(), "/".into());
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
