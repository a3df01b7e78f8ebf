//! Sans-IO TCP stream reassembly for one direction of one connection.
//!
//! Segments go in (sequence number, flags, payload, timestamp) in capture order; the byte
//! stream comes out in sequence order as [`Event`]s. Retransmissions and overlaps are trimmed
//! to the bytes not yet delivered (first copy wins, like most stacks), out-of-order segments
//! wait in a bounded buffer, and a segment that never arrives becomes an explicit
//! [`Event::Gap`] so the layer above can mark its exchange incomplete instead of gluing two
//! unrelated pieces together.
//!
//! Sequence numbers wrap at 2^32; every comparison is made relative to the next expected byte
//! with wrapping arithmetic, and absolute positions are kept as `u64` stream offsets.

use std::collections::BTreeMap;

use bytes::Bytes;

/// Out-of-order bytes one direction may hold before the oldest hole is given up on.
pub const DEFAULT_MAX_BUFFERED: usize = 4 * 1024 * 1024;

/// What came out of the reassembler, in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Contiguous bytes, with the capture time of the segment that carried them.
    Data { at_ns: i64, data: Bytes },
    /// `len` bytes were never seen (lost by the capture, or before a buffer overflow).
    Gap { len: u64 },
    /// The sender closed its direction (FIN reached in sequence).
    Fin,
    /// The connection was reset.
    Rst,
}

/// One direction's reassembly state. See the module docs.
#[derive(Debug)]
pub struct Reassembler {
    /// Sequence number of the next byte to deliver; `None` until the first segment.
    next_seq: Option<u32>,
    /// Stream offset of `next_seq`.
    pos: u64,
    /// Segments ahead of `pos`, by stream offset.
    pending: BTreeMap<u64, (i64, Bytes)>,
    pending_bytes: usize,
    max_buffered: usize,
    /// Stream offset of the FIN, once seen.
    fin_at: Option<u64>,
    fin_done: bool,
    closed: bool,
    /// Bytes dropped as already delivered (retransmissions, overlaps).
    pub retransmitted_bytes: u64,
}

impl Default for Reassembler {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_BUFFERED)
    }
}

impl Reassembler {
    /// A reassembler that holds at most `max_buffered` out-of-order bytes.
    pub fn new(max_buffered: usize) -> Self {
        Reassembler {
            next_seq: None,
            pos: 0,
            pending: BTreeMap::new(),
            pending_bytes: 0,
            max_buffered,
            fin_at: None,
            fin_done: false,
            closed: false,
            retransmitted_bytes: 0,
        }
    }

    /// Out-of-order bytes currently held.
    pub fn buffered(&self) -> usize {
        self.pending_bytes
    }

    /// True once a FIN or RST ended this direction.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Stream bytes delivered or skipped so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Feeds one segment; events are appended to `out`.
    #[allow(clippy::too_many_arguments)] // the fields of a TCP segment, as the wire has them
    pub fn segment(
        &mut self,
        at_ns: i64,
        seq: u32,
        syn: bool,
        fin: bool,
        rst: bool,
        payload: Bytes,
        out: &mut Vec<Event>,
    ) {
        if self.closed {
            return;
        }
        // The SYN occupies one sequence number before the first data byte.
        let data_seq = if syn { seq.wrapping_add(1) } else { seq };
        let next = *self.next_seq.get_or_insert(data_seq);
        if syn && self.pos == 0 && self.pending.is_empty() {
            self.next_seq = Some(data_seq);
        }
        let next = self.next_seq.unwrap_or(next);
        let delta = data_seq.wrapping_sub(next) as i32 as i64;
        let len = payload.len() as u64;
        if fin {
            let end = (self.pos as i64 + delta + len as i64).max(self.pos as i64) as u64;
            self.fin_at.get_or_insert(end);
        }
        if !payload.is_empty() {
            if delta <= 0 {
                let skip = (-delta) as u64;
                if skip >= len {
                    self.retransmitted_bytes += len;
                } else {
                    self.retransmitted_bytes += skip;
                    self.deliver(at_ns, payload.slice(skip as usize..), out);
                    self.drain(out);
                }
            } else {
                let off = self.pos + delta as u64;
                self.insert(off, at_ns, payload);
                while self.pending_bytes > self.max_buffered {
                    // The hole at `pos` is not going to be filled in time: give up on it.
                    self.skip_hole(out);
                }
            }
        }
        self.check_fin(out);
        if rst {
            self.closed = true;
            out.push(Event::Rst);
        }
    }

    /// The peer acknowledged every byte before `ack`. Bytes it acknowledged that this side
    /// never delivered were received by the peer but missed by the capture (a kernel or tap
    /// drop): no retransmission will ever fill them, so a hole below `ack` becomes a
    /// [`Event::Gap`] now rather than after the out-of-order buffer overflows, which on a
    /// busy keep-alive connection would hold megabytes and delay every later message.
    ///
    /// Only a hole with later bytes already buffered is given up on: with nothing buffered,
    /// the acknowledged bytes may still be on their way in a capture that reordered them.
    pub fn peer_acked(&mut self, ack: u32, out: &mut Vec<Event>) {
        let Some(next) = self.next_seq else {
            return;
        };
        if self.closed || self.pending.is_empty() {
            return;
        }
        let delta = ack.wrapping_sub(next) as i32 as i64;
        if delta <= 0 {
            return;
        }
        let acked_to = self.pos + delta as u64;
        while self
            .pending
            .first_key_value()
            .is_some_and(|(&off, _)| off > self.pos && off <= acked_to)
        {
            self.skip_hole(out);
        }
        self.check_fin(out);
    }

    /// End of capture (or eviction): everything buffered comes out, holes become gaps.
    pub fn flush(&mut self, out: &mut Vec<Event>) {
        while !self.pending.is_empty() {
            self.skip_hole(out);
        }
        if let Some(fin) = self.fin_at {
            if fin > self.pos {
                out.push(Event::Gap {
                    len: fin - self.pos,
                });
                self.pos = fin;
            }
        }
        self.check_fin(out);
    }

    fn insert(&mut self, off: u64, at_ns: i64, payload: Bytes) {
        // A payload may be a slice of a capture reader's whole read buffer (megabytes):
        // what waits for a hole to fill is copied, so that it holds only its own bytes.
        let payload = Bytes::copy_from_slice(&payload);
        // Keep the first copy of any byte: a later segment covering an earlier stored one only
        // contributes what is new beyond it (longer retransmissions are kept whole if new).
        match self.pending.get(&off) {
            Some((_, old)) if old.len() >= payload.len() => {
                self.retransmitted_bytes += payload.len() as u64;
            }
            Some((_, old)) => {
                let old_len = old.len();
                self.retransmitted_bytes += old_len as u64;
                self.pending_bytes = self.pending_bytes - old_len + payload.len();
                self.pending.insert(off, (at_ns, payload));
            }
            None => {
                self.pending_bytes += payload.len();
                self.pending.insert(off, (at_ns, payload));
            }
        }
    }

    fn deliver(&mut self, at_ns: i64, data: Bytes, out: &mut Vec<Event>) {
        let n = data.len();
        self.pos += n as u64;
        self.next_seq = self.next_seq.map(|s| s.wrapping_add(n as u32));
        out.push(Event::Data { at_ns, data });
    }

    /// Delivers buffered segments that have become contiguous.
    fn drain(&mut self, out: &mut Vec<Event>) {
        while let Some(entry) = self.pending.first_entry() {
            let off = *entry.key();
            if off > self.pos {
                break;
            }
            let (at_ns, data) = entry.remove();
            self.pending_bytes -= data.len();
            let skip = self.pos - off;
            if skip >= data.len() as u64 {
                self.retransmitted_bytes += data.len() as u64;
                continue;
            }
            self.retransmitted_bytes += skip;
            self.deliver(at_ns, data.slice(skip as usize..), out);
        }
    }

    fn skip_hole(&mut self, out: &mut Vec<Event>) {
        let Some((&off, _)) = self.pending.first_key_value() else {
            return;
        };
        if off > self.pos {
            let len = off - self.pos;
            out.push(Event::Gap { len });
            self.pos = off;
            self.next_seq = self.next_seq.map(|s| s.wrapping_add(len as u32));
        }
        self.drain(out);
    }

    fn check_fin(&mut self, out: &mut Vec<Event>) {
        if !self.fin_done && self.fin_at.is_some_and(|f| f <= self.pos) && self.pending.is_empty() {
            self.fin_done = true;
            self.closed = true;
            out.push(Event::Fin);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn data_of(events: &[Event]) -> (Vec<u8>, u64) {
        let mut bytes = Vec::new();
        let mut gaps = 0;
        for e in events {
            match e {
                Event::Data { data, .. } => bytes.extend_from_slice(data),
                Event::Gap { len } => gaps += len,
                _ => {}
            }
        }
        (bytes, gaps)
    }

    #[test]
    fn reordered_duplicated_and_overlapping_segments_give_the_stream() {
        let mut r = Reassembler::default();
        let mut out = Vec::new();
        let isn = u32::MAX - 3; // wraps inside the stream
        r.segment(0, isn, true, false, false, Bytes::new(), &mut out);
        let s = |o: u32| isn.wrapping_add(1).wrapping_add(o);
        r.segment(
            1,
            s(5),
            false,
            false,
            false,
            Bytes::from_static(b"fghij"),
            &mut out,
        );
        r.segment(
            2,
            s(0),
            false,
            false,
            false,
            Bytes::from_static(b"abc"),
            &mut out,
        );
        r.segment(
            3,
            s(0),
            false,
            false,
            false,
            Bytes::from_static(b"abc"),
            &mut out,
        );
        r.segment(
            4,
            s(2),
            false,
            false,
            false,
            Bytes::from_static(b"cdefg"),
            &mut out,
        );
        r.segment(
            5,
            s(10),
            false,
            true,
            false,
            Bytes::from_static(b"k"),
            &mut out,
        );
        let (bytes, gaps) = data_of(&out);
        assert_eq!(bytes, b"abcdefghijk");
        assert_eq!(gaps, 0);
        assert_eq!(out.last(), Some(&Event::Fin));
    }

    #[test]
    fn a_missing_segment_becomes_a_gap_at_flush() {
        let mut r = Reassembler::default();
        let mut out = Vec::new();
        r.segment(
            0,
            100,
            false,
            false,
            false,
            Bytes::from_static(b"abc"),
            &mut out,
        );
        r.segment(
            1,
            106,
            false,
            true,
            false,
            Bytes::from_static(b"ghi"),
            &mut out,
        );
        r.flush(&mut out);
        assert_eq!(data_of(&out), (b"abcghi".to_vec(), 3));
        assert_eq!(out.last(), Some(&Event::Fin));
    }

    #[test]
    fn buffer_overflow_skips_the_hole_with_a_gap() {
        let mut r = Reassembler::new(4);
        let mut out = Vec::new();
        r.segment(
            0,
            0,
            false,
            false,
            false,
            Bytes::from_static(b"a"),
            &mut out,
        );
        r.segment(
            1,
            5,
            false,
            false,
            false,
            Bytes::from_static(b"xyz"),
            &mut out,
        );
        r.segment(
            2,
            8,
            false,
            false,
            false,
            Bytes::from_static(b"uv"),
            &mut out,
        );
        assert_eq!(data_of(&out), (b"axyzuv".to_vec(), 4));
        assert_eq!(r.buffered(), 0);
    }

    #[test]
    fn a_hole_the_peer_acknowledged_is_a_gap_at_once() {
        let mut r = Reassembler::default();
        let mut out = Vec::new();
        let seg = |r: &mut Reassembler, seq: u32, p: &'static [u8], out: &mut Vec<Event>| {
            r.segment(0, seq, false, false, false, Bytes::from_static(p), out)
        };
        seg(&mut r, 100, b"abc", &mut out);
        seg(&mut r, 106, b"ghi", &mut out);
        // An old acknowledgement, and one inside delivered bytes, change nothing.
        r.peer_acked(90, &mut out);
        r.peer_acked(103, &mut out);
        assert_eq!(data_of(&out), (b"abc".to_vec(), 0));
        // The peer has everything up to 109: the three bytes at 103 were received unseen.
        r.peer_acked(109, &mut out);
        assert_eq!(data_of(&out), (b"abcghi".to_vec(), 3));
        assert_eq!(r.buffered(), 0);
        // Acknowledged bytes with nothing buffered beyond them may still arrive.
        r.peer_acked(200, &mut out);
        seg(&mut r, 109, b"jk", &mut out);
        assert_eq!(data_of(&out), (b"abcghijk".to_vec(), 3));
    }

    proptest! {
        /// Any cut into segments, in any order, with any duplicates, gives the same bytes.
        #[test]
        fn any_split_order_and_duplication_gives_the_same_stream(
            data in proptest::collection::vec(any::<u8>(), 0..400),
            cuts in proptest::collection::vec(0usize..400, 0..12),
            order in proptest::collection::vec(any::<u32>(), 0..40),
            isn in any::<u32>(),
        ) {
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c % (data.len() + 1)).collect();
            points.push(0);
            points.push(data.len());
            points.sort_unstable();
            points.dedup();
            let mut segs: Vec<(usize, usize)> = points.windows(2).map(|w| (w[0], w[1])).collect();
            // Duplicates (retransmissions) and a permutation driven by `order`.
            let dups: Vec<(usize, usize)> = segs.iter().copied().take(order.len() % 4).collect();
            segs.extend(dups);
            for (i, o) in order.iter().enumerate() {
                if segs.len() > 1 {
                    let a = i % segs.len();
                    let b = (*o as usize) % segs.len();
                    segs.swap(a, b);
                }
            }
            let mut r = Reassembler::default();
            let mut out = Vec::new();
            r.segment(0, isn, true, false, false, Bytes::new(), &mut out);
            for (a, b) in segs {
                let seq = isn.wrapping_add(1).wrapping_add(a as u32);
                r.segment(1, seq, false, false, false, Bytes::copy_from_slice(&data[a..b]), &mut out);
            }
            r.flush(&mut out);
            prop_assert_eq!(data_of(&out), (data, 0));
        }
    }
}
