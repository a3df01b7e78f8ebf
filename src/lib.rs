//! mf: record real API traffic and replay it deterministically.
//!
//! The crate is layered; each module imports only from the ones below it:
//!
//! ```text
//! cli ─→ capture / replay / infer / diff / ui ─→ decode / store / net ─→ vocab ─→ model
//! ```
//!
//! [`model::Exchange`] is the one type that flows through all of them.

pub mod capture;
pub mod cli;
pub mod decode;
pub mod diff;
pub mod infer;
pub mod model;
pub mod net;
pub mod replay;
pub mod store;
pub mod tls;
pub mod ui;
pub mod vocab;
