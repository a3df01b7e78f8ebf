//! Network plumbing shared by every listener mf runs (the recording proxy, the replay):
//! accepting with graceful shutdown (`listen`), the front door that takes an accepted
//! connection through TLS, protocol detection and CONNECT interception to a service
//! (`door`), dialing upstreams and replay targets (`dial`), the plain-text HTTP/1 error
//! answers every server writes (`reply`), how long a client may take (`timeouts`), and the
//! read buffers lent to busy connections (`bufpool`), and the Prometheus metrics both the
//! replay and the recording proxy export (`metrics`).
//!
//! The admin listeners' guard (`admin`) is here too, so that both stages' admin ports refuse
//! the same requests.
//!
//! Sits below `capture` and `replay` so both may use it. Imports: `vocab` and `tls` (a leaf:
//! why a handshake failed), plus tokio, rustls and socket2; never a stage, never `decode`.

pub mod admin;
mod bufpool;
pub mod dial;
pub mod door;
mod listen;
pub mod metrics;
pub mod otlp;
pub mod reply;
mod timeouts;

pub use bufpool::{PooledBuf, BIG_BUF, SMALL_BUF};
pub use listen::{
    accept_loop, shutdown_pair, starts_with_h2_preface, termination_signal, Shutdown,
    ShutdownTrigger, H2_PREFACE,
};
pub use timeouts::{ClientTimeouts, Waiting};
