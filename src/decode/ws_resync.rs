//! Finding the next WebSocket frame after a capture hole.
//!
//! A hole leaves the decoder somewhere inside a frame. A frame header has no magic number,
//! so a candidate must pass everything RFC 6455 §5.2 demands of a real one — a defined
//! opcode, no RSV2/RSV3 (no extension in use sets them), a control frame whole and short,
//! the shortest length encoding, the masking the peer used before the hole, a close code in
//! range, UTF-8 in a whole text frame — and lead to a chain of such frames, or to exactly
//! where the captured bytes end (senders write whole frames, so a segment boundary is a
//! frame boundary far more often than not).

use super::{apply_mask, opcode, Error};

/// Where decoding can resume.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Boundary {
    /// A frame starts here.
    At(usize),
    /// No frame starts before this offset; what lies beyond it needs more bytes to judge.
    NeedMore(usize),
}

/// A parsed frame header.
#[derive(Debug, Clone, Copy)]
pub(super) struct Head {
    pub fin: bool,
    pub rsv: u8,
    pub op: u8,
    pub mask: Option<[u8; 4]>,
    pub len: u64,
    /// Header length (2 to 14 bytes).
    pub size: usize,
    /// The length used more bytes than needed (legal to parse, never sent by real peers).
    pub long_form: bool,
}

/// The header at the start of `b`: `Ok(None)` when more bytes are needed.
pub(super) fn head(b: &[u8]) -> Result<Option<Head>, Error> {
    if b.len() < 2 {
        return Ok(None);
    }
    let fin = b[0] & 0x80 != 0;
    let rsv = (b[0] >> 4) & 0x7;
    let op = b[0] & 0x0F;
    if matches!(op, 0x3..=0x7 | 0xB..=0xF) {
        return Err(Error::ReservedOpcode(op));
    }
    let (len, mut size, long_form) = match b[1] & 0x7F {
        126 => {
            let Some(n) = b.get(2..4) else {
                return Ok(None);
            };
            let len = u64::from(u16::from_be_bytes([n[0], n[1]]));
            (len, 4, len < 126)
        }
        127 => {
            let Some(n) = b.get(2..10) else {
                return Ok(None);
            };
            let mut a = [0u8; 8];
            a.copy_from_slice(n);
            let len = u64::from_be_bytes(a);
            if len >> 63 != 0 {
                return Err(Error::BadLength);
            }
            (len, 10, len <= u64::from(u16::MAX))
        }
        n => (u64::from(n), 2, false),
    };
    if op & 0x8 != 0 && (!fin || len > 125) {
        return Err(Error::BadControl { opcode: op });
    }
    let mask = if b[1] & 0x80 != 0 {
        let Some(m) = b.get(size..size + 4) else {
            return Ok(None);
        };
        size += 4;
        Some([m[0], m[1], m[2], m[3]])
    } else {
        None
    };
    Ok(Some(Head {
        fin,
        rsv,
        op,
        mask,
        len,
        size,
        long_form,
    }))
}

/// Whether `b` starts with a header a real peer could have sent: `None` when more bytes
/// are needed to tell.
fn plausible(b: &[u8], masked: Option<bool>, max_frame: usize) -> Option<Option<Head>> {
    let h = match head(b) {
        Ok(Some(h)) => h,
        Ok(None) => return None,
        Err(_) => return Some(None),
    };
    let ok = h.rsv & 0x3 == 0
        && !h.long_form
        && h.len <= max_frame as u64
        && masked.is_none_or(|m| m == h.mask.is_some());
    Some(ok.then_some(h))
}

/// Whether a whole frame's payload fits its opcode.
fn payload_fits(h: &Head, payload: &[u8]) -> bool {
    let mut p = payload.to_vec();
    if let Some(m) = h.mask {
        apply_mask(&mut p, m);
    }
    match h.op {
        opcode::TEXT if h.fin && h.rsv == 0 => std::str::from_utf8(&p).is_ok(),
        opcode::CLOSE => {
            p.is_empty() || p.len() >= 2 && (1000..5000).contains(&u16::from_be_bytes([p[0], p[1]]))
        }
        _ => true,
    }
}

/// Frames in a row a candidate must lead to (unless the captured bytes end first, or a later
/// frame is still incomplete): random bytes — masked payloads look random — pass one header
/// check often enough, several in a row almost never.
const CHAIN: usize = 4;

/// Whether a chain of plausible frames starts at `b[p..]`: `None` when more bytes are
/// needed to tell.
fn chain_at(b: &[u8], p: usize, masked: Option<bool>, max_frame: usize) -> Option<bool> {
    let mut q = p;
    for hop in 0..CHAIN {
        let h = match plausible(&b[q..], masked, max_frame) {
            Some(Some(h)) => h,
            Some(None) => return Some(false),
            // Waiting for the rest of a later frame would hold several frames: one whole
            // frame and the start of a plausible next one are taken as enough then.
            None => return if hop > 0 { Some(true) } else { None },
        };
        let start = q + h.size;
        let end = start.saturating_add(h.len as usize);
        if end > b.len() {
            return if hop > 0 { Some(true) } else { None };
        }
        if !payload_fits(&h, &b[start..end]) {
            return Some(false);
        }
        if end == b.len() {
            return Some(true);
        }
        q = end;
    }
    Some(true)
}

/// The first offset of `b` where a frame plausibly starts (see the module comment).
pub(super) fn frame_boundary(b: &[u8], masked: Option<bool>, max_frame: usize) -> Boundary {
    for p in 0..b.len() {
        match chain_at(b, p, masked, max_frame) {
            Some(true) => return Boundary::At(p),
            Some(false) => {}
            None => return Boundary::NeedMore(p),
        }
    }
    Boundary::NeedMore(b.len())
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::super::{encode, opcode, Decoder, Frame};

    /// `n` frames as a peer sends them: text of assorted lengths (7-bit, 16-bit and 64-bit
    /// length forms), binary, and a ping now and then.
    fn frames(n: usize) -> Vec<(u8, Vec<u8>)> {
        let mut seed = 0x2545_f491u32;
        (0..n)
            .map(|i| {
                seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
                let len = match seed % 5 {
                    0 => 20,
                    1 => 300,
                    2 => 2000,
                    3 => 70_000,
                    _ => 90,
                };
                match i % 7 {
                    3 => (opcode::PING, b"are you there".to_vec()),
                    5 => (
                        opcode::BINARY,
                        (0..len).map(|k| (k as u32 ^ seed) as u8).collect(),
                    ),
                    _ => (
                        opcode::TEXT,
                        format!("message {i} ").repeat(len / 10).into_bytes(),
                    ),
                }
            })
            .collect()
    }

    /// The wire bytes and where each frame starts.
    fn wire(fs: &[(u8, Vec<u8>)], mask: bool) -> (Vec<u8>, Vec<usize>) {
        let mut out = BytesMut::new();
        let mut starts = Vec::new();
        for (i, (op, p)) in fs.iter().enumerate() {
            starts.push(out.len());
            let m = mask.then_some([i as u8, 0x5a, 0xc3, 0x17]);
            encode(&mut out, true, *op, p, m);
        }
        (out.to_vec(), starts)
    }

    fn drain(d: &mut Decoder) -> Vec<Frame> {
        std::iter::from_fn(|| d.poll()).collect()
    }

    /// Feeds the bytes before `hole` and after it in segment-sized pieces, with a gap
    /// between; returns the payloads decoded and the bytes skipped.
    fn with_hole(bytes: &[u8], hole: std::ops::Range<usize>) -> (Vec<Vec<u8>>, Option<u64>) {
        let mut d = Decoder::new();
        let mut got = Vec::new();
        for piece in bytes[..hole.start].chunks(1448) {
            d.feed(piece).expect("before the hole");
            got.extend(drain(&mut d).into_iter().map(|f| f.payload.to_vec()));
        }
        d.gap();
        for piece in bytes[hole.end..].chunks(1448) {
            d.feed(piece).expect("after the hole");
            got.extend(drain(&mut d).into_iter().map(|f| f.payload.to_vec()));
        }
        (got, d.take_resync())
    }

    #[test]
    fn a_hole_costs_only_the_frames_it_touched() {
        for mask in [false, true] {
            let fs = frames(60);
            let (bytes, starts) = wire(&fs, mask);
            // From inside frame 20 to inside frame 23: frames 20..=23 are lost.
            let hole = starts[20] + 5..starts[23] + 40;
            let (got, skipped) = with_hole(&bytes, hole.clone());
            let want: Vec<Vec<u8>> = fs
                .iter()
                .enumerate()
                .filter(|(i, _)| !(20..=23).contains(i))
                .map(|(_, f)| f.1.clone())
                .collect();
            assert_eq!(got.len(), want.len(), "mask {mask}");
            assert!(got == want, "mask {mask}: frames differ");
            // What was captured of frame 20 before the hole and of frame 23 after it was
            // skipped, nothing more.
            assert_eq!(
                skipped,
                Some((5 + starts[24] - hole.end) as u64),
                "mask {mask}"
            );
        }
    }

    #[test]
    fn every_hole_position_recovers_the_frames_after_it() {
        let fs = frames(30);
        let (bytes, starts) = wire(&fs, true);
        // A 100-byte hole starting at each byte of frames 10 and 11.
        for at in starts[10]..starts[12] {
            let hole = at..at + 100;
            let (got, _) = with_hole(&bytes, hole.clone());
            let first_whole = starts
                .iter()
                .position(|&s| s >= hole.end)
                .unwrap_or(fs.len());
            let tail: Vec<Vec<u8>> = fs[first_whole..].iter().map(|f| f.1.clone()).collect();
            assert!(
                got.ends_with(&tail),
                "hole at {at}: the frames after it are not all there"
            );
        }
    }

    #[test]
    fn garbage_after_a_hole_is_skipped_not_fatal() {
        let fs = frames(10);
        let (bytes, _) = wire(&fs, false);
        let mut d = Decoder::new();
        d.feed(&bytes).unwrap();
        assert_eq!(drain(&mut d).len(), 10);
        d.gap();
        // Reserved opcodes, RSV2/3 bits, fragmented control frames, overlong lengths.
        d.feed(&[0xff, 0x83, 0x7f, 0xff, 0x09, 0x05, 0x8f, 0x00, 0xa1, 0x05])
            .expect("no error after a hole");
        d.feed(&bytes).expect("frames again");
        let got = drain(&mut d);
        assert_eq!(got.len(), 10);
        assert_eq!(d.take_resync(), Some(10));
    }

    proptest::proptest! {
        #[test]
        fn holes_in_garbage_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..4000)) {
            let mut d = Decoder::new().with_max_frame(1 << 16);
            for (i, chunk) in data.chunks(97).enumerate() {
                if i % 3 == 1 {
                    d.gap();
                }
                let _ = d.feed(chunk);
                drain(&mut d);
                proptest::prop_assert!(d.pending() <= (1 << 16) + 14 + 97);
            }
        }
    }

    #[test]
    fn without_a_hole_errors_stay_fatal() {
        let mut d = Decoder::new();
        assert!(d.feed(&[0x83, 0x00]).is_err());
        assert!(d.feed(&[0x81, 0x00]).is_err());
    }
}
