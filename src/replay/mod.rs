//! Replay: serving a recording back to real clients, the upstream gone.
//!
//! `matcher` is pure (which recorded exchange answers a request); `server` does the I/O.
//!
//! Imports: `model`, `decode`, `net`.

pub mod grpc;
pub mod h2;
pub mod matcher;
pub mod server;
pub mod stream;
pub mod ws;
