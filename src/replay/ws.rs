//! WebSocket replay: after a matched upgrade, the recorded server frames are played back.
//!
//! Server frames that followed a client frame in the recording go out when the live client
//! sends the matching frame (same opcode and payload, else the next of the same opcode), after
//! the recorded delay; frames sent before any client frame go out at their recorded offsets.
//! A recorded pong answering a ping carries the live ping's payload, since clients check it;
//! a live ping with no recorded counterpart is answered at once. The recorded close (code and
//! reason) ends the session.
//!
//! permessage-deflate (RFC 7692) is negotiated afresh with the live client when the recording
//! had it and the client offers it: messages recorded compressed are deflated again (frames
//! are stored inflated) and the client's compressed frames are inflated before matching.
//! A client that does not offer it gets the same messages uncompressed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::faults::Fault;
use super::pipeline::{Replay, Upgrade};
use super::stream::{due, plan, Progress, Trigger};
use crate::decode::h1_encode;
use crate::decode::ws::{self, opcode};
use crate::decode::ws_deflate::{self, Agreement, Deflater, Inflater};
use crate::model::{Direction, Header, HeaderList, MessageKind};
use crate::net::door::Io;

/// How long to wait for the client's close frame after the recorded close went out.
const CLOSE_GRACE: Duration = Duration::from_secs(2);

/// `[opcode] ++ payload`: how frames are compared (same kind and same bytes).
fn key(op: u8, payload: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(1 + payload.len());
    b.extend_from_slice(&[op]);
    b.extend_from_slice(payload);
    b.freeze()
}

fn same_opcode(a: &[u8], b: &[u8]) -> bool {
    a.first() == b.first()
}

/// One recorded frame: direction, offset from the 101, opcode, FIN, payload (inflated), and
/// whether it began a compressed message.
struct RecordedFrame(Direction, u64, u8, bool, Bytes, bool);

fn is_extensions(name: &str) -> bool {
    name.eq_ignore_ascii_case("sec-websocket-extensions")
}

/// permessage-deflate for this session: when the recording negotiated it and the live client
/// offers it acceptably. Without the recording's, the recorded frames are what an
/// uncompressed session sends; without the client's offer, deflating is not allowed.
fn agree_deflate(recorded: &[Header], live: &[Header]) -> Option<Agreement> {
    let values = |hs: &[Header]| -> Vec<Vec<u8>> {
        hs.iter()
            .filter(|h| is_extensions(&h.name))
            .map(|h| h.value.to_vec())
            .collect()
    };
    if !ws_deflate::negotiated(values(recorded).iter().map(Vec::as_slice)) {
        return None;
    }
    ws_deflate::accept(values(live).iter().map(Vec::as_slice))
}

/// Inflating the live client's frames (its compressed messages start with RSV1).
#[derive(Default)]
struct ClientDeflate {
    inflater: Inflater,
    in_compressed: bool,
    message_len: usize,
}

impl ClientDeflate {
    /// The inflated payload of a frame of a compressed message; `None` for other frames.
    /// A message is inflated to at most [`ws::DEFAULT_MAX_FRAME`] bytes.
    fn inflate(&mut self, f: &ws::Frame) -> Result<Option<Bytes>, ws_deflate::Error> {
        if f.is_control() {
            return Ok(None);
        }
        if f.opcode != opcode::CONTINUATION {
            self.in_compressed = f.rsv & ws_deflate::RSV1 != 0;
            self.message_len = 0;
        }
        if !self.in_compressed {
            return Ok(None);
        }
        let limit = ws::DEFAULT_MAX_FRAME.saturating_sub(self.message_len);
        let out = self.inflater.frame(&f.payload, f.fin, limit)?;
        self.message_len += out.len();
        Ok(Some(out.into()))
    }
}

/// Completes the handshake for the live client and plays the recorded session.
pub(crate) async fn serve<S: Io>(replay: &Arc<Replay>, upgrade: Upgrade<S>) {
    let Upgrade {
        stream,
        headers: req_headers,
        early,
        path,
        decision,
    } = upgrade;
    let Some(recorded) = decision.recorded() else {
        return;
    };
    let ex = &recorded.exchange;
    let Some(resp) = &ex.response else { return };
    let live_key = req_headers.header("sec-websocket-key").unwrap_or_default();
    let deflate = agree_deflate(&resp.headers, &req_headers);
    let mut headers: Vec<Header> = Vec::with_capacity(resp.headers.len() + 1);
    for h in &resp.headers {
        if h.name.eq_ignore_ascii_case("sec-websocket-accept") {
            headers.push(Header {
                name: h.name.clone(),
                value: ws::accept_key(live_key).into_bytes().into(),
            });
        } else if h.name.eq_ignore_ascii_case("sec-websocket-extensions") {
            // The recorded answer was to another client's offer: this client gets the answer
            // to its own, in the recorded header's place.
            if let Some(a) = &deflate {
                if !headers.iter().any(|h| is_extensions(&h.name)) {
                    headers.push(Header {
                        name: h.name.clone(),
                        value: crate::model::HeaderValue::from_slice(a.response.as_bytes()),
                    });
                }
            }
        } else {
            headers.push(h.clone());
        }
    }
    // The pipeline's plan may delay the handshake or fault the session.
    let realism = &decision.plan;
    if !realism.first_byte.is_zero() {
        tokio::time::sleep(realism.first_byte).await;
    }
    let mut head = BytesMut::new();
    h1_encode::response_head(&mut head, 101, &resp.reason, &headers);
    let (mut reader, mut writer) = tokio::io::split(stream);
    if writer.write_all(&head).await.is_err() {
        replay.finish(&path, &decision, 0);
        return;
    }
    replay.finish(&path, &decision, 101);
    // Counted open until the last of the session's tasks lets go of it.
    let session = Arc::new(replay.metrics().ws.open());
    let (frame_delay, drop_probability) = match &realism.fault {
        // An abnormal drop: the TCP connection ends with no close frame (clients see 1006).
        Some(Fault::WsDrop) => return,
        Some(Fault::WsClose { code, reason }) => {
            let mut payload = code.to_be_bytes().to_vec();
            payload.extend_from_slice(reason.as_bytes());
            let mut out = BytesMut::new();
            ws::encode(&mut out, true, opcode::CLOSE, &payload, None);
            session.frame(Direction::ServerToClient, opcode::CLOSE, &payload);
            let _ = writer.write_all(&out).await;
            let _ = writer.flush().await;
            // Give the client a moment to answer the close before the socket goes.
            let mut buf = [0u8; 1024];
            let _ = tokio::time::timeout(CLOSE_GRACE, reader.read(&mut buf)).await;
            return;
        }
        Some(Fault::WsDelayFrames { delay }) => (*delay, 0.0),
        Some(Fault::WsDropFrames { probability }) => (Duration::ZERO, *probability),
        _ => (Duration::ZERO, 0.0),
    };
    let start = Instant::now();
    // Offsets are from the exchange start; the session starts at the 101.
    let base = ex.timings.response_first_byte_ns.unwrap_or(0);
    let frames: Vec<RecordedFrame> = ex
        .messages
        .iter()
        .filter_map(|m| match m.kind {
            MessageKind::WebSocket {
                opcode,
                fin,
                compressed,
            } => Some(RecordedFrame(
                m.direction,
                m.offset_ns.saturating_sub(base),
                opcode,
                fin,
                m.data.clone(),
                compressed,
            )),
            MessageKind::Grpc { .. } => None,
        })
        .collect();
    let client: Vec<&RecordedFrame> = frames
        .iter()
        .filter(|f| f.0 == Direction::ClientToServer)
        .collect();
    let client_offsets: Vec<u64> = client.iter().map(|f| f.1).collect();
    let client_ops: Vec<u8> = client.iter().map(|f| f.2).collect();
    let progress = Progress::new(
        Arc::new(client.iter().map(|f| key(f.2, &f.4)).collect()),
        start,
    );
    let live_payloads: Arc<Mutex<Vec<Option<Bytes>>>> =
        Arc::new(Mutex::new(vec![None; client.len()]));

    // One writer owns the socket; the player and the reader's automatic pongs feed it.
    let (out_tx, mut out_rx) = mpsc::channel::<Bytes>(64);
    let writer_task = tokio::spawn(async move {
        while let Some(b) = out_rx.recv().await {
            if writer.write_all(&b).await.is_err() {
                return;
            }
        }
        let _ = writer.shutdown().await;
    });

    let (closed_tx, mut closed_rx) = tokio::sync::watch::channel(false);
    let reader_progress = progress.clone();
    let reader_payloads = live_payloads.clone();
    let pong_tx = out_tx.clone();
    let reader_session = session.clone();
    let mut client_deflate = deflate.is_some().then(ClientDeflate::default);
    let reader_task = tokio::spawn(async move {
        let mut decoder = ws::Decoder::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut pending = early;
        'read: loop {
            if pending.is_empty() {
                match reader.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => pending = Bytes::copy_from_slice(&buf[..n]),
                }
            }
            if decoder.feed(&pending).is_err() {
                break;
            }
            pending = Bytes::new();
            while let Some(mut f) = decoder.poll() {
                reader_session.frame(Direction::ClientToServer, f.opcode, &f.payload);
                if let Some(d) = client_deflate.as_mut() {
                    match d.inflate(&f) {
                        Ok(Some(payload)) => f.payload = payload,
                        Ok(None) => {}
                        // A message that does not inflate cannot be followed: the connection fails
                        // (RFC 6455 §7.1.7).
                        Err(_) => break 'read,
                    }
                }
                let matched =
                    reader_progress.client_message(&key(f.opcode, &f.payload), same_opcode);
                match matched {
                    Some(i) => {
                        if let Ok(mut p) = reader_payloads.lock() {
                            p[i] = Some(f.payload.clone());
                        }
                    }
                    None if f.opcode == opcode::PING => {
                        let mut out = BytesMut::new();
                        ws::encode(&mut out, true, opcode::PONG, &f.payload, None);
                        let _ = pong_tx.send(out.freeze()).await;
                    }
                    None => {}
                }
                if f.opcode == opcode::CLOSE {
                    let _ = closed_tx.send(true);
                }
            }
        }
        let _ = closed_tx.send(true);
        reader_progress.half_close();
    });

    let latency = replay.config().recorded_latency;
    let mut last = start;
    let mut sent_close = false;
    let mut deflater =
        deflate.map(|a| Deflater::new(a.server_no_context_takeover, a.server_window_bits));
    // Whether the data message being sent goes compressed (set by its first frame).
    let mut compressing = false;
    for RecordedFrame(dir, offset, op, fin, data, compressed) in &frames {
        if *dir != Direction::ServerToClient {
            continue;
        }
        let first_of_message = *op != opcode::CONTINUATION && *op < opcode::CLOSE;
        if first_of_message {
            compressing = *compressed && deflater.is_some();
        }
        let step = plan(&client_offsets, None, *offset);
        last = due(&progress, step, latency, last).await;
        let mut payload = data.clone();
        if *op == opcode::PONG {
            if let Trigger::Client(i) = step.trigger {
                if client_ops.get(i) == Some(&opcode::PING) {
                    if let Some(live) = live_payloads.lock().ok().and_then(|p| p[i].clone()) {
                        payload = live;
                    }
                }
            }
        }
        if !frame_delay.is_zero() {
            tokio::time::sleep(frame_delay).await;
        }
        // Control frames always go out; data frames may be dropped by the fault.
        if *op < opcode::CLOSE
            && drop_probability > 0.0
            && replay.planner().chance(drop_probability)
        {
            continue;
        }
        let mut out = BytesMut::new();
        match deflater.as_mut() {
            Some(z) if compressing && *op < opcode::CLOSE => {
                let Ok(wire) = z.frame(&payload, *fin) else {
                    break;
                };
                let rsv = if first_of_message {
                    ws_deflate::RSV1
                } else {
                    0
                };
                ws::encode_with_rsv(&mut out, *fin, rsv, *op, &wire, None);
                payload = wire.into();
            }
            _ => ws::encode(&mut out, *fin, *op, &payload, None),
        }
        if out_tx.send(out.freeze()).await.is_err() {
            break;
        }
        session.frame(Direction::ServerToClient, *op, &payload);
        if *op == opcode::CLOSE {
            sent_close = true;
            break;
        }
    }
    if sent_close {
        let _ = tokio::time::timeout(CLOSE_GRACE, closed_rx.wait_for(|c| *c)).await;
    } else {
        // Nothing left to play: stay open until the client leaves, answering its pings.
        let _ = closed_rx.wait_for(|c| *c).await;
    }
    // The reader holds a sender for its pongs: stop it first so the writer sees the end.
    reader_task.abort();
    let _ = reader_task.await;
    drop(out_tx);
    let _ = writer_task.await;
}
