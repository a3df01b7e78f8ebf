//! HTTP/1 flows of passive capture: requests and responses paired in order (pipelining
//! included), and upgrades to WebSocket or h2c (and `CONNECT` tunnels) handing the flow to
//! those decoders. What a capture hole does to a flow is in `h1_holes`.

use std::collections::VecDeque;

use super::h2::H2;
use super::resync::Resync;
use super::ws::Ws;
use super::{App, Engine, Flow};
use crate::capture::recorder::Recorder;
use crate::decode::h1;
use crate::model::{Direction, ErrorKind, ExchangeError, HeaderList, Protocol};

pub(super) struct H1 {
    pub req: h1::Decoder,
    pub resp: h1::Decoder,
    /// The request being received.
    pub current: Option<Recorder>,
    /// Requests complete or in progress whose response has not ended, in order.
    pub pending: VecDeque<Recorder>,
    /// After a hole (or undecodable bytes) in the requests: the next request line is searched.
    pub req_scan: Option<Resync>,
    /// After a hole in the responses: the next status line is searched.
    pub resp_scan: Option<Resync>,
    /// A hole may have swallowed whole messages: the next response is paired by time.
    pub unsure: bool,
    /// A request was seen sent before the previous response ended (pipelining): after a
    /// hole, responses then answer the oldest request rather than the latest one sent.
    pub pipelined: bool,
    /// Body bytes seen so far of the request being received, and of the response.
    pub req_body: u64,
    pub resp_body: u64,
    /// Capture time of the last bytes of each direction (client, server): the time of a
    /// message that a hole ended.
    pub last_at: [i64; 2],
    /// Undecodable bytes were met once on this flow (counted once per flow).
    pub undecodable: bool,
}

impl H1 {
    pub(super) fn new() -> Self {
        H1 {
            req: h1::Decoder::new(h1::Role::Request),
            resp: h1::Decoder::new(h1::Role::Response),
            current: None,
            pending: VecDeque::new(),
            req_scan: None,
            resp_scan: None,
            unsure: false,
            pipelined: false,
            req_body: 0,
            resp_body: 0,
            last_at: [0; 2],
            undecodable: false,
        }
    }

    /// Tells the response decoder the methods of the requests still waiting, after the
    /// front one (whose response is being decoded), then of the request being received.
    pub(super) fn realign_methods(&mut self) {
        self.resp.clear_request_methods();
        for rec in self.pending.iter().skip(1).chain(self.current.iter()) {
            self.resp
                .push_request_method(&rec.exchange().request.method);
        }
    }
}

/// `HTTP/1.x` as recorded (without the formatting machinery: two per exchange showed).
fn version_text(minor: u8) -> String {
    match minor {
        0 => "HTTP/1.0".to_string(),
        1 => "HTTP/1.1".to_string(),
        m => format!("HTTP/1.{m}"),
    }
}

fn protocol(minor: u8) -> Protocol {
    if minor == 0 {
        Protocol::Http10
    } else {
        Protocol::Http11
    }
}

impl Engine {
    pub(super) fn h1_data(
        &mut self,
        flow: &mut Flow,
        h: &mut H1,
        dir: Direction,
        at: i64,
        data: &[u8],
    ) -> Option<App> {
        let client = dir == Direction::ClientToServer;
        h.last_at[usize::from(!client)] = at;
        let scan = if client {
            &mut h.req_scan
        } else {
            &mut h.resp_scan
        };
        let found;
        let data = match scan {
            None => data,
            Some(s) => {
                found = s.feed(data)?;
                self.stats.resync_skipped_bytes += s.skipped;
                self.stats.resyncs += 1;
                *scan = None;
                &found[..]
            }
        };
        if client {
            h.req.feed(data);
            self.h1_poll_requests(flow, h, at);
            None
        } else {
            h.resp.feed(data);
            self.h1_poll_responses(flow, h, at)
        }
    }

    pub(super) fn h1_poll_requests(&mut self, flow: &mut Flow, h: &mut H1, at: i64) {
        loop {
            match h.req.poll() {
                Ok(Some(ev)) => self.h1_request_event(flow, h, at, ev),
                Ok(None) => break,
                Err(e) => {
                    self.h1_undecodable(flow, h, Direction::ClientToServer, &e.to_string());
                    break;
                }
            }
        }
    }

    pub(super) fn h1_poll_responses(
        &mut self,
        flow: &mut Flow,
        h: &mut H1,
        at: i64,
    ) -> Option<App> {
        loop {
            match h.resp.poll() {
                Ok(Some(ev)) => {
                    if let Some(next) = self.h1_response_event(flow, h, at, ev) {
                        return Some(next);
                    }
                }
                Ok(None) => return None,
                Err(e) => {
                    self.h1_undecodable(flow, h, Direction::ServerToClient, &e.to_string());
                    return None;
                }
            }
        }
    }

    fn h1_request_event(&mut self, flow: &mut Flow, h: &mut H1, at: i64, ev: h1::Event) {
        match ev {
            h1::Event::RequestHead(head) => {
                h.req_body = 0;
                let mut rec = self.new_recorder(flow, at, protocol(head.minor));
                rec.exchange_mut().authority =
                    head.headers.header_str("host").unwrap_or_default().into();
                h.resp.push_request_method(&head.method);
                expect_body(&mut rec, Direction::ClientToServer, head.framing);
                rec.request_head(
                    head.method,
                    head.target,
                    version_text(head.minor).into(),
                    head.headers,
                );
                if let Some(prev) = h.current.replace(rec) {
                    h.pending.push_back(prev);
                }
            }
            h1::Event::Data(d) => {
                h.req_body += d.len() as u64;
                if let Some(rec) = &mut h.current {
                    rec.request_data(at, &d);
                }
            }
            h1::Event::Trailers(t) => {
                if let Some(rec) = &mut h.current {
                    rec.trailers(Direction::ClientToServer, t);
                }
            }
            h1::Event::End => {
                if let Some(mut rec) = h.current.take() {
                    rec.end(at, Direction::ClientToServer);
                    h.pending.push_back(rec);
                }
            }
            h1::Event::Upgraded | h1::Event::ResponseHead(_) => {}
        }
    }

    /// Returns the flow's next protocol when the response switched it.
    pub(super) fn h1_response_event(
        &mut self,
        flow: &mut Flow,
        h: &mut H1,
        at: i64,
        ev: h1::Event,
    ) -> Option<App> {
        match ev {
            h1::Event::ResponseHead(head) => {
                if (100..200).contains(&head.status) && head.status != 101 {
                    return None; // interim (100 Continue, 103 Early Hints)
                }
                h.resp_body = 0;
                if h.pending.is_empty() {
                    // The server answers before the request ended (or it was never captured).
                    if let Some(cur) = h.current.take() {
                        h.pending.push_back(cur);
                    }
                }
                let answerable = if h.unsure {
                    self.h1_pair_after_hole(h, at)
                } else {
                    !h.pending.is_empty()
                };
                if !answerable {
                    self.stats.orphan_responses += 1;
                    let mut rec = self.new_recorder(flow, at, protocol(head.minor));
                    rec.fail(ExchangeError::new(
                        ErrorKind::CaptureHole,
                        "request not captured",
                    ));
                    h.pending.push_front(rec);
                    if h.pending.len() > 1 {
                        h.realign_methods();
                    }
                }
                let connect = h
                    .pending
                    .front()
                    .is_some_and(|r| r.exchange().request.method.eq_ignore_ascii_case("CONNECT"));
                // The request decoder waits after an Upgrade or a CONNECT: a 101, or a 2xx to
                // the CONNECT, makes the connection a tunnel.
                h.req.resolve_upgrade(
                    head.status == 101 || connect && (200..300).contains(&head.status),
                );
                let rec = h.pending.front_mut()?;
                expect_body(rec, Direction::ServerToClient, head.framing);
                rec.response_head(
                    at,
                    head.status,
                    head.reason,
                    version_text(head.minor).into(),
                    head.headers,
                );
                None
            }
            h1::Event::Data(d) => {
                h.resp_body += d.len() as u64;
                if let Some(rec) = h.pending.front_mut() {
                    rec.response_data(at, &d);
                }
                None
            }
            h1::Event::Trailers(t) => {
                if let Some(rec) = h.pending.front_mut() {
                    rec.trailers(Direction::ServerToClient, t);
                }
                None
            }
            h1::Event::End => {
                let switching = h.pending.front().is_some_and(|r| {
                    let ex = r.exchange();
                    ex.response.as_ref().is_some_and(|resp| {
                        resp.status == 101
                            || ex.request.method.eq_ignore_ascii_case("CONNECT")
                                && (200..300).contains(&resp.status)
                    })
                });
                if switching {
                    return None; // kept for the Upgraded event
                }
                if let Some(mut rec) = h.pending.pop_front() {
                    rec.end(at, Direction::ServerToClient);
                    self.emit(rec);
                }
                // The next request was sent before this response ended: pipelining.
                if !h.unsure
                    && h.pending
                        .front()
                        .or(h.current.as_ref())
                        .is_some_and(|next| next.exchange().started_at_ns < at)
                {
                    h.pipelined = true;
                }
                None
            }
            h1::Event::Upgraded => self.h1_upgraded(flow, h, at),
            h1::Event::RequestHead(_) => None,
        }
    }

    /// After a 101: the flow goes on as WebSocket or HTTP/2, or is not decoded further.
    fn h1_upgraded(&mut self, flow: &mut Flow, h: &mut H1, at: i64) -> Option<App> {
        let mut rec = h.pending.pop_front()?;
        rec.end(at, Direction::ServerToClient);
        let upgrade = rec
            .exchange()
            .request
            .headers
            .header_str("upgrade")
            .unwrap_or_default()
            .to_ascii_lowercase();
        let client_rest = h.req.take_buffered();
        let server_rest = h.resp.take_buffered();
        let mut next = if upgrade.contains("websocket") {
            rec.exchange_mut().protocol = Some(Protocol::WebSocket);
            App::Ws(Box::new(Ws::new(rec)))
        } else if upgrade.contains("h2c") {
            // RFC 7540 §3.2: the upgrade request becomes stream 1; its response comes
            // as HTTP/2 frames after the server's preface.
            rec.exchange_mut().protocol = Some(Protocol::H2);
            rec.clear_response();
            let mut h2 = H2::new();
            h2.streams.insert(1, rec);
            App::H2(Box::new(h2))
        } else if rec
            .exchange()
            .request
            .method
            .eq_ignore_ascii_case("CONNECT")
        {
            // RFC 9110 §9.3.6: after a 2xx the connection is a tunnel to the target. Its
            // bytes are a flow of their own, recognised like any other, with the outer
            // authority kept (TLS inside is decrypted when the key log has its keys).
            let target = rec.exchange().request.target.clone();
            self.emit(rec);
            self.stats.tunnels += 1;
            flow.tunnel = Some(target.into());
            let client = flow.client.unwrap_or(0);
            for (side, rest) in [(client, client_rest), (1 - client, server_rest)] {
                if !rest.is_empty() {
                    flow.pre_len[side] += rest.len();
                    flow.pre[side].push((at, rest));
                }
            }
            return Some(App::Unknown);
        } else {
            // An upgrade to something mf does not decode.
            self.emit(rec);
            return Some(App::Ignored);
        };
        for (dir, rest) in [
            (Direction::ClientToServer, client_rest),
            (Direction::ServerToClient, server_rest),
        ] {
            if rest.is_empty() {
                continue;
            }
            let replaced = match &mut next {
                App::Ws(w) => self.ws_data(flow, w, dir, at, &rest),
                App::H2(x) => self.h2_data(flow, x, dir, at, &rest),
                _ => None,
            };
            if let Some(r) = replaced {
                next = r;
            }
        }
        Some(next)
    }
}

/// Room for an announced body, taken at once: growing by doubling was a tenth of the parsing
/// thread's instructions on a capture of API traffic (reallocations and their copies). A
/// capture's lengths are not trusted past [`EXPECT_AT_MOST`]: a lying `Content-Length` on many
/// flows must not reserve their whole budgets.
fn expect_body(rec: &mut Recorder, direction: Direction, framing: h1::Framing) {
    if let h1::Framing::Length(n) = framing {
        rec.half(direction).expect(n.min(EXPECT_AT_MOST));
    }
}

/// The most of an announced body reserved before its bytes arrive.
const EXPECT_AT_MOST: u64 = 1 << 20;
