//! HTTP/1 decoder, both roles, input split at a point chosen by the first byte.
#![no_main]
use libfuzzer_sys::fuzz_target;
use mf::decode::h1::{Decoder, Role};

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else { return };
    for role in [Role::Request, Role::Response] {
        let mut d = Decoder::new(role);
        d.push_request_method("GET");
        let at = usize::from(split).min(rest.len());
        for chunk in [&rest[..at], &rest[at..]] {
            d.feed(chunk);
            while let Ok(Some(_)) = d.poll() {}
        }
        while let Ok(Some(_)) = d.finish() {}
    }
});
