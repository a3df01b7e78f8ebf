//! WebSocket sessions of passive capture: frames of both directions after an HTTP/1 101,
//! recorded within the same budget as the proxy's relay.

use super::{App, Engine, Flow};
use crate::capture::recorder::Recorder;
use crate::decode::ws;
use crate::model::{Direction, ErrorKind, ExchangeError, MessageKind};

pub(super) struct Ws {
    /// `None` once the session was stored after a decoding failure.
    pub rec: Option<Recorder>,
    dec: [ws::Decoder; 2],
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
        }
    }
}

impl Engine {
    pub(super) fn ws_data(
        &mut self,
        flow: &mut Flow,
        w: &mut Ws,
        dir: Direction,
        at: i64,
        data: &[u8],
    ) -> Option<App> {
        let i = usize::from(dir == Direction::ServerToClient);
        let rec = w.rec.as_mut()?;
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
