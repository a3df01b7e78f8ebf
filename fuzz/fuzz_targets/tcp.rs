//! TCP reassembly: the input is a list of segments (seq, flags, length) with payload bytes.
#![no_main]
use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use mf::decode::tcp::Reassembler;

fuzz_target!(|data: &[u8]| {
    let mut r = Reassembler::new(4096);
    let mut out = Vec::new();
    let mut rest = data;
    while rest.len() >= 6 {
        let seq = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let flags = rest[4];
        let len = usize::from(rest[5]).min(rest.len() - 6);
        let payload = Bytes::copy_from_slice(&rest[6..6 + len]);
        r.segment(0, seq, flags & 1 != 0, flags & 2 != 0, flags & 4 != 0, payload, &mut out);
        rest = &rest[6 + len..];
        out.clear();
    }
    r.flush(&mut out);
});
