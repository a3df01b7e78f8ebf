//! WebSocket sessions to the target: the recorded handshake with a fresh key (and no
//! permessage-deflate, so that frames go and come as the recording stores them: inflated),
//! then the recorded frames in recorded order — each client frame sent masked at its scaled
//! offset, each recorded server frame waited for — until the recorded count, a close, or the
//! timeout ends the collection.

use std::time::Instant;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::wire::{self, BoxIo};
use super::TargetConfig;
use crate::decode::ws::{self, opcode};
use crate::model::{
    Body, Direction, ErrorKind, Exchange, ExchangeError, Header, HeaderList, MessageKind, Response,
    StreamMessage,
};

/// A handshake answer's head larger than this is not an answer.
const MAX_HEAD: usize = 64 * 1024;

/// Headers of the recorded handshake that belong to the recorded session, not this one.
const SESSION_HEADERS: [&str; 2] = ["sec-websocket-key", "sec-websocket-extensions"];

/// Replays one WebSocket session and returns it as observed: the handshake answer and every
/// frame both sides sent.
pub(super) async fn session(
    outgoing: &Exchange,
    cfg: &TargetConfig,
) -> Result<Exchange, ExchangeError> {
    let began = Instant::now();
    let mut observed = wire::observed_base(outgoing, cfg);
    let (mut io, _) = wire::connect(cfg, false).await?;
    let key = base64_key();
    io.write_all(&handshake(cfg, outgoing, &key))
        .await
        .map_err(|e| reset(&e))?;
    let mut buf = BytesMut::with_capacity(4096);
    let response = read_head(&mut io, &mut buf, cfg).await?;
    observed.timings.response_first_byte_ns = Some(wire::since(began));
    let upgraded = response.status == 101;
    if upgraded {
        let accept = response.headers.header_str("sec-websocket-accept");
        if accept.as_deref() != Some(ws::accept_key(key.as_bytes()).as_str()) {
            return Err(ExchangeError::new(
                ErrorKind::MalformedResponse,
                "the target's Sec-WebSocket-Accept does not answer the key sent",
            ));
        }
    }
    observed.response = Some(response);
    if upgraded {
        let mut frames = Frames {
            decoder: ws::Decoder::new(),
            buf,
            ended: false,
        };
        frames.feed_buffered()?;
        exchange_frames(&mut io, &mut frames, outgoing, cfg, began, &mut observed).await?;
    }
    observed.timings.response_end_ns = Some(wire::since(began));
    Ok(observed)
}

/// The recorded frames in order: client ones sent, server ones awaited (and kept as the
/// target sent them, which may be more or fewer).
async fn exchange_frames(
    io: &mut BoxIo,
    frames: &mut Frames,
    outgoing: &Exchange,
    cfg: &TargetConfig,
    began: Instant,
    observed: &mut Exchange,
) -> Result<(), ExchangeError> {
    let start = tokio::time::Instant::now();
    for m in &outgoing.messages {
        let MessageKind::WebSocket {
            opcode: op, fin, ..
        } = m.kind
        else {
            continue;
        };
        match m.direction {
            Direction::ClientToServer => {
                tokio::time::sleep_until(start + cfg.speed.scale(m.offset_ns as i64)).await;
                let mut out = BytesMut::new();
                ws::encode(&mut out, fin, op, &m.data, Some(rand::random()));
                if io.write_all(&out).await.is_err() {
                    // The target went away: what it sent so far is the session.
                    break;
                }
                observed.messages.push(StreamMessage {
                    offset_ns: wire::since(began),
                    kind: MessageKind::WebSocket {
                        opcode: op,
                        fin,
                        compressed: false,
                    },
                    ..m.clone()
                });
            }
            Direction::ServerToClient => {
                if let Some(f) = frames.next(io, cfg).await? {
                    observed.messages.push(server_message(f, began));
                }
            }
        }
    }
    Ok(())
}

fn server_message(f: ws::Frame, began: Instant) -> StreamMessage {
    StreamMessage {
        direction: Direction::ServerToClient,
        offset_ns: wire::since(began),
        kind: MessageKind::WebSocket {
            opcode: f.opcode,
            fin: f.fin,
            compressed: false,
        },
        data: f.payload,
    }
}

/// The target's frames, read as they are awaited.
struct Frames {
    decoder: ws::Decoder,
    buf: BytesMut,
    /// The target closed (a close frame or the connection) or stopped sending in time.
    ended: bool,
}

impl Frames {
    fn feed_buffered(&mut self) -> Result<(), ExchangeError> {
        if !self.buf.is_empty() {
            self.decoder.feed(&self.buf).map_err(|e| bad_frame(&e))?;
            self.buf.clear();
        }
        Ok(())
    }

    /// The next frame, or `None` once the target closed or kept silent past the timeout.
    async fn next(
        &mut self,
        io: &mut BoxIo,
        cfg: &TargetConfig,
    ) -> Result<Option<ws::Frame>, ExchangeError> {
        loop {
            if let Some(f) = self.decoder.poll() {
                if f.opcode == opcode::CLOSE {
                    self.ended = true;
                }
                return Ok(Some(f));
            }
            if self.ended {
                return Ok(None);
            }
            self.buf.reserve(16 * 1024);
            match tokio::time::timeout(cfg.timeout, io.read_buf(&mut self.buf)).await {
                Ok(Ok(n)) if n > 0 => self.feed_buffered()?,
                // Closed, reset or silent: the collection ends, the session is what came.
                _ => self.ended = true,
            }
        }
    }
}

/// The handshake request: the recorded one with a fresh key and no extensions.
fn handshake(cfg: &TargetConfig, outgoing: &Exchange, key: &str) -> Vec<u8> {
    let mut head = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\n",
        wire::path_and_query(cfg, outgoing),
        wire::authority(cfg)
    )
    .into_bytes();
    for (name, value) in wire::request_headers(cfg, outgoing) {
        if SESSION_HEADERS.iter().any(|n| name.eq_ignore_ascii_case(n)) {
            continue;
        }
        head.extend_from_slice(name.as_bytes());
        head.extend_from_slice(b": ");
        head.extend_from_slice(&value);
        head.extend_from_slice(b"\r\n");
    }
    if outgoing
        .request
        .headers
        .header("sec-websocket-version")
        .is_none()
    {
        head.extend_from_slice(b"Sec-WebSocket-Version: 13\r\n");
    }
    head.extend_from_slice(b"\r\n");
    head
}

/// Reads the handshake answer's head; bytes after it stay in `buf` (the first frames).
async fn read_head(
    io: &mut BoxIo,
    buf: &mut BytesMut,
    cfg: &TargetConfig,
) -> Result<Response, ExchangeError> {
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 64];
        let mut res = httparse::Response::new(&mut headers);
        match res.parse(buf) {
            Ok(httparse::Status::Complete(len)) => {
                let status = res.code.unwrap_or(0);
                let response = Response {
                    status,
                    reason: res.reason.unwrap_or("").into(),
                    version: "HTTP/1.1".into(),
                    headers: res
                        .headers
                        .iter()
                        .map(|h| Header::new(h.name, h.value))
                        .collect(),
                    body: Body::default(),
                    trailers: Vec::new(),
                };
                let _ = buf.split_to(len);
                return Ok(response);
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => {
                return Err(ExchangeError::new(
                    ErrorKind::MalformedResponse,
                    "the target's handshake answer has no end of head within 64 KiB",
                ))
            }
            Err(e) => {
                return Err(ExchangeError::new(
                    ErrorKind::MalformedResponse,
                    format!("the target's handshake answer is not HTTP: {e}"),
                ))
            }
        }
        buf.reserve(4096);
        match tokio::time::timeout(cfg.timeout, io.read_buf(buf)).await {
            Err(_) => return Err(wire::timed_out("handshake answer", cfg.timeout)),
            Ok(Err(e)) => return Err(reset(&e)),
            Ok(Ok(0)) => {
                return Err(ExchangeError::new(
                    ErrorKind::UpstreamReset,
                    "the target closed the connection before answering the handshake",
                ))
            }
            Ok(Ok(_)) => {}
        }
    }
}

/// A fresh `Sec-WebSocket-Key`: 16 random bytes in base64 (RFC 6455 §4.1).
fn base64_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(rand::random::<[u8; 16]>())
}

fn reset(e: &std::io::Error) -> ExchangeError {
    ExchangeError::new(
        ErrorKind::UpstreamReset,
        format!("the connection to the target failed: {e}"),
    )
}

fn bad_frame(e: &ws::Error) -> ExchangeError {
    ExchangeError::new(
        ErrorKind::MalformedResponse,
        format!("the target sent a bad WebSocket frame: {e}"),
    )
}
