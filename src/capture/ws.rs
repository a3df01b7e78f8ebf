//! WebSocket relaying for the recording proxy: after a 101, bytes pass through unchanged in
//! both directions while a [`ws::Decoder`] per direction turns them into recorded frames.
//!
//! Relaying never waits on decoding: each read is written to the other side first and then
//! fed to the decoder, so a frame the decoder cannot parse (over its size limit, say) still
//! reaches its peer; only the recording of that direction stops, with the reason noted.
//!
//! When the handshake negotiated permessage-deflate (RFC 7692), the bytes still pass through
//! compressed, and the recorded frames are inflated, with the compressed flag (RSV1) kept on
//! the frame that began each compressed message. Inflating is bounded by the recording
//! budget: once a message would not fit, that direction's compressed messages are counted
//! as dropped and no longer inflated, so a long session costs no more than its record.

use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::clock::now_ns;
use super::io::READ_BUF;
use super::recorder::{Half, Recorder};
use crate::decode::ws::{self, opcode};
use crate::decode::ws_deflate::{self, Inflater};
use crate::model::{Direction, ErrorKind, ExchangeError, MessageKind};
use crate::net::metrics::WsSession;

/// Inflating state of one direction that negotiated permessage-deflate.
struct Deflate {
    inflater: Inflater,
    /// The data message in progress was sent compressed (its first frame had RSV1).
    in_compressed: bool,
    /// Inflated bytes of that message so far, against the largest message recorded.
    message_len: usize,
    /// The budget ran out: compressed messages are counted, not inflated (the inflater's
    /// history is incomplete from then on, so it cannot resume).
    stopped: bool,
}

/// One direction of the relay: its frame decoder, feeding that direction's recorder half.
struct Side<'a> {
    direction: Direction,
    decoder: ws::Decoder,
    max_frame: usize,
    deflate: Option<Deflate>,
    record: &'a mut Half,
    broken: bool,
    /// The session in the metrics, when they are kept.
    metrics: Option<&'a WsSession>,
}

impl<'a> Side<'a> {
    fn new(
        direction: Direction,
        max_frame: usize,
        deflate: bool,
        record: &'a mut Half,
        metrics: Option<&'a WsSession>,
    ) -> Self {
        Side {
            direction,
            decoder: ws::Decoder::new().with_max_frame(max_frame),
            max_frame,
            deflate: deflate.then(|| Deflate {
                inflater: Inflater::new(),
                in_compressed: false,
                message_len: 0,
                stopped: false,
            }),
            record,
            broken: false,
            metrics,
        }
    }

    fn who(&self) -> &'static str {
        match self.direction {
            Direction::ClientToServer => "client",
            Direction::ServerToClient => "server",
        }
    }

    fn stop(&mut self, reason: impl std::fmt::Display) {
        self.broken = true;
        let message = format!("{} frames no longer recorded: {reason}", self.who());
        self.record
            .fail(ExchangeError::new(ErrorKind::StreamError, message));
    }

    fn observe(&mut self, bytes: &[u8]) {
        if self.broken {
            return;
        }
        let fed = self.decoder.feed(bytes);
        let at = now_ns();
        while let Some(f) = self.decoder.poll() {
            if self.broken {
                break;
            }
            self.frame(at, f);
        }
        if let Err(e) = fed {
            self.stop(e);
        }
    }

    fn frame(&mut self, at: i64, f: ws::Frame) {
        if let Some(m) = self.metrics {
            m.frame(self.direction, f.opcode, &f.payload);
        }
        let mut compressed = false;
        let control = f.is_control();
        let ws::Frame {
            fin,
            rsv,
            opcode: op,
            payload,
            ..
        } = f;
        let mut payload = payload;
        // RFC 7692 §6: RSV1 on a message's first frame marks it compressed; control frames
        // are never compressed and may come between the fragments of a compressed message.
        if let (Some(d), false) = (self.deflate.as_mut(), control) {
            if op != opcode::CONTINUATION {
                d.in_compressed = rsv & ws_deflate::RSV1 != 0;
                d.message_len = 0;
                compressed = d.in_compressed;
            }
            if d.in_compressed {
                if d.stopped {
                    self.record.drop_message();
                    return;
                }
                let room = self.record.room();
                let message_room = self.max_frame.saturating_sub(d.message_len);
                match d.inflater.frame(&payload, fin, room.min(message_room)) {
                    Ok(inflated) => {
                        d.message_len += inflated.len();
                        payload = inflated.into();
                    }
                    Err(ws_deflate::Error::TooLarge { .. }) if room < message_room => {
                        d.stopped = true;
                        self.record.drop_message();
                        return;
                    }
                    Err(e) => return self.stop(e),
                }
            }
        }
        self.record.message(
            at,
            MessageKind::WebSocket {
                opcode: op,
                fin,
                compressed,
            },
            payload,
        );
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
/// `client_early`/`upstream_early` are bytes that arrived together with the handshake;
/// `metrics`, the session in the metrics, sees every decoded frame.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn relay<CR, CW, UR, UW>(
    client_r: &mut CR,
    client_w: &mut CW,
    up_r: &mut UR,
    up_w: &mut UW,
    client_early: Bytes,
    upstream_early: Bytes,
    rec: &mut Recorder,
    metrics: Option<&WsSession>,
) -> Option<String>
where
    CR: AsyncRead + Unpin,
    CW: AsyncWrite + Unpin,
    UR: AsyncRead + Unpin,
    UW: AsyncWrite + Unpin,
{
    let max_frame = rec.ws_max_frame();
    // The upstream's 101 says whether permessage-deflate is in use (the client's offer alone
    // does not).
    let deflate = rec.exchange().response.as_ref().is_some_and(|r| {
        ws_deflate::negotiated(
            r.headers
                .iter()
                .filter(|h| h.name.eq_ignore_ascii_case("sec-websocket-extensions"))
                .map(|h| &h.value[..]),
        )
    });
    let (up_half, down_half) = rec.halves();
    let mut from_client = Side::new(
        Direction::ClientToServer,
        max_frame,
        deflate,
        up_half,
        metrics,
    );
    let mut from_server = Side::new(
        Direction::ServerToClient,
        max_frame,
        deflate,
        down_half,
        metrics,
    );
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
        let mut back = BytesMut::new();
        ws::encode(
            &mut back,
            true,
            ws::opcode::CLOSE,
            &ws::close_payload(1011, "bye"),
            None,
        );
        let rec = Recorder::new(0, Limits { max_body: 1 << 20 });
        let r = relay_both_ways(rec, &wire, &back).await;
        assert_eq!(r.messages.len(), 3);
        assert_eq!(&r.messages[0].data[..], b"hel");
        assert_eq!(
            r.messages[1].kind,
            MessageKind::WebSocket {
                opcode: 0,
                fin: true,
                compressed: false
            }
        );
        assert_eq!(r.messages[2].direction, Direction::ServerToClient);
        assert_eq!(
            ws::close_code_reason(&r.messages[2].data),
            Some((1011, "bye".into()))
        );
    }

    /// Sends `wire` from the client and `back` from the upstream through a relay recording
    /// into `rec`, checks both arrive unchanged, and returns the recorded exchange.
    async fn relay_both_ways(rec: Recorder, wire: &[u8], back: &[u8]) -> crate::model::Exchange {
        let (mut client, proxy_client) = duplex(1 << 16);
        let (proxy_up, mut upstream) = duplex(1 << 16);
        let (mut cr, mut cw) = tokio::io::split(proxy_client);
        let (mut ur, mut uw) = tokio::io::split(proxy_up);
        let relay = tokio::spawn(async move {
            let mut rec = rec;
            relay(
                &mut cr,
                &mut cw,
                &mut ur,
                &mut uw,
                Bytes::new(),
                Bytes::new(),
                &mut rec,
                None,
            )
            .await;
            rec.finish()
        });
        client.write_all(wire).await.unwrap();
        let mut got = vec![0u8; wire.len()];
        upstream.read_exact(&mut got).await.unwrap();
        assert_eq!(got, wire, "client bytes pass through untouched");
        upstream.write_all(back).await.unwrap();
        drop(upstream);
        let mut echoed = Vec::new();
        client.read_to_end(&mut echoed).await.unwrap();
        assert_eq!(echoed, back, "server bytes pass through untouched");
        drop(client);
        *relay.await.unwrap()
    }

    fn deflate_session(max_body: usize) -> Recorder {
        let mut rec = Recorder::new(0, Limits { max_body });
        rec.response_head(
            0,
            101,
            "Switching Protocols".into(),
            "HTTP/1.1".into(),
            vec![crate::model::Header::new(
                "Sec-WebSocket-Extensions",
                "permessage-deflate; server_max_window_bits=12",
            )],
        );
        rec
    }

    fn kinds(ex: &crate::model::Exchange) -> Vec<(Direction, u8, bool, bool, Vec<u8>)> {
        ex.messages
            .iter()
            .map(|m| match m.kind {
                MessageKind::WebSocket {
                    opcode,
                    fin,
                    compressed,
                } => (m.direction, opcode, fin, compressed, m.data.to_vec()),
                MessageKind::Grpc { .. } => panic!("not a websocket frame"),
            })
            .collect()
    }

    #[tokio::test]
    async fn deflated_frames_pass_compressed_and_are_recorded_inflated() {
        use crate::decode::ws_deflate::Deflater;
        let mut client_z = Deflater::new(false, 15);
        let mut wire = BytesMut::new();
        // A compressed message in two fragments with a ping between them, then the same text
        // again (context takeover: a back-reference), then an uncompressed one.
        let a = client_z.frame(b"hello, ", false).unwrap();
        ws::encode_with_rsv(
            &mut wire,
            false,
            0b100,
            ws::opcode::TEXT,
            &a,
            Some([1, 2, 3, 4]),
        );
        ws::encode(&mut wire, true, ws::opcode::PING, b"p", Some([4, 3, 2, 1]));
        let b = client_z.frame(b"deflate", true).unwrap();
        ws::encode(
            &mut wire,
            true,
            ws::opcode::CONTINUATION,
            &b,
            Some([9, 9, 9, 9]),
        );
        let c = client_z.frame(b"hello, deflate", true).unwrap();
        ws::encode_with_rsv(
            &mut wire,
            true,
            0b100,
            ws::opcode::TEXT,
            &c,
            Some([5, 6, 7, 8]),
        );
        ws::encode(
            &mut wire,
            true,
            ws::opcode::BINARY,
            b"raw",
            Some([1, 1, 1, 1]),
        );
        let mut server_z = Deflater::new(false, 12);
        let mut back = BytesMut::new();
        let d = server_z.frame(b"welcome", true).unwrap();
        ws::encode_with_rsv(&mut back, true, 0b100, ws::opcode::TEXT, &d, None);
        ws::encode(
            &mut back,
            true,
            ws::opcode::CLOSE,
            &ws::close_payload(1000, "bye"),
            None,
        );

        let ex = relay_both_ways(deflate_session(1 << 20), &wire, &back).await;
        use Direction::{ClientToServer as C, ServerToClient as S};
        assert_eq!(
            kinds(&ex),
            vec![
                (C, 1, false, true, b"hello, ".to_vec()),
                (C, 9, true, false, b"p".to_vec()),
                (C, 0, true, false, b"deflate".to_vec()),
                (C, 1, true, true, b"hello, deflate".to_vec()),
                (C, 2, true, false, b"raw".to_vec()),
                (S, 1, true, true, b"welcome".to_vec()),
                (S, 8, true, false, ws::close_payload(1000, "bye").to_vec()),
            ]
        );
        assert!(ex.error.is_none(), "{:?}", ex.error);
    }

    #[tokio::test]
    async fn inflating_stops_at_the_budget_and_counts_what_it_drops() {
        use crate::decode::ws_deflate::Deflater;
        let mut z = Deflater::new(false, 15);
        let mut back = BytesMut::new();
        for (text, compress) in [
            (vec![b'a'; 60], true),
            (vec![b'b'; 5000], true), // inflates past the 100-byte budget
            (vec![b'c'; 10], true),   // the inflater's history is gone: counted
            (vec![b'd'; 10], false),  // uncompressed: still recorded
        ] {
            if compress {
                let p = z.frame(&text, true).unwrap();
                ws::encode_with_rsv(&mut back, true, 0b100, ws::opcode::TEXT, &p, None);
            } else {
                ws::encode(&mut back, true, ws::opcode::TEXT, &text, None);
            }
        }
        ws::encode(
            &mut back,
            true,
            ws::opcode::CLOSE,
            &ws::close_payload(1000, ""),
            None,
        );
        let mut wire = BytesMut::new();
        ws::encode(
            &mut wire,
            true,
            ws::opcode::CLOSE,
            &ws::close_payload(1000, ""),
            Some([1, 2, 3, 4]),
        );
        let ex = relay_both_ways(deflate_session(100), &wire, &back).await;
        let server: Vec<_> = kinds(&ex)
            .into_iter()
            .filter(|k| k.0 == Direction::ServerToClient)
            .map(|k| (k.3, k.4.len()))
            .collect();
        assert_eq!(server, vec![(true, 60), (false, 10), (false, 2)]);
        assert_eq!(
            ex.tags.get("messages_dropped").map(String::as_str),
            Some("2")
        );
        assert!(ex.error.is_none(), "{:?}", ex.error);
    }

    #[tokio::test]
    async fn a_corrupt_deflate_stream_stops_recording_not_relaying() {
        let mut back = BytesMut::new();
        ws::encode_with_rsv(
            &mut back,
            true,
            0b100,
            ws::opcode::TEXT,
            &[0xff, 0xff],
            None,
        );
        ws::encode(&mut back, true, ws::opcode::TEXT, b"later", None);
        let ex = relay_both_ways(deflate_session(1 << 20), b"", &back).await;
        assert!(kinds(&ex).is_empty(), "{:?}", kinds(&ex));
        let e = ex.error.expect("recorded why");
        assert!(
            e.message.contains("server frames no longer recorded"),
            "{e}"
        );
        assert!(e.message.contains("deflate"), "{e}");
    }
}
