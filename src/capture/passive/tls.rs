//! TLS flows of passive capture: each direction's ciphertext goes through a
//! [`Decryptor`] with the engine's key log, and the plaintext into the same HTTP/1, HTTP/2
//! and WebSocket paths as a cleartext flow's bytes (the inner protocol recognised from
//! those bytes, so a TLS 1.3 ALPN hidden in EncryptedExtensions is not needed).
//!
//! A connection without its keys is counted by SNI; one whose record fails authentication
//! loses that record's bytes as if the capture had a hole there.

use std::collections::HashSet;

use bytes::Bytes;

use super::{App, Engine, Flow, FlowKey};
use crate::decode::tcp;
use crate::decode::tls::{Decryptor, KeyLog, Plain, Status};
use crate::model::ErrorKind;

/// A TLS flow: its decryptor and the application decoder of the plaintext inside.
pub(super) struct Tls {
    dec: Decryptor,
    inner: App,
}

/// What exchanges of a decrypted flow are tagged with.
pub(super) struct TlsTags {
    pub sni: Option<String>,
    pub version: &'static str,
}

/// The key log and what was matched against it.
#[derive(Default)]
pub(super) struct Keys {
    log: KeyLog,
    used: HashSet<[u8; 32]>,
    /// A connection began waiting for keys since [`Engine::take_key_request`] last said.
    requested: bool,
    /// Closed connections still waiting for keys are kept (until idle) for a key log that
    /// is still being written.
    hold: bool,
}

impl Tls {
    pub(super) fn new() -> Self {
        Tls {
            dec: Decryptor::new(),
            inner: App::Unknown,
        }
    }
}

impl Engine {
    /// Adds key log lines (a file's, or a pcapng Decryption Secrets Block's) and retries the
    /// connections that were waiting for keys.
    pub fn add_key_log(&mut self, text: &[u8]) {
        self.keys.log.add(text);
        self.stats.keylog_sessions = self.keys.log.sessions() as u64;
        self.stats.keylog_garbage_lines = self.keys.log.garbage_lines;
        let waiting: Vec<FlowKey> = self
            .flows
            .iter()
            .filter(|(_, f)| matches!(&f.app, App::Tls(t) if t.dec.waiting()))
            .map(|(k, _)| *k)
            .collect();
        for key in waiting {
            let Some(mut flow) = self.flows.remove(&key) else {
                continue;
            };
            if let App::Tls(mut t) = std::mem::replace(&mut flow.app, App::Ignored) {
                let mut out = [Vec::new(), Vec::new()];
                t.dec.retry(&self.keys.log, &mut out);
                let at = flow.last_ts;
                self.tls_deliver(&mut flow, &mut t, at, out);
                flow.app = App::Tls(t);
            }
            if (flow.closed[0] && flow.closed[1] || flow.reset) && !self.holds_for_keys(&flow) {
                self.end_flow(flow);
            } else {
                self.flows.insert(key, flow);
            }
        }
    }

    /// Live capture: a connection that closes while its keys are not in the key log yet
    /// is kept until they come (or it is idle long enough to be flushed), because the
    /// client may write them a moment after the packets went by.
    pub fn hold_tls_for_keys(&mut self) {
        self.keys.hold = true;
    }

    pub(super) fn holds_for_keys(&self, flow: &Flow) -> bool {
        self.keys.hold && matches!(&flow.app, App::Tls(t) if t.dec.waiting())
    }

    /// Whether a connection began waiting for keys since the last call: a live capture
    /// reads its key logs again at once, before the connection's end goes by.
    pub fn take_key_request(&mut self) -> bool {
        std::mem::take(&mut self.keys.requested)
    }

    /// Whether some connection waits for keys a growing key log may still bring.
    pub fn wants_keys(&self) -> bool {
        self.flows
            .values()
            .any(|f| matches!(&f.app, App::Tls(t) if t.dec.waiting()))
    }

    pub(super) fn tls_data(
        &mut self,
        flow: &mut Flow,
        t: &mut Tls,
        from_client: bool,
        at: i64,
        data: &[u8],
    ) {
        let mut out = [Vec::new(), Vec::new()];
        let was_waiting = t.dec.waiting();
        t.dec
            .feed(usize::from(!from_client), data, &self.keys.log, &mut out);
        self.keys.requested |= !was_waiting && t.dec.waiting();
        self.tls_deliver(flow, t, at, out);
    }

    /// Hands the plaintext to the inner decoder, the client's first (so that a response
    /// decoder knows the methods), as if it had come in the clear.
    fn tls_deliver(&mut self, flow: &mut Flow, t: &mut Tls, at: i64, out: [Vec<Plain>; 2]) {
        let Some(client) = flow.client else { return };
        if out.iter().all(Vec::is_empty) {
            return;
        }
        if flow.tls.is_none() {
            flow.tls = Some(TlsTags {
                sni: t.dec.sni.clone(),
                version: t.dec.version().unwrap_or("?"),
            });
        }
        flow.app = std::mem::replace(&mut t.inner, App::Ignored);
        for (dir, plain) in out.into_iter().enumerate() {
            let side = if dir == 0 { client } else { 1 - client };
            for p in plain {
                match p {
                    Plain::Data(b) => self.data(flow, side, at, Bytes::from(b)),
                    Plain::Lost(len) => {
                        self.stream_event(flow, side, tcp::Event::Gap { len: len as u64 })
                    }
                }
            }
        }
        t.inner = std::mem::replace(&mut flow.app, App::Ignored);
    }

    /// A side of a TLS flow closed: the inner decoder hears of it (close-delimited bodies).
    pub(super) fn tls_side_closed(&mut self, flow: &mut Flow, t: &mut Tls, side: usize) {
        flow.app = std::mem::replace(&mut t.inner, App::Ignored);
        self.side_closed(flow, side);
        t.inner = std::mem::replace(&mut flow.app, App::Ignored);
    }

    /// The flow ends: the inner decoder's exchanges are stored, the connection counted.
    pub(super) fn tls_close(
        &mut self,
        flow: &mut Flow,
        mut t: Box<Tls>,
        kind: ErrorKind,
        error: &str,
    ) {
        flow.app = std::mem::replace(&mut t.inner, App::Ignored);
        self.close_app(flow, kind, error);
        self.stats.tls_flows += 1;
        self.stats.tls_auth_failures += t.dec.auth_failures;
        match t.dec.status() {
            Status::Decrypting => {
                self.stats.tls_decrypted += 1;
                if let Some(r) = t.dec.client_random() {
                    if self.keys.used.insert(*r) {
                        self.stats.keylog_sessions_used += 1;
                    }
                }
            }
            Status::UnsupportedSuite(_) => self.stats.tls_unsupported += 1,
            Status::Broken => self.stats.tls_broken += 1,
            Status::NoKeys | Status::Handshake => {
                if flow.tunnel.is_some() {
                    self.stats.opaque_tunnels += 1;
                }
                let name = match (&t.dec.sni, t.dec.client_random()) {
                    (Some(sni), _) => sni.clone(),
                    (None, Some(_)) => "-".into(),
                    (None, None) => "?".into(),
                };
                tracing::info!(conn = flow.conn_id, sni = %name, "TLS connection without keys");
                *self.stats.tls_without_keys.entry(name).or_default() += 1;
            }
        }
    }
}
