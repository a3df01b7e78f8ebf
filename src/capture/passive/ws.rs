//! WebSocket sessions of passive capture: frames of both directions after an HTTP/1 101,
//! recorded within the same budget as the proxy's relay. After a capture hole a direction
//! resumes at the next plausible frame header (`decode::ws`); the session is kept, flagged
//! `capture_hole`, with what was lost in its tags.

use super::{App, Engine, Flow};
use crate::capture::recorder::Recorder;
use crate::decode::ws;
use crate::model::{Direction, ErrorKind, ExchangeError, MessageKind};

pub(super) struct Ws {
    /// `None` once the session was stored after a decoding failure.
    pub rec: Option<Recorder>,
    dec: [ws::Decoder; 2],
    /// Holes in the session, the bytes they took, and the captured bytes skipped after
    /// them to reach the next frame.
    holes: u64,
    hole_bytes: u64,
    skipped_bytes: u64,
}

impl Ws {
    pub(super) fn new(rec: Recorder) -> Self {
        let max_frame = rec.ws_max_frame();
        Ws {
            rec: Some(rec),
            dec: [
                ws::Decoder::new().with_max_frame(max_frame),
                ws::Decoder::new().with_max_frame(max_frame),
            ],
            holes: 0,
            hole_bytes: 0,
            skipped_bytes: 0,
        }
    }
}

impl Ws {
    fn tag_losses(&mut self) {
        let (holes, bytes, skipped) = (self.holes, self.hole_bytes, self.skipped_bytes);
        if let Some(rec) = self.rec.as_mut() {
            let tags = &mut rec.exchange_mut().tags;
            tags.insert("ws_holes".into(), holes.to_string());
            tags.insert("ws_hole_bytes".into(), bytes.to_string());
            tags.insert("ws_resync_skipped_bytes".into(), skipped.to_string());
        }
    }
}

impl Engine {
    /// A hole in one direction of a WebSocket session: the frame it cut is lost, decoding
    /// resumes at the next frame header.
    pub(super) fn ws_gap(&mut self, flow: &mut Flow, w: &mut Ws, dir: Direction, len: u64) {
        let i = usize::from(dir == Direction::ServerToClient);
        w.dec[i].gap();
        w.holes += 1;
        w.hole_bytes += len;
        if let Some(rec) = w.rec.as_mut() {
            rec.fail(ExchangeError::new(
                ErrorKind::CaptureHole,
                format!("capture hole: {len} bytes of the WebSocket session missing, frames lost"),
            ));
            tracing::debug!(
                conn = flow.conn_id,
                len,
                "WebSocket frames resync after a hole"
            );
        }
        w.tag_losses();
    }

    pub(super) fn ws_data(
        &mut self,
        flow: &mut Flow,
        w: &mut Ws,
        dir: Direction,
        at: i64,
        data: &[u8],
    ) -> Option<App> {
        let i = usize::from(dir == Direction::ServerToClient);
        w.rec.as_ref()?;
        if let Err(e) = w.dec[i].feed(data) {
            self.stats.decode_errors += 1;
            tracing::warn!(conn = flow.conn_id, error = %e, "WebSocket decoding stopped");
            if let Some(mut rec) = w.rec.take() {
                rec.fail(ExchangeError::new(
                    ErrorKind::StreamError,
                    format!("undecodable WebSocket frames: {e}"),
                ));
                self.emit(rec);
            }
            return Some(App::Ignored);
        }
        if let Some(skipped) = w.dec[i].take_resync() {
            self.stats.resyncs += 1;
            self.stats.resync_skipped_bytes += skipped;
            w.skipped_bytes += skipped;
            w.tag_losses();
        }
        let rec = w.rec.as_mut()?;
        while let Some(frame) = w.dec[i].poll() {
            rec.message(
                at,
                dir,
                MessageKind::WebSocket {
                    opcode: frame.opcode,
                    fin: frame.fin,
                    compressed: false,
                },
                frame.payload,
            );
        }
        None
    }
}
