//! The recording proxy for HTTP/1.x: a reverse proxy in front of one upstream, or (with no
//! upstream) a forward proxy that clients reach through `HTTP_PROXY`/`HTTPS_PROXY`, with
//! `CONNECT` tunnels intercepted by TLS certificates minted from the local mf CA.
//!
//! Why not hyper here: hyper normalises header names to lowercase and regroups duplicates in a
//! `HeaderMap`, and the only knobs that keep the original case and order are internal types a
//! program cannot read. A recorder that must store and replay headers byte-for-byte therefore
//! frames HTTP/1.1 itself, with the sans-IO decoder in `decode::h1` (head parsing is
//! httparse). The proxy streams: each read is decoded, re-encoded and written before the next
//! read, so a body of any size passes through in bounded memory, and only the first
//! `max_body` bytes of it are kept by the exchange's [`super::recorder::Recorder`].
//!
//! Connections come in through the front door shared with replay ([`crate::net::door`]):
//! it accepts, does the listener's TLS, tells HTTP/2 from HTTP/1 and intercepts CONNECT
//! tunnels, handing each connection to this proxy as a service.
//!
//! Files: `service` plugs the proxy into the door, `connect` decides what a `CONNECT` gets
//! (interception by the door, or an opaque tunnel), `conn` runs the exchanges of one client
//! connection, `tunnel` relays what follows an upgrade or a CONNECT, `pump` streams one
//! message each way, `upstream` opens and keeps upstream
//! connections, `headers` decides what is forwarded.
//!
//! Imports: `super::{setup, dial, io, clock, recorder, h2, ws}`, `decode`, `model`, `net`, `vocab`.

mod conn;
mod connect;
mod failure;
mod headers;
mod pump;
mod service;
mod tunnel;
mod upstream;

/// How long open connections get to finish after shutdown is asked for.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(5);
/// How long an exchange in flight at shutdown may still take before it is recorded as cut:
/// less than [`SHUTDOWN_GRACE`], so it is recorded before its task is dropped.
const SHUTDOWN_FINISH: std::time::Duration = std::time::Duration::from_secs(4);

pub use super::dial::upstream_speaks_h2;
pub(crate) use super::setup::Observers;
pub use super::setup::{Http2Policy, Proxy, ProxyConfig, ProxyStats, Upstream};
pub use service::serve;
pub(crate) use service::serve_internal;
