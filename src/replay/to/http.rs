//! HTTP/2 and gRPC to the target over hyper's client connections: one HTTP/2 connection per
//! recorded one, and gRPC requests whose client messages are streamed at their recorded
//! offsets while the target's messages are read. (HTTP/1.1 is `lean_h1`'s.)

use std::convert::Infallible;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::wire::{self, BoxIo};
use super::TargetConfig;
use crate::decode::grpc;
use crate::model::{
    Body, Direction, ErrorKind, Exchange, ExchangeError, MessageKind, Protocol, Response,
    StreamMessage,
};

type ReqBody = BoxBody<Bytes, Infallible>;

/// An HTTP/2 connection to the target.
pub(super) struct H2(http2::SendRequest<ReqBody>);

/// Sends one HTTP/2 request (a gRPC call with each recorded client message) on `conn`,
/// opening it first if needed, and reads the whole answer.
pub(super) async fn send_h2(
    conn: &mut Option<H2>,
    outgoing: &Exchange,
    cfg: &TargetConfig,
) -> Result<Exchange, ExchangeError> {
    let began = Instant::now();
    let usable = match conn.as_mut() {
        Some(H2(s)) => !s.is_closed() && s.ready().await.is_ok(),
        None => false,
    };
    if !usable {
        *conn = Some(open_h2(cfg).await?);
    }
    let sender = conn.as_mut().map(|c| &mut c.0).ok_or_else(no_connection)?;
    let grpc = outgoing.protocol() == Protocol::Grpc;
    let (body, sent) = if grpc {
        let (body, sent) = grpc_body(outgoing, cfg);
        (body, Some(sent))
    } else {
        (Full::new(outgoing.request.body.data.clone()).boxed(), None)
    };
    let req = build(cfg, outgoing, body)?;
    let result = answer(sender.send_request(req), outgoing, cfg, began, grpc).await;
    let mut observed = match result {
        Ok(o) => o,
        Err(e) => {
            *conn = None;
            return Err(e);
        }
    };
    if let Some(sent) = sent {
        // The client's messages (as sent, with when) and the target's, in time order.
        if let Ok(mut client) = sent.await {
            client.append(&mut observed.messages);
            client.sort_by_key(|m| m.offset_ns);
            observed.messages = client;
        }
    }
    Ok(observed)
}

/// Never returned: the connection was opened just before it is asked for.
fn no_connection() -> ExchangeError {
    ExchangeError::new(ErrorKind::Other, "no connection to the target")
}

async fn open_h2(cfg: &TargetConfig) -> Result<H2, ExchangeError> {
    let (io, picked_h2): (BoxIo, bool) = wire::connect(cfg, true).await?;
    if cfg.tls.enabled && !picked_h2 {
        return Err(ExchangeError::new(
            ErrorKind::UpstreamTls,
            "the target did not accept HTTP/2 in the TLS handshake (ALPN)",
        ));
    }
    let handshake = http2::Builder::new(TokioExecutor::new()).handshake(TokioIo::new(io));
    let (sender, connection) = tokio::time::timeout(cfg.timeout, handshake)
        .await
        .map_err(|_| wire::timed_out("HTTP/2 settings", cfg.timeout))?
        .map_err(|e| wire::classify(&e))?;
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(H2(sender))
}

/// The request to send: method, absolute URI (the authority is HTTP/2's `:authority`),
/// headers.
fn build(
    cfg: &TargetConfig,
    outgoing: &Exchange,
    body: ReqBody,
) -> Result<http::Request<ReqBody>, ExchangeError> {
    let path = wire::path_and_query(cfg, outgoing);
    let authority = wire::authority(cfg);
    let scheme = if cfg.tls.enabled { "https" } else { "http" };
    let mut builder = http::Request::builder()
        .method(outgoing.request.method.as_str())
        .uri(format!("{scheme}://{authority}{path}"));
    for (name, value) in wire::request_headers(cfg, outgoing) {
        builder = builder.header(name, value);
    }
    if outgoing.protocol() == Protocol::Grpc {
        // gRPC servers require it (the one `te` HTTP/2 allows); the recorded one was dropped
        // with the hop-by-hop headers.
        builder = builder.header(http::header::TE, "trailers");
    }
    builder.body(body).map_err(|e| {
        ExchangeError::new(
            ErrorKind::MalformedRequest,
            format!("the recorded request cannot be sent: {e}"),
        )
    })
}

/// The recorded client messages of a gRPC call as a request body, each sent at its recorded
/// offset (scaled by `--speed`); the body ends (half-closing the stream) after the last. The
/// task yields the messages as sent.
fn grpc_body(
    outgoing: &Exchange,
    cfg: &TargetConfig,
) -> (ReqBody, tokio::task::JoinHandle<Vec<StreamMessage>>) {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(8);
    let client: Vec<StreamMessage> = outgoing
        .messages
        .iter()
        .filter(|m| m.direction == Direction::ClientToServer)
        .cloned()
        .collect();
    let speed = cfg.speed;
    let task = tokio::spawn(async move {
        let start = tokio::time::Instant::now();
        let mut sent = Vec::with_capacity(client.len());
        for mut m in client {
            tokio::time::sleep_until(start + speed.scale(m.offset_ns as i64)).await;
            let compressed = matches!(m.kind, MessageKind::Grpc { compressed: true });
            let mut frame = BytesMut::new();
            grpc::encode(&mut frame, compressed, &m.data);
            m.offset_ns = wire::since(start.into_std());
            if tx.send(Ok(Frame::data(frame.freeze()))).await.is_err() {
                break;
            }
            sent.push(m);
        }
        sent
    });
    let stream =
        futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|f| (f, rx)) });
    (StreamBody::new(stream).boxed(), task)
}

/// Awaits the answer's head and reads its body (gRPC: its messages) and trailers, each wait
/// bounded by the timeout.
async fn answer(
    head: impl std::future::Future<Output = Result<http::Response<Incoming>, hyper::Error>>,
    outgoing: &Exchange,
    cfg: &TargetConfig,
    began: Instant,
    grpc: bool,
) -> Result<Exchange, ExchangeError> {
    let mut observed = wire::observed_base(outgoing, cfg);
    let res = tokio::time::timeout(cfg.timeout, head)
        .await
        .map_err(|_| wire::timed_out("answer", cfg.timeout))?
        .map_err(|e| wire::classify(&e))?;
    observed.timings.response_first_byte_ns = Some(wire::since(began));
    let (parts, mut body) = res.into_parts();
    let mut response = Response {
        status: parts.status.as_u16(),
        reason: parts.status.canonical_reason().unwrap_or("").into(),
        version: (match parts.version {
            http::Version::HTTP_2 => "HTTP/2",
            http::Version::HTTP_10 => "HTTP/1.0",
            _ => "HTTP/1.1",
        }
        .to_string())
        .into(),
        headers: wire::headers_of(&parts.headers),
        ..Response::default()
    };
    let mut data = BytesMut::new();
    let mut decoder = grpc.then(grpc::Decoder::new);
    loop {
        let frame = tokio::time::timeout(cfg.timeout, body.frame())
            .await
            .map_err(|_| wire::timed_out("more of the answer", cfg.timeout))?;
        let Some(frame) = frame else { break };
        let frame = frame.map_err(|e| wire::classify(&e))?;
        let frame = match frame.into_data() {
            Ok(chunk) => {
                match decoder.as_mut() {
                    Some(d) => {
                        d.feed(&chunk).map_err(|e| bad_grpc(&e))?;
                        while let Some(m) = d.poll() {
                            observed.messages.push(StreamMessage {
                                direction: Direction::ServerToClient,
                                offset_ns: wire::since(began),
                                kind: MessageKind::Grpc {
                                    compressed: m.compressed,
                                },
                                data: m.data,
                            });
                        }
                    }
                    None => data.extend_from_slice(&chunk),
                }
                continue;
            }
            Err(frame) => frame,
        };
        if let Ok(trailers) = frame.into_trailers() {
            response.trailers = wire::headers_of(&trailers);
        }
    }
    if let Some(d) = &decoder {
        d.finish().map_err(|e| bad_grpc(&e))?;
    }
    response.body = Body::full(data.freeze());
    observed.timings.response_end_ns = Some(wire::since(began));
    observed.response = Some(response);
    Ok(observed)
}

fn bad_grpc(e: &grpc::Error) -> ExchangeError {
    ExchangeError::new(
        ErrorKind::MalformedResponse,
        format!("the target's gRPC messages are not well framed: {e}"),
    )
}
