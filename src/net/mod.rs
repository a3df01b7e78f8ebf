//! Network plumbing shared by every listener mf runs (the recording proxy, the replay):
//! accepting with graceful shutdown (`listen`), the front door that takes an accepted
//! connection through TLS, protocol detection and CONNECT interception to a service
//! (`door`), dialing upstreams and replay targets (`dial`), the plain-text HTTP/1 error
//! answers every server writes (`reply`), how long a client may take (`timeouts`), the
//! threads connections are dealt to (`threads`), the read buffers lent to busy connections
//! (`bufpool`), who may use a local control port (`guard`), and the seam through which such
//! a port serves web pages (`pages`).
//!
//! What both stages observe lives here too, so the proxy and the replay share one of each:
//! the Prometheus metric set (`metrics`), the admin listeners' guard and the proxy's
//! `/metrics` server (`admin`), and the OpenTelemetry span exporter (`otlp`).
//!
//! Sits below `capture` and `replay` so both may use it. Imports: `vocab`, `model` and `tls`
//! (a leaf: why a handshake failed), plus tokio, hyper, rustls, socket2, prometheus and the
//! OTLP message types; never a stage, never `decode`.

pub mod admin;
mod bufpool;
pub mod dial;
pub mod door;
pub mod guard;
mod listen;
pub mod metrics;
pub(crate) mod otlp;
pub mod pages;
pub(crate) mod released;
pub mod reply;
mod threads;
mod timeouts;

pub use bufpool::{PooledBuf, BIG_BUF, SMALL_BUF};
pub use listen::{
    accept_loop, shutdown_pair, starts_with_h2_preface, termination_signal, Shutdown,
    ShutdownTrigger, H2_PREFACE,
};
pub(crate) use listen::{accept_loop_on, StopSignal};
pub(crate) use threads::ConnThreads;
pub use timeouts::{ClientTimeouts, Waiting};
