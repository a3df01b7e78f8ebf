//! The passive decoder's limits and its counters.

use std::collections::BTreeMap;

/// Limits of the passive decoder.
#[derive(Clone, Debug)]
pub struct Config {
    /// Bytes stored per direction of an exchange: of the body (the rest is counted, the body
    /// flagged truncated) or of its stream messages (the rest counted as dropped).
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
    /// Requests whose response was lost to a hole (the pairing found later responses).
    pub lost_responses: u64,
    /// Holes inside a body of known framing: the body is kept, zeros in the hole, flagged.
    pub body_holes: u64,
    /// Times a direction found its next message start again after a hole.
    pub resyncs: u64,
    /// Bytes skipped while looking for the next message start.
    pub resync_skipped_bytes: u64,
    /// `CONNECT` tunnels whose bytes were decoded as a flow of their own.
    pub tunnels: u64,
    /// Tunnels carrying TLS: listed (their `CONNECT` is stored), not decoded.
    pub opaque_tunnels: u64,
    /// `CONNECT` requests never answered.
    pub unanswered_tunnels: u64,
    /// HTTP/2 connections with a hole: their HPACK state may be lost from there on.
    pub hpack_unsure_connections: u64,
    /// TLS connections seen (decrypted or not).
    pub tls_flows: u64,
    /// TLS connections decrypted with keys from the key log.
    pub tls_decrypted: u64,
    /// TLS connections whose keys were not in the key log, by SNI (`-` for none, `?` when
    /// the handshake was not captured): listed, not decoded.
    pub tls_without_keys: BTreeMap<String, u64>,
    /// TLS connections with a suite or version that cannot be decrypted (CBC, TLS 1.0…).
    pub tls_unsupported: u64,
    /// TLS connections whose record layer was lost (a capture hole, or not TLS after all).
    pub tls_broken: u64,
    /// TLS records that failed authentication (wrong keys, or altered bytes).
    pub tls_auth_failures: u64,
    /// Sessions in the key log(s), and how many of them matched a captured connection (the
    /// rest are other sessions' keys).
    pub keylog_sessions: u64,
    pub keylog_sessions_used: u64,
    /// Key log lines that were not key lines (counted, skipped).
    pub keylog_garbage_lines: u64,
}
