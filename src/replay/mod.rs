//! Replay: serving a recording back to real clients, the upstream gone.
//!
//! `matcher` is pure (which recorded exchange answers a request); `server` does the I/O.
//!
//! `source` is the question the server asks when answers come from elsewhere than a
//! recording; `fixtures` answers it from a fixtures folder.
//!
//! Imports: `model`, `decode`, `net`, `store::fixtures` (the fixture file types).

pub mod fixtures;
pub mod matcher;
pub mod server;
pub mod source;
