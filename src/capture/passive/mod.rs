//! Passive capture: TCP segments in, [`Exchange`]s out. Shared by `mf import` (pcap files)
//! and `mf record --interface` (live sniffing).
//!
//! Each TCP flow is reassembled per direction ([`crate::decode::tcp`]), then recognised by
//! its content, not its port: an HTTP/2 preface, an HTTP/1 request line or status line. The
//! client is whoever sent the SYN, or failing that (a capture that began after the
//! handshake) whoever sent the request. HTTP/1 may switch to WebSocket or h2c (`Upgrade`),
//! or open a `CONNECT` tunnel, decoded as a new flow. A capture hole costs at most the
//! exchange it hit (kept, flagged `capture_hole`): see `h1_holes`, and `h2` for HTTP/2.
//! A TLS flow is decrypted with the key log's secrets and its plaintext decoded like a
//! cleartext flow's (`tls`); without keys it is counted by SNI.
//!
//! Memory is bounded: a number of flows (the least recently active are evicted, counted),
//! out-of-order bytes per direction and in total, bytes held before a flow is recognised,
//! and, through the same [`Recorder`] budget as the proxy's, the body bytes and stream
//! message bytes stored per exchange.
//!
//! Files: this one tracks flows and recognises them; `recognise` and `resync` hold byte
//! tests; `h1` (+`h1_holes`), `h2`, `ws` turn decoder events into recorder events; `tls`
//! decrypts; `config` holds the limits and counters.
//!
//! Imports: `super::{packet, recorder}`, `decode`, `model`, `vocab`.

mod config;
mod flow_key;
mod h1;
mod h1_holes;
mod h2;
mod recognise;
mod resync;
mod tls;
mod ws;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

pub use self::config::{Config, Stats};
use self::h1::H1;
use self::h2::H2;
use self::recognise::{
    contiguous_prefix, drop_prefix, find_request_line, guess_client, looks_like_h2_frames,
    looks_like_request,
};
use self::tls::{Tls, TlsTags};
use self::ws::Ws;
use super::packet::Segment;
use super::recorder::{Limits, Recorder};
use crate::decode::{h2 as h2_frames, tcp, tls as tls_records};
use crate::model::{Direction, ErrorKind, ExchangeError, ExchangeSink, Protocol};

use self::flow_key::FlowKey;

/// Flows by address pair. Each segment looks its flow up and puts it back: SipHash (the std
/// default) over the two addresses showed as ~2% of an import, foldhash (seeded per
/// process) costs a fraction of it; boxing makes the move out and back a pointer's.
type Flows = HashMap<FlowKey, Box<Flow>, foldhash::fast::RandomState>;

/// Bytes held per direction while a flow is not yet recognised.
const MAX_UNRECOGNISED: usize = 256 * 1024;

/// The passive decoder. Feed it segments in capture order; call [`Engine::finish`] at the end.
pub struct Engine {
    cfg: Config,
    sink: Arc<dyn ExchangeSink>,
    flows: Flows,
    /// Reassembler events of the segment being processed (kept to reuse its allocation).
    events: Vec<tcp::Event>,
    next_conn: u64,
    total_buffered: usize,
    keys: tls::Keys,
    /// Counters so far.
    pub stats: Stats,
}

struct Flow {
    conn_id: u64,
    /// Endpoint of side 0 and side 1 (side 0 is the key's first address).
    addrs: [SocketAddr; 2],
    /// `addrs` as text, made once per flow: formatting them for every exchange was ~3% of
    /// an import of keep-alive traffic.
    shown: Option<[String; 2]>,
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
    /// Inside an answered `CONNECT`: its target, the authority of the inner exchanges.
    tunnel: Option<String>,
    /// Decrypted TLS: the exchanges inside are `https`, tagged with the SNI and version.
    tls: Option<TlsTags>,
    next_seq: u32,
    last_ts: i64,
    buffered: usize,
}

enum App {
    Unknown,
    H1(Box<H1>),
    Ws(Box<Ws>),
    H2(Box<H2>),
    /// TLS: decrypted with the key log when it has the keys, the plaintext decoded inside.
    Tls(Box<Tls>),
    /// Not HTTP, or beyond repair: bytes are dropped.
    Ignored,
}

impl Engine {
    /// A decoder writing finished exchanges to `sink`.
    pub fn new(cfg: Config, sink: Arc<dyn ExchangeSink>) -> Self {
        let next_conn = cfg.first_connection_id;
        Engine {
            cfg,
            sink,
            flows: Flows::default(),
            events: Vec::new(),
            next_conn,
            total_buffered: 0,
            keys: tls::Keys::default(),
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
        let key = FlowKey::of(seg.src, seg.dst);
        let side = usize::from(seg.src != key.0);
        let mut flow = match self.flows.remove(&key) {
            Some(flow) => flow,
            None => {
                if seg.payload.is_empty() && !seg.syn {
                    // A bare ACK, FIN or RST of a flow already ended (or begun before the
                    // capture): nothing to decode, and no flow state worth holding for it.
                    return;
                }
                if self.flows.len() >= self.cfg.max_flows {
                    self.evict_oldest();
                }
                self.stats.flows += 1;
                let conn_id = self.next_conn;
                self.next_conn += 1;
                Box::new(Flow {
                    conn_id,
                    addrs: [key.0, key.1],
                    shown: None,
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
                    tunnel: None,
                    tls: None,
                    next_seq: 0,
                    last_ts: seg.ts_ns,
                    buffered: 0,
                })
            }
        };
        flow.last_ts = seg.ts_ns;
        if seg.syn && flow.client.is_none() {
            flow.client = Some(if seg.ack { 1 - side } else { side });
        }
        let mut events = std::mem::take(&mut self.events);
        if seg.ack {
            // Bytes of the other direction this segment acknowledges but the capture never
            // showed are lost for good: the other side's decoders hear of the hole now.
            flow.reasm[1 - side].peer_acked(seg.ack_no, &mut events);
            for ev in events.drain(..) {
                self.stream_event(&mut flow, 1 - side, ev);
            }
        }
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
        for ev in events.drain(..) {
            self.stream_event(&mut flow, side, ev);
        }
        self.events = events;
        if (flow.closed[0] && flow.closed[1] || flow.reset) && !self.holds_for_keys(&flow) {
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

    fn end_flow(&mut self, mut flow: Box<Flow>) {
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
                if let (Some(client), App::H1(_) | App::H2(_) | App::Ws(_)) =
                    (flow.client, &flow.app)
                {
                    // HTTP/1, HTTP/2 and WebSocket recover in place: see `h1_holes`, `h2`
                    // and `ws`.
                    let dir = if side == client {
                        Direction::ClientToServer
                    } else {
                        Direction::ServerToClient
                    };
                    let mut app = std::mem::replace(&mut flow.app, App::Ignored);
                    match &mut app {
                        App::H1(h) => self.h1_gap(flow, h, dir, len),
                        App::H2(h) => self.h2_gap(flow, h, dir, len),
                        App::Ws(w) => self.ws_gap(flow, w, dir, len),
                        _ => {}
                    }
                    flow.app = app;
                    return;
                }
                // A TLS record layer cannot be rejoined after a hole: the rest is dropped.
                let tls = matches!(flow.app, App::Tls(_));
                self.close_app(
                    flow,
                    ErrorKind::CaptureHole,
                    &format!("capture hole: {len} bytes missing"),
                );
                if tls {
                    return;
                }
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
            if head.len() < h2_frames::PREFACE.len() && h2_frames::PREFACE.starts_with(&head) {
                return; // maybe a preface: wait for more
            }
            let found =
                if flow.tls.is_none() && !flow.resync && tls_records::starts_hello(&head, true) {
                    // A TLS hello (directly or through a tunnel); a ServerHello first means the
                    // capture missed the client's.
                    let client = if head[5] == 1 { side } else { 1 - side };
                    Some((client, Kind::Tls, 0))
                } else if head.starts_with(h2_frames::PREFACE) {
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
                    Kind::Tls => App::Tls(Box::new(Tls::new())),
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
            App::Tls(t) => {
                self.tls_data(flow, t, dir == Direction::ClientToServer, at, data);
                None
            }
            App::Unknown | App::Ignored => None,
        };
        flow.app = next.unwrap_or(app);
        if matches!(flow.app, App::Unknown) && (flow.pre_len[0] > 0 || flow.pre_len[1] > 0) {
            // A tunnel opened with bytes already behind its answer: recognise them now.
            self.classify(flow);
        }
    }

    fn side_closed(&mut self, flow: &mut Flow, side: usize) {
        let Some(client) = flow.client else { return };
        if side == client {
            return;
        }
        // The server closed: a close-delimited response body ends here (RFC 9112 §6.3 rule 8).
        let mut app = std::mem::replace(&mut flow.app, App::Ignored);
        let mut next = None;
        if let App::Tls(t) = &mut app {
            self.tls_side_closed(flow, t, side);
        }
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
                for mut rec in h.pending.drain(..).chain(h.current.take()) {
                    let request = &rec.exchange().request;
                    if request.method.eq_ignore_ascii_case("CONNECT")
                        && rec.exchange().response.is_none()
                    {
                        self.stats.unanswered_tunnels += 1;
                    }
                    let what = if rec.exchange().response.is_none() {
                        "no response"
                    } else {
                        "response incomplete"
                    };
                    rec.fail(ExchangeError::new(kind, format!("{what} ({error})")));
                    self.emit(rec);
                }
            }
            App::Ws(w) => {
                if let Some(mut rec) = w.rec {
                    if kind == ErrorKind::CaptureHole {
                        rec.fail(ExchangeError::new(kind, error));
                    }
                    self.emit(rec);
                }
            }
            App::H2(mut h) => {
                for (_, mut rec) in std::mem::take(&mut h.streams) {
                    if rec.exchange().response.is_none() || !rec.response_ended() {
                        rec.fail(ExchangeError::new(
                            kind,
                            format!("stream incomplete ({error})"),
                        ));
                    }
                    self.emit(rec);
                }
            }
            App::Tls(t) => self.tls_close(flow, t, kind, error),
            App::Unknown | App::Ignored => {}
        }
    }

    /// Stores a finished exchange; one with neither a request nor a response is nothing.
    fn emit(&mut self, rec: Recorder) {
        let mut ex = rec.finish();
        if let Some(outer) = ex.tags.get("tunnel") {
            // Inside a CONNECT tunnel the client asked for the tunnel's target: that is the
            // authority, whatever the inner Host or :authority says.
            ex.authority = outer.clone().into();
        }
        if ex.request.method.is_empty() && ex.response.is_none() {
            return;
        }
        if ex.authority.is_empty() {
            // Decrypted TLS without a Host: the name the client asked the TLS layer for.
            if let Some(sni) = ex.tags.get("sni") {
                ex.authority = sni.clone().into();
            }
        }
        if ex.error.is_some() {
            self.stats.incomplete += 1;
        }
        self.stats.exchanges += 1;
        self.sink.record(ex);
    }

    /// A recorder for the flow's next exchange, whose first byte came at `at`.
    fn new_recorder(&self, flow: &mut Flow, at: i64, protocol: Protocol) -> Recorder {
        let client = flow.client.unwrap_or(0);
        let seq = flow.next_seq;
        flow.next_seq += 1;
        let mut rec = Recorder::new(
            at,
            Limits {
                max_body: self.cfg.max_body,
            },
        );
        let ex = rec.exchange_mut();
        ex.connection_id = flow.conn_id;
        ex.seq = seq;
        ex.protocol = Some(protocol);
        let addrs = flow.addrs;
        let shown = flow
            .shown
            .get_or_insert_with(|| addrs.map(|a| a.to_string()));
        ex.client_addr = Some(shown[client].clone().into());
        ex.server_addr = Some((shown[1 - client].clone()).into());
        ex.scheme = "http".into();
        if let Some(outer) = &flow.tunnel {
            ex.tags.insert("tunnel".into(), outer.clone());
        }
        if let Some(tls) = &flow.tls {
            ex.scheme = "https".into();
            ex.tags.insert("tls".into(), tls.version.into());
            if let Some(sni) = &tls.sni {
                ex.tags.insert("sni".into(), sni.clone());
            }
        }
        rec
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    H1,
    H2,
    Tls,
}

#[cfg(test)]
mod tests;
