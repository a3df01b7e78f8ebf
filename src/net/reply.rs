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
}
