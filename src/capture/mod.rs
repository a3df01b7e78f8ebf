//! Capture: everything that turns live traffic into [`crate::model::Exchange`]s.
//!
//! The recording proxy lives here; passive sniffing and pcap import join it. Capture hands
//! finished exchanges to an [`crate::model::ExchangeSink`] and never waits on disk.
//!
//! Imports: `model`, `decode`, `net`.

pub mod h2;
pub mod import;
pub mod packet;
pub mod passive;
pub mod pcap;
pub mod proxy;
pub mod sniff;
pub mod ws;
