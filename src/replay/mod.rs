//! Replay: serving a recording back to real clients, the upstream gone.
//!
//! `matcher` is pure (which recorded exchange answers a request); `latency`, `faults`,
//! `rules`, `scenario` and `plan` are pure too (what delay and which fault, from one seeded
//! generator); `stream` plans streamed answers (gRPC messages, WebSocket frames) against the
//! client's messages. `server` (HTTP/1.x), `h2`, `grpc` and `ws` do the I/O and apply the
//! plan; `admin` is the control API and `metrics` the Prometheus exposition it serves.
//!
//! `source` is the question the server asks when answers come from elsewhere than a
//! recording; `fixtures` answers it from a fixtures folder.
//!
//! Imports: `model`, `decode`, `net`, `tls`, `store::fixtures` (the fixture file types).

pub mod admin;
pub mod faults;
pub mod fixtures;
pub mod grpc;
pub mod h2;
pub mod latency;
pub mod matcher;
pub mod metrics;
pub mod plan;
pub mod rules;
pub mod scenario;
pub mod server;
pub mod source;
pub mod stream;
pub mod ws;
