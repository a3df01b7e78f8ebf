//! Capture: everything that turns live traffic into [`crate::model::Exchange`]s.
//!
//! Every driver feeds one sans-IO [`recorder::Recorder`] per exchange, which owns what a
//! recording keeps (headers as on the wire, one body and message budget, the truncation
//! flag, typed errors, timings from the timestamps it is given):
//!
//! - `proxy` (HTTP/1), `h2` (HTTP/2 and gRPC) and `ws` (WebSocket relay) record live
//!   traffic as the recording proxy forwards it; `setup` (what a proxy is), `dial`
//!   (opening upstream connections), `io` (connection types) and `clock` (the timestamps
//!   drivers hand the recorder) sit below them so that the drivers do not import each other.
//! - `passive` decodes TCP segments (from `packet`, read from `pcap` files by `import` or
//!   captured live by `sniff`).
//!
//! Capture hands finished exchanges to an [`crate::model::ExchangeSink`] and never waits on
//! disk. Imports: `model`, `decode`, `net`, `vocab`; never `infer`, `replay` or `cli`.

mod clock;
mod dial;
mod fragments;
mod h2;
pub mod import;
mod io;
pub mod keylog;
pub mod packet;
pub mod passive;
pub mod pcap;
pub mod proxy;
pub(crate) mod recorder;
pub(crate) mod setup;
pub mod sniff;
mod ws;
