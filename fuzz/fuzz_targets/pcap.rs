//! The whole import path: pcap/pcapng reader, link/IP/TCP decoding, passive engine.
#![no_main]
use std::sync::Arc;

use libfuzzer_sys::fuzz_target;
use mf::capture::import::import;
use mf::capture::passive::{Config, Engine};
use mf::model::{Exchange, ExchangeSink};

struct Null;
impl ExchangeSink for Null {
    fn record(&self, _: Exchange) {}
}

fuzz_target!(|data: &[u8]| {
    let mut engine = Engine::new(Config::default(), Arc::new(Null));
    let _ = import(data, &mut engine, None, &mut |_, _| {});
    engine.finish();
});
