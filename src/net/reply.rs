//! The plain-text HTTP/1 answers a server writes when it cannot do what was asked (a bad
//! request, a body too large, a tunnel it cannot intercept), and the answer that opens a
//! CONNECT tunnel: one place, one format.

use tokio::io::{AsyncWrite, AsyncWriteExt};

/// The answer to a `CONNECT` that opens a tunnel (intercepted or relayed untouched).
pub const CONNECT_ESTABLISHED: &[u8] = b"HTTP/1.1 200 Connection Established\r\n\r\n";

/// A complete `Connection: close` answer with a plain-text body. The reason phrase is the
/// standard one for `status`.
pub fn simple_response(status: u16, body: &str) -> Vec<u8> {
    let reason = crate::vocab::reason_phrase(status);
    let mut out = Vec::with_capacity(128 + body.len());
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        )
        .as_bytes(),
    );
    out.extend_from_slice(body.as_bytes());
    out
}

/// [`simple_response`] as the answer to a request with `method`: to a `HEAD` the same head
/// (its `Content-Length` says how long the body would be) and no body, as RFC 9110 §9.3.2
/// requires — a client reading a body after a HEAD answer takes it for the next response.
pub fn simple_response_to(method: &str, status: u16, body: &str) -> Vec<u8> {
    let mut out = simple_response(status, body);
    if method.eq_ignore_ascii_case("HEAD") {
        out.truncate(out.len() - body.len());
    }
    out
}

/// Writes [`simple_response_to`] for `method` and closes the sending side.
///
/// # Errors
/// The client is gone.
pub async fn write_simple_to<S: AsyncWrite + Unpin>(
    stream: &mut S,
    method: &str,
    status: u16,
    body: &str,
) -> std::io::Result<()> {
    stream
        .write_all(&simple_response_to(method, status, body))
        .await?;
    stream.shutdown().await
}

/// Writes [`simple_response`] and closes the sending side.
///
/// # Errors
/// The client is gone.
pub async fn write_simple<S: AsyncWrite + Unpin>(
    stream: &mut S,
    status: u16,
    body: &str,
) -> std::io::Result<()> {
    stream.write_all(&simple_response(status, body)).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simple_answer_is_complete_and_closes() {
        let text = String::from_utf8(simple_response(413, "too big\n")).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 413 Payload Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 8\r\nConnection: close\r\n\r\ntoo big\n"
        );
    }

    #[test]
    fn a_head_answer_has_the_head_and_no_body() {
        let text = String::from_utf8(simple_response_to("HEAD", 502, "mf: down\n")).unwrap();
        assert_eq!(
            text,
            "HTTP/1.1 502 Bad Gateway\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 9\r\nConnection: close\r\n\r\n"
        );
        assert_eq!(
            simple_response_to("GET", 502, "x"),
            simple_response(502, "x")
        );
    }
}
