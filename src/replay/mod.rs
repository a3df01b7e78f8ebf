//! Replay: serving a recording back to real clients, the upstream gone.
//!
//! `matcher` is pure (which recorded exchange answers a request); `latency`, `faults`,
//! `rules`, `scenario` and `plan` are pure too (what delay and which fault, from one seeded
//! generator); `server` does the I/O and applies the plan; `admin` is the control API and
//! `metrics` the Prometheus exposition it serves.
//!
//! Imports: `model`, `decode`, `net`.

pub mod admin;
pub mod faults;
pub mod latency;
pub mod matcher;
pub mod metrics;
pub mod plan;
pub mod rules;
pub mod scenario;
pub mod server;
