//! Streaming one HTTP/1 message each way: decode what arrives, re-encode it for the peer,
//! write it before reading more, and show the body to the exchange's recorder on the way.

use std::pin::Pin;
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::time::{Instant, Sleep};

use super::failure::Failure;
use crate::capture::clock::now_ns;
use crate::capture::io::write_flush;
use crate::capture::recorder::Half;
use crate::decode::h1::{self, Decoder, Event, Framing};
use crate::decode::h1_encode;
use crate::model::ErrorKind;

/// The response pump's result (the body went to the recorder).
#[derive(Default)]
pub(super) struct ResponseOutcome {
    pub head: Option<h1::ResponseHead>,
    /// When the first byte of the response arrived.
    pub first_byte_at: Option<i64>,
    pub head_sent: bool,
    pub upgraded: bool,
    /// The connection to the client must close after this response.
    pub close_client: bool,
    pub upstream_reusable: bool,
}

/// How the request pump is to behave.
pub(super) struct RequestSettings {
    pub framing: Framing,
    /// The longest wait for more of the body.
    pub stall: Duration,
}

/// Streams the request body from the client to the upstream (after the head in `out`).
pub(super) async fn pump_request<R, W>(
    client: &mut R,
    decoder: &mut Decoder,
    upstream: &mut W,
    buf: &mut [u8],
    mut out: BytesMut,
    settings: RequestSettings,
    record: &mut Half,
) -> Result<(), Failure>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let upstream_err = |e: std::io::Error| {
        Failure::upstream(
            502,
            ErrorKind::UpstreamReset,
            format!("upstream closed the connection while receiving the request: {e}"),
        )
    };
    let RequestSettings { framing, stall } = settings;
    if let Framing::Length(n) = framing {
        record.expect(n);
    }
    let mut at = now_ns();
    let mut saw_trailers = false;
    loop {
        loop {
            match decoder.poll() {
                Ok(Some(Event::Data(data))) => {
                    record.data(at, &data);
                    match framing {
                        Framing::Chunked => h1_encode::chunk(&mut out, &data),
                        _ => out.extend_from_slice(&data),
                    }
                }
                Ok(Some(Event::Trailers(t))) => {
                    h1_encode::last_chunk(&mut out, &t);
                    saw_trailers = !t.is_empty();
                    record.trailers(t);
                }
                Ok(Some(Event::End)) => {
                    if matches!(framing, Framing::Chunked) && !saw_trailers {
                        h1_encode::last_chunk(&mut out, &[]);
                    }
                    record.end(now_ns());
                    write_flush(upstream, &out).await.map_err(upstream_err)?;
                    return Ok(());
                }
                Ok(Some(_)) => {}
                Ok(None) => break,
                Err(e) => return Err(Failure::Client(format!("malformed request body: {e}"))),
            }
        }
        if !out.is_empty() {
            write_flush(upstream, &out).await.map_err(upstream_err)?;
            out.clear();
        }
        // A client that stops sending its body would hold the connection and the
        // upstream's forever: the idle timeout applies between reads of a body too.
        let n = match tokio::time::timeout(stall, client.read(buf)).await {
            Ok(r) => r.map_err(|e| Failure::Client(format!("client read failed: {e}")))?,
            Err(_) => {
                return Err(Failure::ClientStalled(format!(
                    "client sent nothing more of the request body for {stall:?}"
                )))
            }
        };
        if n == 0 {
            return Err(Failure::Client(
                "client closed the connection in the middle of the request body".into(),
            ));
        }
        at = now_ns();
        decoder.feed(&buf[..n]);
    }
}

/// How the response pump is to behave.
pub(super) struct ResponseSettings<'a> {
    pub method: &'a str,
    pub client_close: bool,
    pub response_timeout: Duration,
}

/// Room for a response head and a small body: written out in one allocation.
const RESPONSE_OUT: usize = 4096;

/// Streams the upstream's response to the client; `timer` (the connection's) keeps the
/// response timeout.
#[allow(clippy::too_many_arguments)]
pub(super) async fn pump_response<R, W>(
    upstream: &mut R,
    decoder: &mut Decoder,
    buf: &mut [u8],
    client: &mut W,
    settings: ResponseSettings<'_>,
    record: &mut Half,
    outcome: &mut ResponseOutcome,
    mut timer: Pin<&mut Sleep>,
) -> Result<(), Failure>
where
    R: AsyncRead + Unpin + ?Sized,
    W: AsyncWrite + Unpin + ?Sized,
{
    let ResponseSettings {
        method,
        client_close,
        response_timeout,
    } = settings;
    let mut out = BytesMut::with_capacity(RESPONSE_OUT);
    let mut framing = Framing::Empty;
    let mut saw_trailers = false;
    let mut at = now_ns();
    let client_err =
        |e: std::io::Error| Failure::Client(format!("client stopped reading the response: {e}"));
    loop {
        loop {
            let event = match decoder.poll() {
                Ok(ev) => ev,
                Err(e) => {
                    return Err(Failure::upstream(
                        502,
                        ErrorKind::MalformedResponse,
                        format!("upstream sent a malformed response: {e}"),
                    ))
                }
            };
            match event {
                Some(Event::ResponseHead(head)) => {
                    let interim = (100..200).contains(&head.status) && head.status != 101;
                    if interim {
                        // 100 Continue and friends go straight to the client; the final
                        // response follows on the same request.
                        let fields = h1::client_response_fields(head.status, &head.headers, false);
                        h1_encode::response_head_fields(
                            &mut out,
                            head.status,
                            &head.reason,
                            fields,
                        );
                        continue;
                    }
                    framing = head.framing;
                    if let Framing::Length(n) = framing {
                        record.expect(n);
                    }
                    let close = client_close
                        || matches!(framing, Framing::UntilClose)
                        || (head.minor == 0
                            && !method.eq_ignore_ascii_case("HEAD")
                            && framing == Framing::UntilClose);
                    outcome.close_client = close;
                    outcome.upstream_reusable = !h1::wants_close(head.minor, &head.headers)
                        && !matches!(framing, Framing::UntilClose);
                    let fields = h1::client_response_fields(head.status, &head.headers, close);
                    h1_encode::response_head_fields(&mut out, head.status, &head.reason, fields);
                    outcome.head_sent = true;
                    outcome.head = Some(head);
                }
                Some(Event::Data(data)) => {
                    record.data(at, &data);
                    match framing {
                        Framing::Chunked => h1_encode::chunk(&mut out, &data),
                        _ => out.extend_from_slice(&data),
                    }
                }
                Some(Event::Trailers(t)) => {
                    h1_encode::last_chunk(&mut out, &t);
                    saw_trailers = !t.is_empty();
                    record.trailers(t);
                }
                Some(Event::End) => {
                    if outcome.head.is_none() {
                        // End of an interim response.
                        continue;
                    }
                    if matches!(framing, Framing::Chunked) && !saw_trailers {
                        h1_encode::last_chunk(&mut out, &[]);
                    }
                    record.end(now_ns());
                    write_flush(client, &out).await.map_err(client_err)?;
                    // A 101 ends its (empty) message and then reports the upgrade: without
                    // this the head would be written twice, corrupting the new protocol.
                    out.clear();
                    if outcome.close_client {
                        let _ = client.shutdown().await;
                    }
                    if !decoder.is_upgraded() {
                        return Ok(());
                    }
                }
                Some(Event::Upgraded) => {
                    outcome.upgraded = true;
                    outcome.upstream_reusable = false;
                    write_flush(client, &out).await.map_err(client_err)?;
                    return Ok(());
                }
                Some(Event::RequestHead(_)) => {}
                None => break,
            }
        }
        if !out.is_empty() {
            write_flush(client, &out).await.map_err(client_err)?;
            out.clear();
        }
        // The same limit before the head and between reads of the body (nginx's
        // `proxy_read_timeout` works this way): an upstream that stalls mid-body is cut and
        // the exchange recorded with what arrived and an `upstream_timeout` error.
        timer.as_mut().reset(Instant::now() + response_timeout);
        let read = tokio::select! {
            biased;
            r = upstream.read(buf) => Some(r),
            () = timer.as_mut() => None,
        };
        let n = match read {
            Some(r) => r,
            None => {
                let message = if outcome.head.is_none() {
                    format!("upstream sent no response within {response_timeout:?}")
                } else {
                    format!("upstream stalled in the middle of the response body for {response_timeout:?}")
                };
                return Err(Failure::upstream(504, ErrorKind::UpstreamTimeout, message));
            }
        };
        let n = n.map_err(|e| {
            Failure::upstream(
                502,
                ErrorKind::UpstreamReset,
                format!("upstream connection failed: {e}"),
            )
        })?;
        at = now_ns();
        if outcome.first_byte_at.is_none() && n > 0 {
            outcome.first_byte_at = Some(at);
        }
        if n == 0 {
            match decoder.finish() {
                Ok(Some(ev)) => {
                    // Close-delimited body: the close is the end. Re-run the event loop with it.
                    if let Event::Data(d) = &ev {
                        record.data(at, d);
                        write_flush(client, d).await.map_err(client_err)?;
                        continue;
                    }
                    record.end(at);
                    let _ = client.shutdown().await;
                    outcome.close_client = true;
                    return Ok(());
                }
                _ => {
                    let message = if outcome.head.is_some() {
                        "upstream closed the connection in the middle of the response body"
                    } else {
                        "upstream closed the connection without answering"
                    };
                    return Err(Failure::upstream(502, ErrorKind::UpstreamReset, message));
                }
            }
        }
        decoder.feed(&buf[..n]);
    }
}
