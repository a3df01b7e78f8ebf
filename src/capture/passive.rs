//! Passive capture: TCP segments in, [`Exchange`]s out. Shared by `mf import` (pcap files)
//! and `mf record --interface` (live sniffing).
//!
//! Each TCP flow is reassembled per direction ([`crate::decode::tcp`]), then recognised by
//! its content, not its port: an HTTP/2 preface, an HTTP/1 request line or status line. The
//! client is whoever sent the SYN, or failing that (a capture that began after the
//! handshake) whoever sent the request. HTTP/1 connections may switch to WebSocket or h2c
//! with an `Upgrade`. Holes in the capture end the exchange they hit, which is kept and
//! flagged in `error`, then the flow resynchronises on the next request line.
//!
//! Memory is bounded: a number of flows (the least recently active are evicted, counted),
//! out-of-order bytes per direction and in total, bytes held before a flow is recognised,
//! and stored body bytes per exchange.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

use super::packet::Segment;
use crate::decode::{grpc, h1, h2, tcp, ws};
use crate::model::{
    trace_id_from_traceparent, Body, Direction, ErrorKind, Exchange, ExchangeError, ExchangeSink,
    Header, HeaderList, MessageKind, Protocol, Request, Response, StreamMessage,
};

/// Limits of the passive decoder.
#[derive(Clone, Debug)]
pub struct Config {
    /// Body bytes stored per message (the rest is counted, the body flagged truncated).
    pub max_body: usize,
    /// Flows tracked at once; beyond, the least recently active are evicted.
    pub max_flows: usize,
    /// Out-of-order bytes held per direction.
    pub max_flow_buffer: usize,
    /// Out-of-order bytes held over all flows.
    pub max_total_buffer: usize,
    /// Ports that are surely HTTP servers: decides the client side when content cannot.
    pub port_hints: Vec<u16>,
    /// First connection id handed out.
    pub first_connection_id: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_body: 64 * 1024 * 1024,
            max_flows: 100_000,
            max_flow_buffer: 4 * 1024 * 1024,
            max_total_buffer: 128 * 1024 * 1024,
            port_hints: Vec::new(),
            first_connection_id: 1,
        }
    }
}

/// What happened, for the summary and the warnings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub segments: u64,
    pub flows: u64,
    pub exchanges: u64,
    /// Exchanges stored with an `error` (hole, reset, missing half…).
    pub incomplete: u64,
    /// Gaps in a TCP stream (bytes never captured).
    pub holes: u64,
    pub retransmitted_bytes: u64,
    /// Segments whose payload the snaplen cut.
    pub cut_segments: u64,
    /// Flows evicted to bound memory.
    pub evicted_flows: u64,
    /// Flows with data that was neither HTTP/1, HTTP/2 nor an upgrade of them.
    pub unrecognised_flows: u64,
    /// Protocol errors that ended decoding of a flow.
    pub decode_errors: u64,
    /// Responses whose request was not captured.
    pub orphan_responses: u64,
}

type FlowKey = (SocketAddr, SocketAddr);

/// Bytes held per direction while a flow is not yet recognised.
const MAX_UNRECOGNISED: usize = 256 * 1024;

/// The passive decoder. Feed it segments in capture order; call [`Engine::finish`] at the end.
pub struct Engine {
    cfg: Config,
    sink: Arc<dyn ExchangeSink>,
    flows: HashMap<FlowKey, Flow>,
    next_conn: u64,
    total_buffered: usize,
    /// Counters so far.
    pub stats: Stats,
}

struct Flow {
    conn_id: u64,
    /// Endpoint of side 0 and side 1 (side 0 is the key's first address).
    addrs: [SocketAddr; 2],
    client: Option<usize>,
    reasm: [tcp::Reassembler; 2],
    closed: [bool; 2],
    reset: bool,
    app: App,
    /// Data seen before the flow was recognised.
    pre: [Vec<(i64, Bytes)>; 2],
    pre_len: [usize; 2],
    /// The flow lost bytes: look for the next request line instead of expecting one.
    resync: bool,
    next_seq: u32,
    last_ts: i64,
    buffered: usize,
}

enum App {
    Unknown,
    H1(Box<H1>),
    Ws(Box<Ws>),
    H2(Box<H2>),
    /// Not HTTP, or beyond repair: bytes are dropped.
    Ignored,
}

struct H1 {
    req: h1::Decoder,
    resp: h1::Decoder,
    /// The request being received.
    current: Option<Exchange>,
    /// Requests complete or in progress whose response has not ended, in order.
    pending: VecDeque<Exchange>,
    /// After a hole in the responses: drop bytes until a status line starts.
    skip_to_status: bool,
}

struct Ws {
    ex: Exchange,
    dec: [ws::Decoder; 2],
}

struct H2 {
    dec: [h2::Decoder; 2],
    streams: BTreeMap<u32, H2Stream>,
}

struct H2Stream {
    ex: Exchange,
    grpc: Option<[grpc::Decoder; 2]>,
}

impl Engine {
    /// A decoder writing finished exchanges to `sink`.
    pub fn new(cfg: Config, sink: Arc<dyn ExchangeSink>) -> Self {
        let next_conn = cfg.first_connection_id;
        Engine {
            cfg,
            sink,
            flows: HashMap::new(),
            next_conn,
            total_buffered: 0,
            stats: Stats::default(),
        }
    }

    /// Flows currently tracked.
    pub fn active_flows(&self) -> usize {
        self.flows.len()
    }

    /// Processes one TCP segment.
    pub fn segment(&mut self, seg: Segment) {
        self.stats.segments += 1;
        if seg.cut {
            self.stats.cut_segments += 1;
        }
        let key = if seg.src <= seg.dst {
            (seg.src, seg.dst)
        } else {
            (seg.dst, seg.src)
        };
        let side = usize::from(seg.src != key.0);
        if !self.flows.contains_key(&key) {
            if seg.payload.is_empty() && !seg.syn {
                // A bare ACK, FIN or RST of a flow already ended (or begun before the capture):
                // nothing to decode, and no flow state worth holding for it.
                return;
            }
            if self.flows.len() >= self.cfg.max_flows {
                self.evict_oldest();
            }
            self.stats.flows += 1;
            let conn_id = self.next_conn;
            self.next_conn += 1;
            let flow = Flow {
                conn_id,
                addrs: [key.0, key.1],
                client: None,
                reasm: [
                    tcp::Reassembler::new(self.cfg.max_flow_buffer),
                    tcp::Reassembler::new(self.cfg.max_flow_buffer),
                ],
                closed: [false; 2],
                reset: false,
                app: App::Unknown,
                pre: [Vec::new(), Vec::new()],
                pre_len: [0; 2],
                resync: false,
                next_seq: 0,
                last_ts: seg.ts_ns,
                buffered: 0,
            };
            self.flows.insert(key, flow);
        }
        let Some(mut flow) = self.flows.remove(&key) else {
            return;
        };
        flow.last_ts = seg.ts_ns;
        if seg.syn && flow.client.is_none() {
            flow.client = Some(if seg.ack { 1 - side } else { side });
        }
        let mut events = Vec::new();
        // A payload cut by the snaplen goes in as far as it was captured: the rest becomes a
        // hole when later bytes arrive, so nothing cut is ever glued to what follows it.
        let payload = seg.payload;
        let before = flow.reasm[side].retransmitted_bytes;
        flow.reasm[side].segment(
            seg.ts_ns,
            seg.seq,
            seg.syn,
            seg.fin,
            seg.rst,
            payload,
            &mut events,
        );
        self.stats.retransmitted_bytes += flow.reasm[side].retransmitted_bytes - before;
        let buffered = flow.reasm[0].buffered() + flow.reasm[1].buffered();
        self.total_buffered = self.total_buffered + buffered - flow.buffered;
        flow.buffered = buffered;
        if self.total_buffered > self.cfg.max_total_buffer {
            // Over the global budget: this flow gives up on its holes now.
            flow.reasm[side].flush(&mut events);
            self.total_buffered -= flow.buffered;
            flow.buffered = flow.reasm[0].buffered() + flow.reasm[1].buffered();
            self.total_buffered += flow.buffered;
        }
        for ev in events {
            self.stream_event(&mut flow, side, ev);
        }
        if flow.closed[0] && flow.closed[1] || flow.reset {
            self.end_flow(flow);
        } else {
            self.flows.insert(key, flow);
        }
    }

    /// End of input: every flow is flushed, partial exchanges are stored flagged.
    pub fn finish(&mut self) {
        let keys: Vec<FlowKey> = self.flows.keys().copied().collect();
        for key in keys {
            if let Some(flow) = self.flows.remove(&key) {
                self.end_flow(flow);
            }
        }
    }

    /// Flushes flows idle since before `now_ns - idle_ns` (live capture housekeeping).
    pub fn expire_idle(&mut self, now_ns: i64, idle_ns: i64) {
        let keys: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| now_ns - f.last_ts > idle_ns)
            .map(|(k, _)| *k)
            .collect();
        for key in keys {
            if let Some(flow) = self.flows.remove(&key) {
                self.end_flow(flow);
            }
        }
    }

    fn evict_oldest(&mut self) {
        // Evict the least recently active eighth at once so that the scan is amortised.
        let mut ages: Vec<(i64, FlowKey)> =
            self.flows.iter().map(|(k, f)| (f.last_ts, *k)).collect();
        let n = (ages.len() / 8).max(1);
        ages.select_nth_unstable(n - 1);
        for (_, key) in ages.into_iter().take(n) {
            if let Some(flow) = self.flows.remove(&key) {
                self.stats.evicted_flows += 1;
                tracing::warn!(conn = flow.conn_id, "flow evicted to bound memory");
                self.end_flow(flow);
            }
        }
    }

    fn end_flow(&mut self, mut flow: Flow) {
        let mut events = Vec::new();
        for side in 0..2 {
            flow.reasm[side].flush(&mut events);
            for ev in events.drain(..) {
                self.stream_event(&mut flow, side, ev);
            }
        }
        self.total_buffered = self.total_buffered.saturating_sub(flow.buffered);
        if matches!(flow.app, App::Unknown) && (flow.pre_len[0] > 0 || flow.pre_len[1] > 0) {
            self.stats.unrecognised_flows += 1;
        }
        let (kind, error) = if flow.reset {
            (ErrorKind::UpstreamReset, "connection reset")
        } else {
            (ErrorKind::UpstreamReset, "connection ended")
        };
        self.close_app(&mut flow, kind, error);
    }

    fn stream_event(&mut self, flow: &mut Flow, side: usize, ev: tcp::Event) {
        match ev {
            tcp::Event::Data { at_ns, data } => self.data(flow, side, at_ns, data),
            tcp::Event::Gap { len } => {
                self.stats.holes += 1;
                tracing::warn!(conn = flow.conn_id, len, "bytes missing from the capture");
                let server_side = flow.client.is_some_and(|c| c != side);
                if let (true, App::H1(h)) = (server_side, &mut flow.app) {
                    // Only the response being received is lost: requests already seen keep
                    // their place, and the response decoder restarts at the next status line.
                    let lost = h.pending.pop_front();
                    h.resp = h1::Decoder::new(h1::Role::Response);
                    for ex in &h.pending {
                        h.resp.push_request_method(&ex.request.method);
                    }
                    h.skip_to_status = true;
                    if let Some(mut ex) = lost {
                        ex.error = Some(ExchangeError::new(
                            ErrorKind::CaptureHole,
                            format!("capture hole: {len} bytes of the response missing"),
                        ));
                        self.emit(ex);
                    }
                    return;
                }
                self.close_app(
                    flow,
                    ErrorKind::CaptureHole,
                    &format!("capture hole: {len} bytes missing"),
                );
                flow.app = App::Unknown;
                flow.pre = [Vec::new(), Vec::new()];
                flow.pre_len = [0; 2];
                flow.resync = true;
            }
            tcp::Event::Fin | tcp::Event::Rst => {
                flow.closed[side] = true;
                if matches!(ev, tcp::Event::Rst) {
                    flow.reset = true;
                }
                self.side_closed(flow, side);
            }
        }
    }

    fn data(&mut self, flow: &mut Flow, side: usize, at: i64, data: Bytes) {
        if matches!(flow.app, App::Unknown) {
            flow.pre_len[side] += data.len();
            flow.pre[side].push((at, data));
            self.classify(flow);
            return;
        }
        self.app_data(flow, side, at, &data);
    }

    /// Looks at the bytes held so far and decides what the flow is.
    fn classify(&mut self, flow: &mut Flow) {
        for side in 0..2 {
            let head = contiguous_prefix(&flow.pre[side], 4096);
            if head.is_empty() {
                continue;
            }
            if head.len() < h2::PREFACE.len() && h2::PREFACE.starts_with(&head) {
                return; // maybe a preface: wait for more
            }
            let found = if head.starts_with(h2::PREFACE) {
                Some((side, Kind::H2, 0))
            } else if looks_like_h2_frames(&head) {
                // HTTP/2 joined after the preface: the client is who sent the SYN, or who
                // talks to a hinted port, or else the side with the higher (ephemeral) port.
                let client = flow
                    .client
                    .unwrap_or_else(|| guess_client(&self.cfg.port_hints, &flow.addrs));
                Some((client, Kind::H2, 0))
            } else if looks_like_request(&head) {
                Some((side, Kind::H1, 0))
            } else if head.starts_with(b"HTTP/1.") {
                Some((1 - side, Kind::H1, 0))
            } else if flow.resync || flow.client.is_none_or(|c| c == side) {
                // Resynchronise: a request line after some line end.
                find_request_line(&head).map(|at| (side, Kind::H1, at))
            } else {
                None
            };
            if let Some((client, kind, skip)) = found {
                flow.client = Some(client);
                if skip > 0 {
                    drop_prefix(&mut flow.pre[side], skip);
                }
                if flow.resync {
                    // Server bytes before the resync point belong to a response already lost.
                    let server = 1 - client;
                    let sh = contiguous_prefix(&flow.pre[server], 4096);
                    if !sh.starts_with(b"HTTP/1.") {
                        flow.pre[server].clear();
                    }
                }
                flow.app = match kind {
                    Kind::H1 => App::H1(Box::new(H1::new())),
                    Kind::H2 => App::H2(Box::new(H2::new())),
                };
                flow.resync = false;
                let pre = std::mem::take(&mut flow.pre);
                flow.pre_len = [0; 2];
                // The client's bytes first, so that a response decoder knows the methods.
                for s in [client, 1 - client] {
                    for (at, data) in &pre[s] {
                        self.app_data(flow, s, *at, data);
                    }
                }
                for s in 0..2 {
                    if flow.closed[s] {
                        self.side_closed(flow, s);
                    }
                }
                return;
            }
        }
        if flow.pre_len[0] > MAX_UNRECOGNISED || flow.pre_len[1] > MAX_UNRECOGNISED {
            self.stats.unrecognised_flows += 1;
            flow.app = App::Ignored;
            flow.pre = [Vec::new(), Vec::new()];
        }
    }

    fn app_data(&mut self, flow: &mut Flow, side: usize, at: i64, data: &[u8]) {
        let Some(client) = flow.client else { return };
        let dir = if side == client {
            Direction::ClientToServer
        } else {
            Direction::ServerToClient
        };
        let mut app = std::mem::replace(&mut flow.app, App::Ignored);
        let next = match &mut app {
            App::H1(h) => self.h1_data(flow, h, dir, at, data),
            App::Ws(w) => self.ws_data(flow, w, dir, at, data),
            App::H2(h) => self.h2_data(flow, h, dir, at, data),
            App::Unknown | App::Ignored => None,
        };
        flow.app = next.unwrap_or(app);
    }

    fn side_closed(&mut self, flow: &mut Flow, side: usize) {
        let Some(client) = flow.client else { return };
        if side == client {
            return;
        }
        // The server closed: a close-delimited response body ends here (RFC 9112 §6.3 rule 8).
        let mut app = std::mem::replace(&mut flow.app, App::Ignored);
        let mut next = None;
        if let App::H1(h) = &mut app {
            let at = flow.last_ts;
            while let Ok(Some(ev)) = h.resp.finish() {
                if let Some(n) = self.h1_response_event(flow, h, at, ev) {
                    next = Some(n);
                    break;
                }
            }
        }
        flow.app = next.unwrap_or(app);
    }

    /// Stores whatever the flow's decoder still holds, flagged with `error`.
    fn close_app(&mut self, flow: &mut Flow, kind: ErrorKind, error: &str) {
        match std::mem::replace(&mut flow.app, App::Ignored) {
            App::H1(mut h) => {
                for mut ex in h.pending.drain(..).chain(h.current.take()) {
                    if ex.response.is_none() {
                        ex.error.get_or_insert_with(|| {
                            ExchangeError::new(kind, format!("no response ({error})"))
                        });
                    } else {
                        ex.error.get_or_insert_with(|| {
                            ExchangeError::new(kind, format!("response incomplete ({error})"))
                        });
                    }
                    self.emit(ex);
                }
            }
            App::Ws(w) => {
                let mut ex = w.ex;
                if kind == ErrorKind::CaptureHole {
                    ex.error = Some(ExchangeError::new(kind, error));
                }
                self.emit(ex);
            }
            App::H2(mut h) => {
                for (_, st) in std::mem::take(&mut h.streams) {
                    let mut ex = st.ex;
                    if ex.response.is_none() || ex.timings.response_end_ns.is_none() {
                        ex.error.get_or_insert_with(|| {
                            ExchangeError::new(kind, format!("stream incomplete ({error})"))
                        });
                    }
                    self.emit(ex);
                }
            }
            App::Unknown | App::Ignored => {}
        }
    }

    fn emit(&mut self, mut ex: Exchange) {
        if ex.request.method.is_empty() && ex.response.is_none() {
            return;
        }
        if ex.trace_id.is_none() {
            ex.trace_id = ex
                .request
                .headers
                .header("traceparent")
                .and_then(trace_id_from_traceparent);
        }
        if ex.error.is_some() {
            self.stats.incomplete += 1;
        }
        self.stats.exchanges += 1;
        self.sink.record(ex);
    }

    fn new_exchange(&self, flow: &mut Flow, at: i64, protocol: Protocol) -> Exchange {
        let client = flow.client.unwrap_or(0);
        let seq = flow.next_seq;
        flow.next_seq += 1;
        Exchange {
            connection_id: flow.conn_id,
            seq,
            protocol: Some(protocol),
            started_at_ns: at,
            client_addr: Some(flow.addrs[client].to_string()),
            server_addr: Some(flow.addrs[1 - client].to_string()),
            scheme: "http".into(),
            ..Exchange::default()
        }
    }

    // ---- HTTP/1 ----

    fn h1_data(
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
        for mut ex in h.pending.drain(..).chain(h.current.take()) {
            ex.error.get_or_insert_with(|| {
                ExchangeError::new(
                    ErrorKind::MalformedResponse,
                    format!("undecodable HTTP/1: {error}"),
                )
            });
            self.emit(ex);
        }
        App::Ignored
    }

    fn h1_request_event(&mut self, flow: &mut Flow, h: &mut H1, at: i64, ev: h1::Event) {
        match ev {
            h1::Event::RequestHead(head) => {
                let proto = if head.minor == 0 {
                    Protocol::Http10
                } else {
                    Protocol::Http11
                };
                let mut ex = self.new_exchange(flow, at, proto);
                ex.authority = head.headers.header_str("host").unwrap_or_default();
                h.resp.push_request_method(&head.method);
                ex.request = Request {
                    method: head.method,
                    target: head.target,
                    version: format!("HTTP/1.{}", head.minor),
                    headers: head.headers,
                    ..Request::default()
                };
                if let Some(prev) = h.current.replace(ex) {
                    h.pending.push_back(prev);
                }
            }
            h1::Event::Data(d) => {
                if let Some(ex) = &mut h.current {
                    append(&mut ex.request.body, &d, self.cfg.max_body);
                }
            }
            h1::Event::Trailers(t) => {
                if let Some(ex) = &mut h.current {
                    ex.request.trailers = t;
                }
            }
            h1::Event::End => {
                if let Some(mut ex) = h.current.take() {
                    ex.timings.request_end_ns = Some(elapsed(ex.started_at_ns, at));
                    h.pending.push_back(ex);
                }
            }
            h1::Event::Upgraded | h1::Event::ResponseHead(_) => {}
        }
    }

    /// Returns the flow's next protocol when the response switched it.
    fn h1_response_event(
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
                let Some(ex) = h.pending.front_mut() else {
                    self.stats.orphan_responses += 1;
                    let mut ex = self.new_exchange(
                        flow,
                        at,
                        if head.minor == 0 {
                            Protocol::Http10
                        } else {
                            Protocol::Http11
                        },
                    );
                    ex.error = Some(ExchangeError::new(
                        ErrorKind::CaptureHole,
                        "request not captured",
                    ));
                    h.pending.push_back(ex);
                    return self.h1_response_event(flow, h, at, h1::Event::ResponseHead(head));
                };
                ex.timings.response_first_byte_ns = Some(elapsed(ex.started_at_ns, at));
                ex.response = Some(Response {
                    status: head.status,
                    reason: head.reason,
                    version: format!("HTTP/1.{}", head.minor),
                    headers: head.headers,
                    ..Response::default()
                });
                None
            }
            h1::Event::Data(d) => {
                if let Some(resp) = h.pending.front_mut().and_then(|e| e.response.as_mut()) {
                    append(&mut resp.body, &d, self.cfg.max_body);
                }
                None
            }
            h1::Event::Trailers(t) => {
                if let Some(resp) = h.pending.front_mut().and_then(|e| e.response.as_mut()) {
                    resp.trailers = t;
                }
                None
            }
            h1::Event::End => {
                let switching = h
                    .pending
                    .front()
                    .and_then(|e| e.response.as_ref())
                    .is_some_and(|r| r.status == 101);
                if switching {
                    return None; // kept for the Upgraded event
                }
                if let Some(mut ex) = h.pending.pop_front() {
                    ex.timings.response_end_ns = Some(elapsed(ex.started_at_ns, at));
                    self.emit(ex);
                }
                None
            }
            h1::Event::Upgraded => {
                let mut ex = h.pending.pop_front()?;
                ex.timings.response_end_ns = Some(elapsed(ex.started_at_ns, at));
                let upgrade = ex
                    .request
                    .headers
                    .header_str("upgrade")
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let client_rest = h.req.take_buffered();
                let server_rest = h.resp.take_buffered();
                let mut next = if upgrade.contains("websocket") {
                    ex.protocol = Some(Protocol::WebSocket);
                    App::Ws(Box::new(Ws {
                        ex,
                        dec: [ws::Decoder::new(), ws::Decoder::new()],
                    }))
                } else if upgrade.contains("h2c") {
                    // RFC 7540 §3.2: the upgrade request becomes stream 1; its response comes
                    // as HTTP/2 frames after the server's preface.
                    ex.protocol = Some(Protocol::H2);
                    ex.response = None;
                    ex.timings.response_first_byte_ns = None;
                    ex.timings.response_end_ns = None;
                    let mut h2 = H2::new();
                    h2.streams.insert(1, H2Stream { ex, grpc: None });
                    App::H2(Box::new(h2))
                } else {
                    // A tunnel to something mf does not decode (CONNECT, other upgrades).
                    self.emit(ex);
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
            h1::Event::RequestHead(_) => None,
        }
    }

    // ---- WebSocket ----

    fn ws_data(
        &mut self,
        flow: &mut Flow,
        w: &mut Ws,
        dir: Direction,
        at: i64,
        data: &[u8],
    ) -> Option<App> {
        let i = usize::from(dir == Direction::ServerToClient);
        if let Err(e) = w.dec[i].feed(data) {
            self.stats.decode_errors += 1;
            tracing::warn!(conn = flow.conn_id, error = %e, "WebSocket decoding stopped");
            let mut ex = std::mem::take(&mut w.ex);
            ex.error = Some(ExchangeError::new(
                ErrorKind::StreamError,
                format!("undecodable WebSocket frames: {e}"),
            ));
            self.emit(ex);
            return Some(App::Ignored);
        }
        while let Some(frame) = w.dec[i].poll() {
            let offset_ns = elapsed(w.ex.started_at_ns, at);
            w.ex.messages.push(StreamMessage {
                direction: dir,
                offset_ns,
                kind: MessageKind::WebSocket {
                    opcode: frame.opcode,
                    fin: frame.fin,
                },
                data: frame.payload,
            });
        }
        None
    }

    // ---- HTTP/2 ----

    fn h2_data(
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
            for (_, st) in std::mem::take(&mut h.streams) {
                let mut ex = st.ex;
                ex.error.get_or_insert_with(|| {
                    ExchangeError::new(ErrorKind::MalformedResponse, "undecodable HTTP/2 frames")
                });
                self.emit(ex);
            }
            return Some(App::Ignored);
        }
        None
    }

    fn h2_event(&mut self, flow: &mut Flow, h: &mut H2, dir: Direction, at: i64, ev: h2::Event) {
        let max_body = self.cfg.max_body;
        match ev {
            h2::Event::Headers {
                stream,
                headers,
                end_stream,
                damaged,
            } => {
                if let std::collections::btree_map::Entry::Vacant(slot) = h.streams.entry(stream) {
                    let mut ex = self.new_exchange(flow, at, Protocol::H2);
                    if dir == Direction::ServerToClient {
                        ex.error = Some(ExchangeError::new(
                            ErrorKind::CaptureHole,
                            "request not captured",
                        ));
                        self.stats.orphan_responses += 1;
                    }
                    slot.insert(H2Stream { ex, grpc: None });
                }
                let Some(st) = h.streams.get_mut(&stream) else {
                    return;
                };
                if damaged {
                    st.ex.error.get_or_insert_with(|| {
                        ExchangeError::new(
                            ErrorKind::CaptureHole,
                            "header fields lost: HPACK state not captured (capture began mid-connection)",
                        )
                    });
                }
                let (pseudo, regular): (Vec<Header>, Vec<Header>) =
                    headers.into_iter().partition(|f| f.name.starts_with(':'));
                let get = |n: &str| {
                    pseudo
                        .iter()
                        .find(|f| f.name == n)
                        .map(|f| f.value_str().into_owned())
                };
                match dir {
                    Direction::ClientToServer if st.ex.request.method.is_empty() => {
                        st.ex.request.method = get(":method").unwrap_or_default();
                        st.ex.request.target = get(":path").unwrap_or_default();
                        st.ex.request.version = "HTTP/2".into();
                        st.ex.authority = get(":authority")
                            .or_else(|| regular.header_str("host"))
                            .unwrap_or_default();
                        if let Some(s) = get(":scheme") {
                            st.ex.scheme = s;
                        }
                        if regular
                            .header_str("content-type")
                            .is_some_and(|c| c.starts_with("application/grpc"))
                        {
                            st.ex.protocol = Some(Protocol::Grpc);
                            st.grpc = Some([grpc::Decoder::new(), grpc::Decoder::new()]);
                        }
                        st.ex.request.headers = regular;
                    }
                    Direction::ClientToServer => st.ex.request.trailers = regular,
                    Direction::ServerToClient => {
                        let status = get(":status").and_then(|s| s.parse::<u16>().ok());
                        match (&mut st.ex.response, status) {
                            (_, Some(s)) if (100..200).contains(&s) => {}
                            (None, _) => {
                                st.ex.timings.response_first_byte_ns =
                                    Some(elapsed(st.ex.started_at_ns, at));
                                if st.grpc.is_none()
                                    && regular
                                        .header_str("content-type")
                                        .is_some_and(|c| c.starts_with("application/grpc"))
                                {
                                    st.ex.protocol = Some(Protocol::Grpc);
                                    st.grpc = Some([grpc::Decoder::new(), grpc::Decoder::new()]);
                                }
                                st.ex.response = Some(Response {
                                    status: status.unwrap_or(0),
                                    version: "HTTP/2".into(),
                                    headers: regular,
                                    ..Response::default()
                                });
                            }
                            (Some(r), _) => r.trailers = regular,
                        }
                    }
                }
                if end_stream {
                    self.h2_end(h, stream, dir, at);
                }
            }
            h2::Event::Data {
                stream,
                data,
                end_stream,
            } => {
                let Some(st) = h.streams.get_mut(&stream) else {
                    // DATA of a stream opened before the capture: nothing to attach it to.
                    return;
                };
                let i = usize::from(dir == Direction::ServerToClient);
                if let Some(g) = &mut st.grpc {
                    if g[i].feed(&data).is_err() {
                        st.ex.error.get_or_insert_with(|| {
                            ExchangeError::new(
                                ErrorKind::StreamError,
                                "undecodable gRPC message framing",
                            )
                        });
                    }
                    while let Some(m) = g[i].poll() {
                        let offset_ns = elapsed(st.ex.started_at_ns, at);
                        st.ex.messages.push(StreamMessage {
                            direction: dir,
                            offset_ns,
                            kind: MessageKind::Grpc {
                                compressed: m.compressed,
                            },
                            data: m.data,
                        });
                    }
                } else {
                    let body = match dir {
                        Direction::ClientToServer => Some(&mut st.ex.request.body),
                        Direction::ServerToClient => st.ex.response.as_mut().map(|r| &mut r.body),
                    };
                    if let Some(body) = body {
                        append(body, &data, max_body);
                    }
                }
                if end_stream {
                    self.h2_end(h, stream, dir, at);
                }
            }
            h2::Event::Reset { stream, code } => {
                if let Some(mut st) = h.streams.remove(&stream) {
                    if st.ex.timings.response_end_ns.is_none() {
                        st.ex.error = Some(ExchangeError::new(
                            ErrorKind::StreamError,
                            format!("stream reset (error code {code})"),
                        ));
                    }
                    self.emit(st.ex);
                }
            }
            h2::Event::GoAway { .. } => {}
        }
    }

    fn h2_end(&mut self, h: &mut H2, stream: u32, dir: Direction, at: i64) {
        let Some(st) = h.streams.get_mut(&stream) else {
            return;
        };
        match dir {
            Direction::ClientToServer => {
                st.ex.timings.request_end_ns = Some(elapsed(st.ex.started_at_ns, at))
            }
            Direction::ServerToClient => {
                st.ex.timings.response_end_ns = Some(elapsed(st.ex.started_at_ns, at));
                if let Some(st) = h.streams.remove(&stream) {
                    self.emit(st.ex);
                }
            }
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    H1,
    H2,
}

impl H1 {
    fn new() -> Self {
        H1 {
            req: h1::Decoder::new(h1::Role::Request),
            resp: h1::Decoder::new(h1::Role::Response),
            current: None,
            pending: VecDeque::new(),
            skip_to_status: false,
        }
    }
}

impl H2 {
    fn new() -> Self {
        H2 {
            dec: [h2::Decoder::new(true), h2::Decoder::new(false)],
            streams: BTreeMap::new(),
        }
    }
}

fn elapsed(start: i64, at: i64) -> u64 {
    u64::try_from(at.saturating_sub(start)).unwrap_or(0)
}

fn append(body: &mut Body, data: &[u8], max: usize) {
    body.size += data.len() as u64;
    let room = max.saturating_sub(body.data.len());
    if data.len() > room {
        body.truncated = true;
    }
    let take = data.len().min(room);
    if take > 0 {
        let mut b = BytesMut::from(std::mem::take(&mut body.data));
        b.extend_from_slice(&data[..take]);
        body.data = b.freeze();
    }
}

/// The first `max` bytes held for one direction.
fn contiguous_prefix(chunks: &[(i64, Bytes)], max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for (_, c) in chunks {
        let take = c.len().min(max - out.len());
        out.extend_from_slice(&c[..take]);
        if out.len() >= max {
            break;
        }
    }
    out
}

fn drop_prefix(chunks: &mut Vec<(i64, Bytes)>, mut n: usize) {
    let mut out = Vec::new();
    for (at, c) in chunks.drain(..) {
        if n >= c.len() {
            n -= c.len();
        } else {
            out.push((at, c.slice(n..)));
            n = 0;
        }
    }
    *chunks = out;
}

/// Which side is the client when nothing in the bytes says: a `--port` hint names the
/// server; otherwise the higher port is taken as the client's ephemeral one.
fn guess_client(hints: &[u16], addrs: &[SocketAddr; 2]) -> usize {
    if hints.contains(&addrs[0].port()) {
        1
    } else if hints.contains(&addrs[1].port()) {
        0
    } else {
        usize::from(addrs[1].port() > addrs[0].port())
    }
}

/// At least two whole, plausible HTTP/2 frames back to back (known type, sane length,
/// stream 0 only for connection frames), or a SETTINGS frame alone.
fn looks_like_h2_frames(b: &[u8]) -> bool {
    let mut at = 0;
    let mut frames = 0;
    while b.len() >= at + 9 {
        let len = usize::from(b[at]) << 16 | usize::from(b[at + 1]) << 8 | usize::from(b[at + 2]);
        let kind = b[at + 3];
        let stream = u32::from_be_bytes([b[at + 5], b[at + 6], b[at + 7], b[at + 8]]);
        let connection_frame = matches!(kind, 4 | 6 | 7);
        if kind > 9
            || len > 1 << 20
            || stream & 0x8000_0000 != 0
            || (stream == 0) != (connection_frame || kind == 8) && kind != 8
        {
            return false;
        }
        if kind == 4 && stream == 0 && len % 6 == 0 && frames == 0 && b.len() >= at + 9 + len {
            return true;
        }
        at += 9 + len;
        if at > b.len() {
            return frames >= 1;
        }
        frames += 1;
        if frames >= 2 {
            return true;
        }
    }
    false
}

const METHODS: [&[u8]; 9] = [
    b"GET", b"POST", b"PUT", b"DELETE", b"HEAD", b"OPTIONS", b"PATCH", b"CONNECT", b"TRACE",
];

/// `METHOD SP target SP HTTP/1.x` at the start (the line may still be incomplete).
fn looks_like_request(b: &[u8]) -> bool {
    let Some(sp) = b.iter().take(16).position(|c| *c == b' ') else {
        return false;
    };
    let method = &b[..sp];
    if method.is_empty()
        || !method
            .iter()
            .all(|c| c.is_ascii_uppercase() || *c == b'-' || *c == b'_')
    {
        return false;
    }
    let line_end = b.iter().position(|c| *c == b'\n').unwrap_or(b.len());
    let line = &b[..line_end];
    if line_end == b.len() {
        // Incomplete line: a known method is enough to wait for the rest.
        return METHODS.contains(&method) && !line.contains(&0);
    }
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    line.len() > sp + 9 && line[line.len() - 8..].starts_with(b"HTTP/1.")
}

/// Where the first complete request line after a line end starts.
fn find_request_line(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while let Some(p) = b[i..].iter().position(|c| *c == b'\n') {
        let start = i + p + 1;
        let rest = &b[start..];
        if rest.contains(&b'\n') && looks_like_request(rest) {
            return Some(start);
        }
        i = start;
    }
    None
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::decode::h2::{encode_frame, encode_headers};

    #[derive(Default)]
    struct Collect(Mutex<Vec<Exchange>>);
    impl ExchangeSink for Collect {
        fn record(&self, exchange: Exchange) {
            self.0.lock().expect("lock").push(exchange);
        }
    }

    fn seg(src: &str, dst: &str, seq: u32, payload: &[u8]) -> Segment {
        Segment {
            ts_ns: 1_000 + i64::from(seq),
            src: src.parse().expect("addr"),
            dst: dst.parse().expect("addr"),
            seq,
            syn: false,
            ack: true,
            fin: false,
            rst: false,
            payload: Bytes::copy_from_slice(payload),
            cut: false,
        }
    }

    #[test]
    fn h2_joined_after_the_preface_is_recognised_by_its_frames() {
        let sink = Arc::new(Collect::default());
        let mut engine = Engine::new(Config::default(), sink.clone());
        let (mut ce, mut se) = (loona_hpack::Encoder::new(), loona_hpack::Encoder::new());
        let mut c = Vec::new();
        encode_frame(&mut c, 8, 0, 0, &[0, 0, 1, 0]); // WINDOW_UPDATE
        let block = encode_headers(
            &mut ce,
            &[
                (b":method", b"GET"),
                (b":path", b"/late"),
                (b":scheme", b"http"),
                (b":authority", b"svc"),
            ],
        );
        encode_frame(&mut c, 1, 0x5, 7, &block);
        let mut s = Vec::new();
        let block = encode_headers(&mut se, &[(b":status", b"200")]);
        encode_frame(&mut s, 1, 0x4, 7, &block);
        encode_frame(&mut s, 0, 0x1, 7, b"done");
        engine.segment(seg("10.0.0.1:51000", "10.0.0.2:8080", 100, &c));
        engine.segment(seg("10.0.0.2:8080", "10.0.0.1:51000", 900, &s));
        engine.finish();
        let got = sink.0.lock().expect("lock");
        assert_eq!(got.len(), 1, "{got:?}");
        assert_eq!(
            (
                got[0].request.method.as_str(),
                got[0].request.target.as_str()
            ),
            ("GET", "/late")
        );
        assert_eq!(
            got[0]
                .response
                .as_ref()
                .map(|r| (r.status, r.body.data.clone())),
            Some((200, Bytes::from_static(b"done")))
        );
        assert_eq!(got[0].client_addr.as_deref(), Some("10.0.0.1:51000"));
    }

    #[test]
    fn a_flood_of_half_open_flows_is_bounded_and_counted() {
        let sink = Arc::new(Collect::default());
        let cfg = Config {
            max_flows: 16,
            ..Config::default()
        };
        let mut engine = Engine::new(cfg, sink.clone());
        for i in 0..1000u32 {
            let src = format!("10.9.{}.{}:{}", i / 250, i % 250, 10_000 + i);
            // A request head that never completes: every flow would wait forever.
            engine.segment(seg(
                &src,
                "10.0.0.2:80",
                1,
                b"GET /x HTTP/1.1\r\nHost: a\r\n",
            ));
            assert!(engine.active_flows() <= 16);
        }
        assert!(engine.stats.evicted_flows >= 1000 - 16);
        engine.finish();
        assert_eq!(engine.active_flows(), 0);
    }
}
