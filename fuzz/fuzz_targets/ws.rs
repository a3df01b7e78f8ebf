//! WebSocket frame decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mf::decode::ws::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new().with_max_frame(1 << 20);
    for (i, chunk) in data.chunks(61).enumerate() {
        // A capture hole now and then: resynchronisation must not panic either.
        if i % 7 == 6 {
            d.gap();
        }
        if d.feed(chunk).is_err() {
            break;
        }
        while d.poll().is_some() {}
    }
});
