//! From a captured frame to a TCP segment: link layers, IPv4 (with fragment reassembly) and
//! IPv6, then TCP. Shared by the pcap importer and the live sniffer.
//!
//! Header parsing is `etherparse`; the link layers it does not know (SLL2, BSD null) and the
//! VLAN stacking are a few fixed offsets, done here.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use bytes::Bytes;
use etherparse::{Ipv4HeaderSlice, Ipv6HeaderSlice, TcpHeaderSlice};

/// Link types (LINKTYPE_* values of the pcap format).
pub mod linktype {
    pub const NULL: u32 = 0;
    pub const ETHERNET: u32 = 1;
    pub const RAW_OPENBSD: u32 = 12;
    pub const RAW_BSD: u32 = 14;
    pub const RAW: u32 = 101;
    pub const LOOP: u32 = 108;
    pub const LINUX_SLL: u32 = 113;
    pub const IPV4: u32 = 228;
    pub const IPV6: u32 = 229;
    pub const LINUX_SLL2: u32 = 276;
}

/// One TCP segment.
#[derive(Clone, Debug)]
pub struct Segment {
    pub ts_ns: i64,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub seq: u32,
    pub syn: bool,
    pub ack: bool,
    /// The acknowledgement number (meaningful when `ack` is set).
    pub ack_no: u32,
    pub fin: bool,
    pub rst: bool,
    pub payload: Bytes,
    /// The snaplen cut the payload: `payload` is shorter than what was sent.
    pub cut: bool,
}

/// Why a frame yielded no segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Not TCP (UDP, ARP, ICMP…): silently ignored.
    NotTcp,
    /// A fragment kept until the rest arrives.
    Fragment,
    /// A link type mf does not decode.
    UnknownLinkType(u32),
    /// Headers that do not parse.
    Malformed,
}

const MAX_FRAGMENT_SETS: usize = 1024;
const FRAGMENT_TIMEOUT_NS: i64 = 30_000_000_000;

/// Frame decoder with the IPv4 fragment reassembly state.
#[derive(Default)]
pub struct PacketDecoder {
    fragments: HashMap<(Ipv4Addr, Ipv4Addr, u16, u8), FragmentSet>,
    /// Fragment sets abandoned (timeout or too many at once).
    pub fragments_dropped: u64,
}

struct FragmentSet {
    first_ts: i64,
    header: Vec<u8>,
    parts: Vec<(usize, Vec<u8>)>,
    total: Option<usize>,
}

impl PacketDecoder {
    /// A decoder with no fragments pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one frame captured on a link of type `linktype`.
    ///
    /// # Errors
    /// [`Skip`] says why the frame carries no TCP segment.
    pub fn decode(&mut self, ts_ns: i64, linktype: u32, frame: &[u8]) -> Result<Segment, Skip> {
        let ip = link_payload(linktype, frame)?;
        self.ip(ts_ns, ip)
    }

    fn ip(&mut self, ts_ns: i64, ip: &[u8]) -> Result<Segment, Skip> {
        match ip.first().map(|b| b >> 4) {
            Some(4) => {
                let h = Ipv4HeaderSlice::from_slice(ip).map_err(|_| Skip::Malformed)?;
                let hl = h.slice().len();
                let total = usize::from(h.total_len()).max(hl);
                let cut = total > ip.len();
                let body = &ip[hl..total.min(ip.len())];
                let (src, dst) = (h.source_addr(), h.destination_addr());
                if h.protocol() != etherparse::IpNumber::TCP {
                    return Err(Skip::NotTcp);
                }
                if h.more_fragments() || u16::from(h.fragments_offset()) != 0 {
                    let key = (src, dst, h.identification(), h.protocol().0);
                    let offset = usize::from(u16::from(h.fragments_offset())) * 8;
                    let whole = self.fragment(
                        ts_ns,
                        key,
                        ip[..hl].to_vec(),
                        offset,
                        body,
                        h.more_fragments(),
                    )?;
                    return tcp(ts_ns, IpAddr::V4(src), IpAddr::V4(dst), &whole, false);
                }
                tcp(ts_ns, IpAddr::V4(src), IpAddr::V4(dst), body, cut)
            }
            Some(6) => {
                let h = Ipv6HeaderSlice::from_slice(ip).map_err(|_| Skip::Malformed)?;
                let total = 40 + usize::from(h.payload_length());
                let cut = total > ip.len();
                let mut body = &ip[40..total.min(ip.len())];
                let mut next = h.next_header().0;
                // Extension headers: hop-by-hop, routing, destination options; a fragment
                // header (44) means IPv6 fragmentation, which TCP stacks avoid and mf skips.
                while matches!(next, 0 | 43 | 60) {
                    if body.len() < 8 {
                        return Err(Skip::Malformed);
                    }
                    let len = (usize::from(body[1]) + 1) * 8;
                    if body.len() < len {
                        return Err(Skip::Malformed);
                    }
                    next = body[0];
                    body = &body[len..];
                }
                if next != 6 {
                    return Err(if next == 44 {
                        Skip::Malformed
                    } else {
                        Skip::NotTcp
                    });
                }
                tcp(
                    ts_ns,
                    IpAddr::V6(h.source_addr()),
                    IpAddr::V6(h.destination_addr()),
                    body,
                    cut,
                )
            }
            _ => Err(Skip::Malformed),
        }
    }

    fn fragment(
        &mut self,
        ts_ns: i64,
        key: (Ipv4Addr, Ipv4Addr, u16, u8),
        header: Vec<u8>,
        offset: usize,
        body: &[u8],
        more: bool,
    ) -> Result<Vec<u8>, Skip> {
        if self.fragments.len() >= MAX_FRAGMENT_SETS && !self.fragments.contains_key(&key) {
            let before = self.fragments.len();
            self.fragments
                .retain(|_, s| ts_ns - s.first_ts < FRAGMENT_TIMEOUT_NS);
            self.fragments_dropped += (before - self.fragments.len()) as u64;
            if self.fragments.len() >= MAX_FRAGMENT_SETS {
                self.fragments_dropped += 1;
                return Err(Skip::Fragment);
            }
        }
        let set = self.fragments.entry(key).or_insert_with(|| FragmentSet {
            first_ts: ts_ns,
            header: Vec::new(),
            parts: Vec::new(),
            total: None,
        });
        if offset == 0 {
            set.header = header;
        }
        if !more {
            set.total = Some(offset + body.len());
        }
        set.parts.push((offset, body.to_vec()));
        let Some(total) = set.total else {
            return Err(Skip::Fragment);
        };
        if set.header.is_empty() || total > 65_535 {
            return Err(Skip::Fragment);
        }
        let mut covered = vec![false; total];
        let mut whole = vec![0u8; total];
        for (off, data) in &set.parts {
            let end = (off + data.len()).min(total);
            if *off < end {
                whole[*off..end].copy_from_slice(&data[..end - off]);
                covered[*off..end].iter_mut().for_each(|c| *c = true);
            }
        }
        if !covered.iter().all(|c| *c) {
            return Err(Skip::Fragment);
        }
        self.fragments.remove(&key);
        Ok(whole)
    }
}

/// Skips the link header; returns the IP packet.
fn link_payload(linktype: u32, frame: &[u8]) -> Result<&[u8], Skip> {
    let (ethertype, rest) = match linktype {
        linktype::ETHERNET => {
            if frame.len() < 14 {
                return Err(Skip::Malformed);
            }
            let mut et = u16::from_be_bytes([frame[12], frame[13]]);
            let mut rest = &frame[14..];
            // 802.1Q, 802.1ad (QinQ) and the old 0x9100 tag: 4 bytes each, any depth.
            while matches!(et, 0x8100 | 0x88a8 | 0x9100) {
                if rest.len() < 4 {
                    return Err(Skip::Malformed);
                }
                et = u16::from_be_bytes([rest[2], rest[3]]);
                rest = &rest[4..];
            }
            (et, rest)
        }
        linktype::LINUX_SLL => {
            if frame.len() < 16 {
                return Err(Skip::Malformed);
            }
            (u16::from_be_bytes([frame[14], frame[15]]), &frame[16..])
        }
        linktype::LINUX_SLL2 => {
            if frame.len() < 20 {
                return Err(Skip::Malformed);
            }
            (u16::from_be_bytes([frame[0], frame[1]]), &frame[20..])
        }
        linktype::NULL | linktype::LOOP => {
            if frame.len() < 4 {
                return Err(Skip::Malformed);
            }
            // DLT_NULL is in the capturing host's byte order, DLT_LOOP in network order.
            let le = u32::from_le_bytes([frame[0], frame[1], frame[2], frame[3]]);
            let be = u32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
            let et = if le == 2 || be == 2 {
                0x0800
            } else if [24, 28, 30].contains(&le) || [24, 28, 30].contains(&be) {
                0x86dd
            } else {
                return Err(Skip::NotTcp);
            };
            (et, &frame[4..])
        }
        linktype::RAW
        | linktype::RAW_OPENBSD
        | linktype::RAW_BSD
        | linktype::IPV4
        | linktype::IPV6 => return Ok(frame),
        other => return Err(Skip::UnknownLinkType(other)),
    };
    match ethertype {
        0x0800 | 0x86dd => Ok(rest),
        _ => Err(Skip::NotTcp),
    }
}

fn tcp(ts_ns: i64, src: IpAddr, dst: IpAddr, body: &[u8], cut: bool) -> Result<Segment, Skip> {
    let h = TcpHeaderSlice::from_slice(body).map_err(|_| Skip::Malformed)?;
    let payload = &body[h.slice().len()..];
    Ok(Segment {
        ts_ns,
        src: SocketAddr::new(src, h.source_port()),
        dst: SocketAddr::new(dst, h.destination_port()),
        seq: h.sequence_number(),
        syn: h.syn(),
        ack: h.ack(),
        ack_no: h.acknowledgment_number(),
        fin: h.fin(),
        rst: h.rst(),
        payload: Bytes::copy_from_slice(payload),
        cut,
    })
}

/// Builds an Ethernet/IPv4/TCP frame: for tests and the benchmark generator.
#[allow(clippy::too_many_arguments)]
pub fn build_frame(
    src: SocketAddr,
    dst: SocketAddr,
    seq: u32,
    ack: u32,
    syn: bool,
    fin: bool,
    rst: bool,
    payload: &[u8],
) -> Vec<u8> {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        return Vec::new();
    };
    let mut b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(s.octets(), d.octets(), 64)
        .tcp(src.port(), dst.port(), seq, 65535);
    if syn {
        b = b.syn();
    }
    if fin {
        b = b.fin();
    }
    if rst {
        b = b.rst();
    }
    if !syn || ack != 0 {
        b = b.ack(ack);
    }
    let mut out = Vec::with_capacity(b.size(payload.len()));
    // Writing into a Vec cannot fail short of the payload exceeding an IPv4 packet.
    if b.write(&mut out, payload).is_err() {
        out.clear();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ethernet_vlan_sll2_and_null_frames_give_segments() {
        let a: SocketAddr = "10.0.0.1:5000".parse().expect("addr");
        let b: SocketAddr = "10.0.0.2:80".parse().expect("addr");
        let eth = build_frame(a, b, 7, 0, false, false, false, b"GET");
        let mut d = PacketDecoder::new();
        let s = d.decode(1, linktype::ETHERNET, &eth).expect("segment");
        assert_eq!(
            (s.src, s.dst, s.seq, &s.payload[..]),
            (a, b, 7, &b"GET"[..])
        );
        // QinQ: two tags between the MACs and the IPv4 ethertype.
        let mut qinq = eth[..12].to_vec();
        qinq.extend_from_slice(&[0x88, 0xa8, 0, 1, 0x81, 0x00, 0, 2]);
        qinq.extend_from_slice(&eth[12..]);
        assert_eq!(
            d.decode(1, linktype::ETHERNET, &qinq)
                .expect("segment")
                .payload,
            &b"GET"[..]
        );
        let mut sll2 = vec![0x08, 0x00];
        sll2.extend_from_slice(&[0; 18]);
        sll2.extend_from_slice(&eth[14..]);
        assert_eq!(
            d.decode(1, linktype::LINUX_SLL2, &sll2)
                .expect("segment")
                .src,
            a
        );
        let mut null = 2u32.to_le_bytes().to_vec();
        null.extend_from_slice(&eth[14..]);
        assert_eq!(d.decode(1, linktype::NULL, &null).expect("segment").dst, b);
        assert_eq!(
            d.decode(1, 147, &null).err(),
            Some(Skip::UnknownLinkType(147))
        );
    }
}
