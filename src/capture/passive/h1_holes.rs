//! What a capture hole (or a stretch of undecodable bytes) does to an HTTP/1 flow.
//!
//! A hole is one of three things, and costs at most the exchange it hit:
//! - inside a body whose framing says how long it is (or that it runs to the close): the
//!   body is kept at its real size with the missing bytes as zeros, the exchange flagged
//!   `capture_hole` with the hole's offset and size (tags `capture_hole_offset`,
//!   `capture_hole_bytes`, `capture_hole_in`), and the decoder goes on in step;
//! - anywhere else in a direction: the message it hit is kept flagged, that direction's
//!   decoder restarts at the next start line that parses (`resync`), and the pairing is
//!   marked unsure;
//! - an unsure pairing is settled by time when the next response head arrives: a response
//!   cannot answer a request first seen after it, and on a connection that does not
//!   pipeline, request N+1 is sent only after response N ended, so the response answers the
//!   latest request sent before it and the earlier ones lost their responses to the hole.
//!   On a pipelining connection it answers the oldest waiting request, as without holes.

use super::resync::Resync;
use super::{Engine, Flow, H1};
use crate::capture::recorder::Recorder;
use crate::decode::h1;
use crate::model::{Direction, ErrorKind, ExchangeError};

/// Zeros standing for missing body bytes, fed in pieces of this size.
static ZEROS: [u8; 16 * 1024] = [0; 16 * 1024];

impl Engine {
    /// `len` bytes of `dir` were never captured.
    pub(super) fn h1_gap(&mut self, flow: &mut Flow, h: &mut H1, dir: Direction, len: u64) {
        tracing::debug!(
            conn = flow.conn_id,
            ?dir,
            len,
            req_body_left = h.req.body_left(),
            resp_body_left = h.resp.body_left(),
            waiting = h.pending.len(),
            "HTTP/1 hole"
        );
        match dir {
            Direction::ClientToServer => {
                if let Some(rec) = h.current.as_mut() {
                    if h.req_scan.is_none() && h.req.skip_body(len) {
                        self.stats.body_holes += 1;
                        body_hole(rec, dir, h.req_body, len, h.last_at[0]);
                        h.req_body += len;
                        self.h1_poll_requests(flow, h, h.last_at[0]);
                        return;
                    }
                }
                self.h1_lose_requests(h, &format!("capture hole: {len} bytes missing"));
            }
            Direction::ServerToClient => {
                let at = h.last_at[1];
                let receiving = h
                    .pending
                    .front()
                    .is_some_and(|r| r.exchange().response.is_some());
                if receiving && h.resp_scan.is_none() && h.resp.skip_body(len) {
                    if let Some(rec) = h.pending.front_mut() {
                        self.stats.body_holes += 1;
                        body_hole(rec, dir, h.resp_body, len, at);
                    }
                    h.resp_body += len;
                    // The hole may end the body: its End (and what follows) comes out now.
                    // A switch of protocol cannot: bodies come after the 101's head.
                    let _ = self.h1_poll_responses(flow, h, at);
                    return;
                }
                self.h1_lose_responses(h, at, &format!("capture hole: {len} bytes missing"));
            }
        }
    }

    /// The request decoder met bytes that are not HTTP/1: treated like a hole of unknown
    /// size there, so that what follows is still decoded.
    pub(super) fn h1_undecodable(
        &mut self,
        flow: &mut Flow,
        h: &mut H1,
        dir: Direction,
        error: &str,
    ) {
        if !h.undecodable {
            h.undecodable = true;
            self.stats.decode_errors += 1;
            tracing::warn!(
                conn = flow.conn_id,
                error,
                "undecodable HTTP/1, resynchronising"
            );
        }
        let why = format!("undecodable HTTP/1: {error}");
        match dir {
            Direction::ClientToServer => self.h1_lose_requests(h, &why),
            Direction::ServerToClient => {
                let at = h.last_at[1];
                self.h1_lose_responses(h, at, &why);
            }
        }
    }

    /// The request being received (if its head was seen) is kept flagged and still waits
    /// for its response; the request decoder restarts at the next request line.
    fn h1_lose_requests(&mut self, h: &mut H1, why: &str) {
        if let Some(mut rec) = h.current.take() {
            rec.fail(ExchangeError::new(
                ErrorKind::CaptureHole,
                format!("request incomplete ({why})"),
            ));
            h.pending.push_back(rec);
        }
        h.req = h1::Decoder::new(h1::Role::Request);
        h.req_scan = Some(Resync::new(h1::Role::Request));
        h.unsure = true;
    }

    /// The response being received (if its head was seen) is stored flagged; the response
    /// decoder restarts at the next status line.
    fn h1_lose_responses(&mut self, h: &mut H1, at: i64, why: &str) {
        let receiving = h
            .pending
            .front()
            .is_some_and(|r| r.exchange().response.is_some());
        if receiving {
            if let Some(mut rec) = h.pending.pop_front() {
                rec.fail(ExchangeError::new(
                    ErrorKind::CaptureHole,
                    format!("response incomplete ({why})"),
                ));
                rec.end(at, Direction::ServerToClient);
                self.emit(rec);
            }
        }
        h.resp = h1::Decoder::new(h1::Role::Response);
        h.resp_scan = Some(Resync::new(h1::Role::Response));
        h.unsure = true;
    }

    /// Settles an unsure pairing for a response head seen at `at` (see the module docs):
    /// requests that lost their responses are stored flagged. Returns false when no
    /// waiting request can be the one answered (its request was lost).
    pub(super) fn h1_pair_after_hole(&mut self, h: &mut H1, at: i64) -> bool {
        h.unsure = false;
        let sent_before = h
            .pending
            .iter()
            .take_while(|r| r.exchange().started_at_ns <= at)
            .count();
        if sent_before == 0 {
            return false;
        }
        let unanswered = if h.pipelined { 0 } else { sent_before - 1 };
        tracing::debug!(
            waiting = h.pending.len(),
            sent_before,
            unanswered,
            pipelined = h.pipelined,
            "HTTP/1 pairing after a hole"
        );
        for _ in 0..unanswered {
            if let Some(mut rec) = h.pending.pop_front() {
                self.stats.lost_responses += 1;
                rec.fail(ExchangeError::new(
                    ErrorKind::CaptureHole,
                    "no response (capture hole: the response was not captured)",
                ));
                self.emit(rec);
            }
        }
        h.realign_methods();
        true
    }
}

/// Records that `len` bytes of `dir`'s body, from `offset` on, were never captured: the
/// body keeps its real size (zeros stand for the hole) and the exchange says where.
fn body_hole(rec: &mut Recorder, dir: Direction, offset: u64, len: u64, at: i64) {
    let who = match dir {
        Direction::ClientToServer => "request",
        Direction::ServerToClient => "response",
    };
    rec.fail(ExchangeError::new(
        ErrorKind::CaptureHole,
        format!(
            "capture hole: {len} bytes of the {who} body missing at offset {offset} (stored as zeros)"
        ),
    ));
    let tags = &mut rec.exchange_mut().tags;
    tags.entry("capture_hole_offset".into())
        .or_insert_with(|| offset.to_string());
    tags.entry("capture_hole_in".into())
        .or_insert_with(|| who.to_string());
    let total = tags
        .get("capture_hole_bytes")
        .and_then(|b| b.parse::<u64>().ok())
        .unwrap_or(0)
        + len;
    tags.insert("capture_hole_bytes".into(), total.to_string());
    // The half copies only what its budget keeps and counts the rest, so even a large hole
    // in a body running to the close costs a loop, not memory.
    let mut left = len;
    while left > 0 {
        let n = usize::try_from(left).unwrap_or(usize::MAX).min(ZEROS.len());
        rec.half(dir).data(at, &ZEROS[..n]);
        left -= n as u64;
    }
}
