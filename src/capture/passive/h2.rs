//! HTTP/2 flows of passive capture (prior knowledge, h2c upgrade, or joined mid-connection):
//! one recorder per stream, gRPC recognised by its content type.

use std::collections::BTreeMap;

use super::{App, Engine, Flow};
use crate::capture::recorder::Recorder;
use crate::decode::h2;
use crate::model::{Direction, ErrorKind, ExchangeError, Header, HeaderList, Protocol};
use crate::vocab::reason_phrase;

pub(super) struct H2 {
    dec: [h2::Decoder; 2],
    pub streams: BTreeMap<u32, Recorder>,
    /// A hole was met: the loss of HPACK state was reported for this connection.
    hole_reported: bool,
}

impl H2 {
    pub(super) fn new() -> Self {
        H2 {
            dec: [h2::Decoder::new(true), h2::Decoder::new(false)],
            streams: BTreeMap::new(),
            hole_reported: false,
        }
    }
}

impl Engine {
    pub(super) fn h2_data(
        &mut self,
        flow: &mut Flow,
        h: &mut H2,
        dir: Direction,
        at: i64,
        data: &[u8],
    ) -> Option<App> {
        let i = usize::from(dir == Direction::ServerToClient);
        if let Err(e) = h.dec[i].feed(data) {
            self.stats.decode_errors += 1;
            tracing::warn!(conn = flow.conn_id, error = %e, "HTTP/2 decoding stopped");
        }
        while let Some(ev) = h.dec[i].poll() {
            self.h2_event(flow, h, dir, at, ev);
        }
        if h.dec[i].is_failed() {
            for (_, mut rec) in std::mem::take(&mut h.streams) {
                rec.fail(ExchangeError::new(
                    ErrorKind::MalformedResponse,
                    "undecodable HTTP/2 frames",
                ));
                self.emit(rec);
            }
            return Some(App::Ignored);
        }
        None
    }

    /// `len` bytes of `dir` were never captured: the decoder resumes at the next frame
    /// boundary; streams still open that way may have lost frames and are flagged.
    pub(super) fn h2_gap(&mut self, flow: &mut Flow, h: &mut H2, dir: Direction, len: u64) {
        let i = usize::from(dir == Direction::ServerToClient);
        h.dec[i].gap();
        if !h.hole_reported {
            h.hole_reported = true;
            self.stats.hpack_unsure_connections += 1;
            tracing::warn!(
                conn = flow.conn_id,
                "HTTP/2 bytes missing: HPACK state may be lost, later headers may be damaged"
            );
        }
        for rec in h.streams.values_mut() {
            if !rec.half(dir).is_ended() {
                rec.fail(ExchangeError::new(
                    ErrorKind::CaptureHole,
                    format!("capture hole: {len} bytes of the connection missing while the stream was open"),
                ));
            }
        }
    }

    fn h2_event(&mut self, flow: &mut Flow, h: &mut H2, dir: Direction, at: i64, ev: h2::Event) {
        match ev {
            h2::Event::Headers {
                stream,
                headers,
                end_stream,
                damaged,
            } => {
                if let std::collections::btree_map::Entry::Vacant(slot) = h.streams.entry(stream) {
                    let mut rec = self.new_recorder(flow, at, Protocol::H2);
                    if dir == Direction::ServerToClient {
                        rec.fail(ExchangeError::new(
                            ErrorKind::CaptureHole,
                            "request not captured",
                        ));
                        self.stats.orphan_responses += 1;
                    }
                    slot.insert(rec);
                }
                let Some(rec) = h.streams.get_mut(&stream) else {
                    return;
                };
                if damaged {
                    let i = usize::from(dir == Direction::ServerToClient);
                    rec.fail(ExchangeError::new(
                        ErrorKind::CaptureHole,
                        if h.dec[i].hpack_unsure() {
                            "header fields lost: HPACK state lost to a capture hole"
                        } else {
                            "header fields lost: HPACK state not captured (capture began mid-connection)"
                        },
                    ));
                }
                headers_event(rec, dir, at, headers);
                if end_stream {
                    self.h2_end(h, stream, dir, at);
                }
            }
            h2::Event::Data {
                stream,
                data,
                end_stream,
            } => {
                let Some(rec) = h.streams.get_mut(&stream) else {
                    // DATA of a stream opened before the capture: nothing to attach it to.
                    return;
                };
                rec.half(dir).data(at, &data);
                if end_stream {
                    self.h2_end(h, stream, dir, at);
                }
            }
            h2::Event::Reset { stream, code } => {
                if let Some(mut rec) = h.streams.remove(&stream) {
                    if !rec.response_ended() {
                        rec.fail(ExchangeError::new(
                            ErrorKind::StreamError,
                            format!("stream reset (error code {code})"),
                        ));
                    }
                    self.emit(rec);
                }
            }
            h2::Event::GoAway { .. } => {}
        }
    }

    fn h2_end(&mut self, h: &mut H2, stream: u32, dir: Direction, at: i64) {
        let Some(rec) = h.streams.get_mut(&stream) else {
            return;
        };
        rec.end(at, dir);
        if dir == Direction::ServerToClient {
            if let Some(rec) = h.streams.remove(&stream) {
                self.emit(rec);
            }
        }
    }
}

/// A HEADERS block: the request head, the response head (1xx skipped), or trailers.
fn headers_event(rec: &mut Recorder, dir: Direction, at: i64, headers: Vec<Header>) {
    let (pseudo, regular): (Vec<Header>, Vec<Header>) =
        headers.into_iter().partition(|f| f.name.starts_with(':'));
    let get = |n: &str| {
        pseudo
            .iter()
            .find(|f| f.name == n)
            .map(|f| f.value_str().into_owned())
    };
    match dir {
        Direction::ClientToServer if rec.exchange().request.method.is_empty() => {
            let ex = rec.exchange_mut();
            ex.authority = (get(":authority")
                .or_else(|| regular.header_str("host"))
                .unwrap_or_default())
            .into();
            if let Some(s) = get(":scheme") {
                ex.scheme = s.into();
            }
            rec.request_head(
                get(":method").unwrap_or_default().into(),
                get(":path").unwrap_or_default().into(),
                "HTTP/2".into(),
                regular,
            );
        }
        Direction::ClientToServer => rec.trailers(dir, regular),
        Direction::ServerToClient => {
            let status = get(":status").and_then(|s| s.parse::<u16>().ok());
            match (rec.exchange().response.is_some(), status) {
                (_, Some(s)) if (100..200).contains(&s) => {}
                (false, _) => {
                    let status = status.unwrap_or(0);
                    rec.response_head(
                        at,
                        status,
                        reason_phrase(status).into(),
                        "HTTP/2".into(),
                        regular,
                    );
                }
                (true, _) => rec.trailers(dir, regular),
            }
        }
    }
}
