//! WebSocket relaying for the recording proxy: after a 101, bytes pass through unchanged in
//! both directions while a [`ws::Decoder`] per direction turns them into recorded frames.
//!
//! Relaying never waits on decoding: each read is written to the other side first and then
//! fed to the decoder, so a frame the decoder cannot parse (over its size limit, say) still
//! reaches its peer; only the recording of that direction stops, with the reason noted.

use std::time::Instant;

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::decode::ws;
use crate::model::{Direction, MessageKind, StreamMessage};

const READ_BUF: usize = 64 * 1024;

/// What one relayed WebSocket session produced for the recording.
#[derive(Debug, Default)]
pub struct Relayed {
    /// Frames of both directions in time order.
    pub messages: Vec<StreamMessage>,
    /// Why recording stopped early or the session broke, if it did.
    pub error: Option<String>,
    /// Frames dropped from the record because the `max_body` budget was spent.
    pub dropped: u64,
}

struct Side {
    direction: Direction,
    decoder: ws::Decoder,
    messages: Vec<StreamMessage>,
    error: Option<String>,
    kept: usize,
    dropped: u64,
}

impl Side {
    fn new(direction: Direction, max_frame: usize) -> Self {
        Side {
            direction,
            decoder: ws::Decoder::new().with_max_frame(max_frame),
            messages: Vec::new(),
            error: None,
            kept: 0,
            dropped: 0,
        }
    }

    fn observe(&mut self, bytes: &[u8], started: Instant, budget: usize) {
        if self.error.is_some() {
            return;
        }
        if let Err(e) = self.decoder.feed(bytes) {
            let who = match self.direction {
                Direction::ClientToServer => "client",
                Direction::ServerToClient => "server",
            };
            self.error = Some(format!("{who} frames no longer recorded: {e}"));
        }
        let offset_ns = started.elapsed().as_nanos() as u64;
        while let Some(f) = self.decoder.poll() {
            // The budget bounds memory for long sessions; control frames are tiny and carry
            // the close code, so they are always kept.
            if !f.is_control() && self.kept + f.payload.len() > budget {
                self.dropped += 1;
                continue;
            }
            self.kept += f.payload.len();
            self.messages.push(StreamMessage {
                direction: self.direction,
                offset_ns,
                kind: MessageKind::WebSocket {
                    opcode: f.opcode,
                    fin: f.fin,
                },
                data: f.payload,
            });
        }
    }
}

async fn pump<R, W>(
    reader: &mut R,
    writer: &mut W,
    early: Bytes,
    side: &mut Side,
    started: Instant,
    budget: usize,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if !early.is_empty() {
        writer.write_all(&early).await?;
        side.observe(&early, started, budget);
    }
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return writer.shutdown().await;
        }
        writer.write_all(&buf[..n]).await?;
        side.observe(&buf[..n], started, budget);
    }
}

/// Relays a WebSocket session until both directions end, decoding frames on the way.
///
/// `client_early`/`upstream_early` are bytes that arrived together with the handshake.
/// `budget` bounds the payload bytes kept per direction; `max_frame` the size of one frame the
/// decoder will assemble.
#[allow(clippy::too_many_arguments)]
pub async fn relay<CR, CW, UR, UW>(
    client_r: &mut CR,
    client_w: &mut CW,
    up_r: &mut UR,
    up_w: &mut UW,
    client_early: Bytes,
    upstream_early: Bytes,
    started: Instant,
    budget: usize,
) -> Relayed
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    let max_frame = budget.max(ws::DEFAULT_MAX_FRAME);
    let mut from_client = Side::new(Direction::ClientToServer, max_frame);
    let mut from_server = Side::new(Direction::ServerToClient, max_frame);
    let mut client_closed_first = false;
    let (a, b) = {
        let up = pump(
            client_r,
            up_w,
            client_early,
            &mut from_client,
            started,
            budget,
        );
        let down = pump(
            up_r,
            client_w,
            upstream_early,
            &mut from_server,
            started,
            budget,
        );
        tokio::pin!(up, down);
        // A clean end of one direction is a half-close: the other may still talk. A failed
        // direction (reset) ends the session, or the other side could wait forever.
        tokio::select! {
            a = &mut up => match a {
                Ok(()) => { client_closed_first = true; (Ok(()), down.await) }
                Err(e) => (Err(e), Ok(())),
            },
            b = &mut down => match b {
                Ok(()) => (up.await, Ok(())),
                Err(e) => (Ok(()), Err(e)),
            },
        }
    };
    let mut out = Relayed::default();
    let io_error = match (a, b) {
        (Err(e), _) => Some(format!("client side of the websocket failed: {e}")),
        (_, Err(e)) => Some(format!("upstream side of the websocket failed: {e}")),
        _ => None,
    };
    out.error = from_client
        .error
        .take()
        .or(from_server.error.take())
        .or(io_error);
    let closed = |side: &Side| {
        side.messages.iter().any(|m| {
            matches!(
                m.kind,
                MessageKind::WebSocket {
                    opcode: ws::opcode::CLOSE,
                    ..
                }
            )
        })
    };
    if out.error.is_none() && !closed(&from_client) && !closed(&from_server) {
        // RFC 6455 §7.1.5: closed with no close frame is an abnormal closure (1006).
        let who = if client_closed_first {
            "client"
        } else {
            "upstream"
        };
        out.error = Some(format!(
            "the {who} closed the connection without a websocket close frame (1006)"
        ));
    }
    out.dropped = from_client.dropped + from_server.dropped;
    let mut messages = from_client.messages;
    messages.append(&mut from_server.messages);
    // Stable: frames of one direction keep their order when offsets tie.
    messages.sort_by_key(|m| m.offset_ns);
    out.messages = messages;
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use tokio::io::duplex;

    #[tokio::test]
    async fn relays_bytes_unchanged_and_records_frames() {
        let (mut client, proxy_client) = duplex(1 << 16);
        let (proxy_up, mut upstream) = duplex(1 << 16);
        let (mut cr, mut cw) = tokio::io::split(proxy_client);
        let (mut ur, mut uw) = tokio::io::split(proxy_up);
        let relay = tokio::spawn(async move {
            relay(
                &mut cr,
                &mut cw,
                &mut ur,
                &mut uw,
                Bytes::new(),
                Bytes::new(),
                Instant::now(),
                1 << 20,
            )
            .await
        });
        let mut wire = BytesMut::new();
        ws::encode(
            &mut wire,
            false,
            ws::opcode::TEXT,
            b"hel",
            Some([1, 2, 3, 4]),
        );
        ws::encode(
            &mut wire,
            true,
            ws::opcode::CONTINUATION,
            b"lo",
            Some([5, 6, 7, 8]),
        );
        client.write_all(&wire).await.unwrap();
        let mut got = vec![0u8; wire.len()];
        upstream.read_exact(&mut got).await.unwrap();
        assert_eq!(got, wire.to_vec(), "masked bytes pass through untouched");
        let mut back = BytesMut::new();
        ws::encode(
            &mut back,
            true,
            ws::opcode::CLOSE,
            &ws::close_payload(1011, "bye"),
            None,
        );
        upstream.write_all(&back).await.unwrap();
        drop(upstream);
        let mut echoed = Vec::new();
        client.read_to_end(&mut echoed).await.unwrap();
        assert_eq!(echoed, back.to_vec());
        drop(client);
        let r = relay.await.unwrap();
        assert_eq!(r.messages.len(), 3);
        assert_eq!(&r.messages[0].data[..], b"hel");
        assert_eq!(
            r.messages[1].kind,
            MessageKind::WebSocket {
                opcode: 0,
                fin: true
            }
        );
        assert_eq!(r.messages[2].direction, Direction::ServerToClient);
        assert_eq!(
            ws::close_code_reason(&r.messages[2].data),
            Some((1011, "bye".into()))
        );
    }
}
