//! HTTP/1 flows of passive capture: requests and responses paired in order (pipelining
//! included), a hole in the responses dropping only the response it hit, and upgrades to
//! WebSocket or h2c handing the flow to those decoders.

use std::collections::VecDeque;

use super::h2::H2;
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
    /// After a hole in the responses: drop bytes until a status line starts.
    pub skip_to_status: bool,
}

impl H1 {
    pub(super) fn new() -> Self {
        H1 {
            req: h1::Decoder::new(h1::Role::Request),
            resp: h1::Decoder::new(h1::Role::Response),
            current: None,
            pending: VecDeque::new(),
            skip_to_status: false,
        }
    }

    /// A hole in the server's bytes: the response being received is lost (returned), the
    /// requests already seen keep their place and the decoder restarts at a status line.
    pub(super) fn response_hole(&mut self) -> Option<Recorder> {
        let lost = self.pending.pop_front();
        self.resp = h1::Decoder::new(h1::Role::Response);
        for rec in &self.pending {
            self.resp
                .push_request_method(&rec.exchange().request.method);
        }
        self.skip_to_status = true;
        lost
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
        match dir {
            Direction::ClientToServer => {
                h.req.feed(data);
                loop {
                    match h.req.poll() {
                        Ok(Some(ev)) => self.h1_request_event(flow, h, at, ev),
                        Ok(None) => break,
                        Err(e) => return Some(self.h1_failed(flow, h, &e.to_string())),
                    }
                }
            }
            Direction::ServerToClient => {
                let mut data = data;
                if h.skip_to_status {
                    let start = (0..data.len()).find(|&i| {
                        (i == 0 || data[i - 1] == b'\n') && data[i..].starts_with(b"HTTP/1.")
                    });
                    data = &data[start?..];
                    h.skip_to_status = false;
                }
                h.resp.feed(data);
                loop {
                    match h.resp.poll() {
                        Ok(Some(ev)) => {
                            if let Some(next) = self.h1_response_event(flow, h, at, ev) {
                                return Some(next);
                            }
                        }
                        Ok(None) => break,
                        Err(e) => return Some(self.h1_failed(flow, h, &e.to_string())),
                    }
                }
            }
        }
        None
    }

    fn h1_failed(&mut self, flow: &mut Flow, h: &mut H1, error: &str) -> App {
        self.stats.decode_errors += 1;
        tracing::warn!(conn = flow.conn_id, error, "HTTP/1 decoding stopped");
        for mut rec in h.pending.drain(..).chain(h.current.take()) {
            rec.fail(ExchangeError::new(
                ErrorKind::MalformedResponse,
                format!("undecodable HTTP/1: {error}"),
            ));
            self.emit(rec);
        }
        App::Ignored
    }

    fn h1_request_event(&mut self, flow: &mut Flow, h: &mut H1, at: i64, ev: h1::Event) {
        match ev {
            h1::Event::RequestHead(head) => {
                let mut rec = self.new_recorder(flow, at, protocol(head.minor));
                rec.exchange_mut().authority = head.headers.header_str("host").unwrap_or_default();
                h.resp.push_request_method(&head.method);
                rec.request_head(
                    head.method,
                    head.target,
                    format!("HTTP/1.{}", head.minor),
                    head.headers,
                );
                if let Some(prev) = h.current.replace(rec) {
                    h.pending.push_back(prev);
                }
            }
            h1::Event::Data(d) => {
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
                h.req.resolve_upgrade(head.status == 101);
                if h.pending.is_empty() {
                    // The server answers before the request ended (or it was never captured).
                    if let Some(cur) = h.current.take() {
                        h.pending.push_back(cur);
                    }
                }
                let Some(rec) = h.pending.front_mut() else {
                    self.stats.orphan_responses += 1;
                    let mut rec = self.new_recorder(flow, at, protocol(head.minor));
                    rec.fail(ExchangeError::new(
                        ErrorKind::CaptureHole,
                        "request not captured",
                    ));
                    h.pending.push_back(rec);
                    return self.h1_response_event(flow, h, at, h1::Event::ResponseHead(head));
                };
                rec.response_head(
                    at,
                    head.status,
                    head.reason,
                    format!("HTTP/1.{}", head.minor),
                    head.headers,
                );
                None
            }
            h1::Event::Data(d) => {
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
                let switching = h
                    .pending
                    .front()
                    .and_then(|r| r.exchange().response.as_ref())
                    .is_some_and(|r| r.status == 101);
                if switching {
                    return None; // kept for the Upgraded event
                }
                if let Some(mut rec) = h.pending.pop_front() {
                    rec.end(at, Direction::ServerToClient);
                    self.emit(rec);
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
        } else {
            // A tunnel to something mf does not decode (CONNECT, other upgrades).
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
