//! Passive HTTP/2 decoder (frames, CONTINUATION, padding, HPACK), both directions.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mf::decode::h2::Decoder;

fuzz_target!(|data: &[u8]| {
    for client in [true, false] {
        let mut d = Decoder::new(client);
        for chunk in data.chunks(97) {
            let _ = d.feed(chunk);
            while d.poll().is_some() {}
        }
    }
});
