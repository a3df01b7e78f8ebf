//! Replay: serving a recording (or a fixtures folder) back to real clients, the upstream gone.
//!
//! One pipeline for every protocol (`pipeline`): a request view → the answer source → the
//! plan → the protocol renders → metrics.
//!
//! - Pure decisions: `matcher` (which recorded exchange answers a request), `grpc_index`
//!   (which recorded gRPC call, prepared once), `source` and `fixtures` (answers from a
//!   fixtures folder), `latency`, `faults`, `rules`, `scenario` and `plan` (what delay and
//!   which fault, from one seeded generator), `stream` (when each recorded message of a
//!   streamed answer goes out), `render` (answers as HTTP/1 bytes, fault bodies).
//! - `pipeline`: the [`pipeline::Replay`] every protocol asks, and its counters; `miss`
//!   the record-on-miss hook its unmatched path calls, and what that hook taught. A recording
//!   is held as an index (`matcher` over `index`'s interned strings and body keys, `near`
//!   for near misses, `grpc_index`, the planner's timings); matched exchanges are loaded from
//!   the store when needed and kept rendered in `cache`, bounded in bytes.
//! - Protocols, each importing the pipeline and never each other: `h1`, `h2`, `grpc`, `ws`;
//!   `body` holds the HTTP/2 body types h2 and gRPC share, `timed` sends a body in its
//!   recorded chunks at their recorded offsets (HTTP/1 writes, HTTP/2 DATA frames).
//! - `service`: the replay behind the front door (`net::door`), routing connections to the
//!   protocols. `admin` is the control API and `metrics` the Prometheus exposition it serves;
//!   `live` the Server-Sent Events feed of the control center's live panels.
//! - `to`: the other direction, `mf replay --to`: the recorded requests sent to a live target,
//!   its answers handed to an observer (the CLI's, which judges them with `diff`).
//!
//! Imports: `model`, `vocab`, `decode`, `net`, `store` (the fixture file types, the lean
//! walk of a recording and the loader of single exchanges).
//! Never `capture`, `infer` or `cli`.

pub mod admin;
mod body;
mod cache;
pub mod faults;
pub mod fixtures;
mod grpc;
mod grpc_index;
mod h1;
mod h2;
mod index;
pub mod latency;
mod live;
pub mod matcher;
/// The metric set lives in `net`, shared with the recording proxy.
pub use crate::net::metrics;
pub mod miss;
pub mod pipeline;
pub mod plan;
mod render;
pub mod rules;
pub mod scenario;
pub mod service;
pub mod source;
mod spans;
pub mod stream;
mod timed;
pub mod to;
mod ws;

pub use pipeline::{Replay, ReplayConfig, ReplayStats, SetupError};
