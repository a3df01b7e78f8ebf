//! gRPC length-prefixed message decoder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mf::decode::grpc::Decoder;

fuzz_target!(|data: &[u8]| {
    let mut d = Decoder::new().with_max_message(1 << 20);
    for chunk in data.chunks(13) {
        if d.feed(chunk).is_err() {
            break;
        }
        while d.poll().is_some() {}
    }
    let _ = d.finish();
});
