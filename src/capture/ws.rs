//! WebSocket relaying for the recording proxy: after a 101, bytes pass through unchanged in
//! both directions while a [`ws::Decoder`] per direction turns them into recorded frames.
//!
//! Relaying never waits on decoding: each read is written to the other side first and then
//! fed to the decoder, so a frame the decoder cannot parse (over its size limit, say) still
//! reaches its peer; only the recording of that direction stops, with the reason noted.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::clock::now_ns;
use super::io::READ_BUF;
use super::recorder::{Half, Recorder};
use crate::decode::ws;
use crate::model::{Direction, ErrorKind, ExchangeError, MessageKind};

/// One direction of the relay: its frame decoder, feeding that direction's recorder half.
struct Side<'a> {
    direction: Direction,
    decoder: ws::Decoder,
    record: &'a mut Half,
    broken: bool,
}

impl<'a> Side<'a> {
    fn new(direction: Direction, max_frame: usize, record: &'a mut Half) -> Self {
        Side {
            direction,
            decoder: ws::Decoder::new().with_max_frame(max_frame),
            record,
            broken: false,
        }
    }

    fn observe(&mut self, bytes: &[u8]) {
        if self.broken {
            return;
        }
        if let Err(e) = self.decoder.feed(bytes) {
            let who = match self.direction {
                Direction::ClientToServer => "client",
                Direction::ServerToClient => "server",
            };
            self.broken = true;
            self.record.fail(ExchangeError::new(
                ErrorKind::StreamError,
                format!("{who} frames no longer recorded: {e}"),
            ));
        }
        let at = now_ns();
        while let Some(f) = self.decoder.poll() {
            self.record.message(
                at,
                MessageKind::WebSocket {
                    opcode: f.opcode,
                    fin: f.fin,
                },
                f.payload,
            );
        }
    }
}

async fn pump<R, W>(
    reader: &mut R,
    writer: &mut W,
    early: Bytes,
    side: &mut Side<'_>,
) -> std::io::Result<()>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    if !early.is_empty() {
        writer.write_all(&early).await?;
        side.observe(&early);
    }
    let mut buf = vec![0u8; READ_BUF];
    loop {
        let n = reader.read(&mut buf).await?;
        if n == 0 {
            return writer.shutdown().await;
        }
        writer.write_all(&buf[..n]).await?;
        side.observe(&buf[..n]);
    }
}

/// Relays a WebSocket session until both directions end, showing each direction's frames to
/// `rec`, whose budget bounds what is kept. Returns why the session ended abnormally, if it
/// did (the reason is also recorded).
///
/// `client_early`/`upstream_early` are bytes that arrived together with the handshake.
pub(crate) async fn relay<CR, CW, UR, UW>(
    client_r: &mut CR,
    client_w: &mut CW,
    up_r: &mut UR,
    up_w: &mut UW,
    client_early: Bytes,
    upstream_early: Bytes,
    rec: &mut Recorder,
) -> Option<String>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    let max_frame = rec.ws_max_frame();
    let (up_half, down_half) = rec.halves();
    let mut from_client = Side::new(Direction::ClientToServer, max_frame, up_half);
    let mut from_server = Side::new(Direction::ServerToClient, max_frame, down_half);
    let mut client_closed_first = false;
    let (a, b) = {
        let up = pump(client_r, up_w, client_early, &mut from_client);
        let down = pump(up_r, client_w, upstream_early, &mut from_server);
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
    let broken = from_client.broken || from_server.broken;
    let closed = from_client.record.saw_ws_close() || from_server.record.saw_ws_close();
    let message = match (a, b) {
        (Err(e), _) => Some(format!("client side of the websocket failed: {e}")),
        (_, Err(e)) => Some(format!("upstream side of the websocket failed: {e}")),
        _ if broken || closed => None,
        // RFC 6455 §7.1.5: closed with no close frame is an abnormal closure (1006).
        _ => Some(format!(
            "the {} closed the connection without a websocket close frame (1006)",
            if client_closed_first {
                "client"
            } else {
                "upstream"
            }
        )),
    };
    if let Some(m) = &message {
        rec.fail(ExchangeError::new(ErrorKind::StreamError, m.clone()));
    }
    message.or_else(|| broken.then(|| "websocket frames no longer recorded".to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::recorder::Limits;
    use bytes::BytesMut;
    use tokio::io::duplex;

    #[tokio::test]
    async fn relays_bytes_unchanged_and_records_frames() {
        let (mut client, proxy_client) = duplex(1 << 16);
        let (proxy_up, mut upstream) = duplex(1 << 16);
        let (mut cr, mut cw) = tokio::io::split(proxy_client);
        let (mut ur, mut uw) = tokio::io::split(proxy_up);
        let relay = tokio::spawn(async move {
            let mut rec = Recorder::new(0, Limits { max_body: 1 << 20 });
            relay(
                &mut cr,
                &mut cw,
                &mut ur,
                &mut uw,
                Bytes::new(),
                Bytes::new(),
                &mut rec,
            )
            .await;
            rec.finish()
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
