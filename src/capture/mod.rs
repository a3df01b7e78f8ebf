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
//! - `forward` sends one request mf already holds (record-on-miss) through the proxy's
//!   HTTP/1 driver and hands back the exchange it recorded.
//! - `passive` decodes TCP segments (from `packet`, read from `pcap` files by `import` or
//!   captured live by `sniff`).
//! - `foreign` reads other tools' recordings whole into exchanges: `har` (HAR 1.2) and
//!   `mitm` (mitmproxy flow files, over `tnetstring`).
//!
//! Capture hands finished exchanges to an [`crate::model::ExchangeSink`] and never waits on
//! disk; `policy` wraps that sink with what every recording path applies the same way
//! (filters, sampling, redaction of secrets, dedup). Imports: `model`, `decode`, `net`, `vocab`; never `infer`, `replay` or `cli`.

mod clock;
mod dial;
pub mod foreign;
mod foreign_fields;
pub mod forward;
mod fragments;
mod h2;
mod har;
pub mod import;
mod io;
pub mod keylog;
mod mitm;
pub mod packet;
pub mod passive;
pub mod pcap;
pub mod policy;
pub mod proxy;
pub(crate) mod recorder;
pub(crate) mod setup;
pub mod sniff;
mod tnetstring;
mod ws;
