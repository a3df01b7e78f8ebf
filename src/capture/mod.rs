//! Capture: everything that turns live traffic into [`crate::model::Exchange`]s.
//!
//! The recording proxy lives here; passive sniffing and pcap import join it. Capture hands
//! finished exchanges to an [`crate::model::ExchangeSink`] and never waits on disk.
//!
//! Imports: `model`, `decode`, `net`.

mod clock;
pub mod h2;
pub mod import;
mod io;
pub mod packet;
pub mod passive;
pub mod pcap;
pub mod proxy;
pub(crate) mod recorder;
pub(crate) mod setup;
pub mod sniff;
pub mod ws;
