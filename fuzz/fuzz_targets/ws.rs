//! WebSocket frame decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mf::decode::ws::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new().with_max_frame(1 << 20);
    for chunk in data.chunks(61) {
        if d.feed(chunk).is_err() {
            break;
        }
        while d.poll().is_some() {}
    }
});
