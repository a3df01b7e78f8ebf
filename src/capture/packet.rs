//! From a captured frame to a TCP segment: link layers (Ethernet with VLAN tags, Linux
//! cooked SLL and SLL2 of `any`-interface captures, BSD null, raw IP), IPv4 and IPv6 (both
//! with fragment reassembly, see `fragments`), VXLAN and GENEVE encapsulations (cloud traffic
//! mirrors), then TCP. Shared by the pcap importer and the live sniffer.
//!
//! Header parsing is `etherparse`; the link layers it does not know (SLL2, BSD null), the
//! VLAN stacking and the overlay headers are a few fixed offsets, done here.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use etherparse::{
    Ipv4HeaderSlice, Ipv6FragmentHeaderSlice, Ipv6HeaderSlice, TcpHeaderSlice, UdpHeaderSlice,
};

use super::fragments::{Fragment, Key, Reassembly};

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

/// Encapsulations inside encapsulations followed at most this deep (a mirror of a mirror
/// is two; more is a crafted packet).
const MAX_NESTING: u8 = 4;
/// UDP ports of the overlay encapsulations cloud traffic mirrors use.
const VXLAN_PORT: u16 = 4789;
const GENEVE_PORT: u16 = 6081;

/// Frame decoder with the IP fragment reassembly state.
#[derive(Default)]
pub struct PacketDecoder {
    fragments: Reassembly,
    /// Packets taken out of a VXLAN or GENEVE encapsulation.
    pub decapsulated: u64,
    /// The buffer the frame being decoded lies in, while [`PacketDecoder::decode_in`] runs.
    owner: Option<Bytes>,
}

impl PacketDecoder {
    /// A decoder with no fragments pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fragmented datagrams given up on (timed out, evicted, inconsistent) or still
    /// incomplete.
    pub fn fragments_incomplete(&self) -> u64 {
        self.fragments.dropped + self.fragments.pending() as u64
    }

    /// Decodes one frame captured on a link of type `linktype`.
    ///
    /// # Errors
    /// [`Skip`] says why the frame carries no TCP segment.
    pub fn decode(&mut self, ts_ns: i64, linktype: u32, frame: &[u8]) -> Result<Segment, Skip> {
        self.decode_in(ts_ns, linktype, frame, None)
    }

    /// [`PacketDecoder::decode`] of a frame that lies in `owner`: the segment's payload is a
    /// slice of `owner` rather than a copy.
    ///
    /// # Errors
    /// [`Skip`] says why the frame carries no TCP segment.
    pub fn decode_in(
        &mut self,
        ts_ns: i64,
        linktype: u32,
        frame: &[u8],
        owner: Option<&Bytes>,
    ) -> Result<Segment, Skip> {
        self.owner = owner.cloned();
        let ip = link_payload(linktype, frame)?;
        let seg = self.ip(ts_ns, ip, 0);
        self.owner = None;
        seg
    }

    fn ip(&mut self, ts_ns: i64, ip: &[u8], depth: u8) -> Result<Segment, Skip> {
        match ip.first().map(|b| b >> 4) {
            Some(4) => self.ipv4(ts_ns, ip, depth),
            Some(6) => self.ipv6(ts_ns, ip, depth),
            _ => Err(Skip::Malformed),
        }
    }

    fn ipv4(&mut self, ts_ns: i64, ip: &[u8], depth: u8) -> Result<Segment, Skip> {
        let h = Ipv4HeaderSlice::from_slice(ip).map_err(|_| Skip::Malformed)?;
        let hl = h.slice().len();
        let total = usize::from(h.total_len()).max(hl);
        let cut = total > ip.len();
        let body = &ip[hl..total.min(ip.len())];
        let (src, dst) = (
            IpAddr::V4(h.source_addr()),
            IpAddr::V4(h.destination_addr()),
        );
        let proto = h.protocol().0;
        if !matches!(proto, TCP | UDP) {
            return Err(Skip::NotTcp);
        }
        if h.more_fragments() || u16::from(h.fragments_offset()) != 0 {
            let key = Key {
                src,
                dst,
                id: u32::from(h.identification()),
                proto,
            };
            let f = Fragment {
                offset: usize::from(u16::from(h.fragments_offset())) * 8,
                more: h.more_fragments(),
                proto,
                data: body,
                cut,
            };
            let (proto, whole) = self.fragments.add(ts_ns, key, f).ok_or(Skip::Fragment)?;
            return self.transport(ts_ns, (src, dst), proto, &whole, false, depth);
        }
        self.transport(ts_ns, (src, dst), proto, body, cut, depth)
    }

    fn ipv6(&mut self, ts_ns: i64, ip: &[u8], depth: u8) -> Result<Segment, Skip> {
        let h = Ipv6HeaderSlice::from_slice(ip).map_err(|_| Skip::Malformed)?;
        let total = 40 + usize::from(h.payload_length());
        let cut = total > ip.len();
        let (src, dst) = (
            IpAddr::V6(h.source_addr()),
            IpAddr::V6(h.destination_addr()),
        );
        let (next, body) = extension_headers(h.next_header().0, &ip[40..total.min(ip.len())])?;
        if next != IPV6_FRAGMENT {
            return self.transport(ts_ns, (src, dst), next, body, cut, depth);
        }
        let fh = Ipv6FragmentHeaderSlice::from_slice(body).map_err(|_| Skip::Malformed)?;
        let data = &body[fh.slice().len()..];
        if !fh.is_fragmenting_payload() {
            // An "atomic" fragment (offset 0, no more): the payload is whole already.
            let (next, body) = extension_headers(fh.next_header().0, data)?;
            return self.transport(ts_ns, (src, dst), next, body, cut, depth);
        }
        let key = Key {
            src,
            dst,
            id: fh.identification(),
            proto: 0,
        };
        let f = Fragment {
            offset: usize::from(u16::from(fh.fragment_offset())) * 8,
            more: fh.more_fragments(),
            proto: fh.next_header().0,
            data,
            cut,
        };
        let (proto, whole) = self.fragments.add(ts_ns, key, f).ok_or(Skip::Fragment)?;
        // The fragmentable part may start with destination options before the transport.
        let (next, body) = extension_headers(proto, &whole)?;
        self.transport(ts_ns, (src, dst), next, body, false, depth)
    }

    /// A whole IP payload: TCP becomes a segment, VXLAN and GENEVE over UDP are opened and
    /// their inner frame decoded, anything else is skipped.
    fn transport(
        &mut self,
        ts_ns: i64,
        (src, dst): (IpAddr, IpAddr),
        proto: u8,
        body: &[u8],
        cut: bool,
        depth: u8,
    ) -> Result<Segment, Skip> {
        match proto {
            TCP => tcp(ts_ns, src, dst, body, cut, self.owner.as_ref()),
            UDP if depth < MAX_NESTING => {
                let u = UdpHeaderSlice::from_slice(body).map_err(|_| Skip::Malformed)?;
                let payload = &body[8..];
                let inner = match u.destination_port() {
                    VXLAN_PORT => vxlan(payload)?,
                    GENEVE_PORT => geneve(payload)?,
                    _ => return Err(Skip::NotTcp),
                };
                self.decapsulated += 1;
                let ip = match inner {
                    Inner::Ethernet(frame) => link_payload(linktype::ETHERNET, frame)?,
                    Inner::Ip(ip) => ip,
                };
                self.ip(ts_ns, ip, depth + 1)
            }
            _ => Err(Skip::NotTcp),
        }
    }
}

const TCP: u8 = 6;
const UDP: u8 = 17;
const IPV6_FRAGMENT: u8 = 44;

/// Walks IPv6 extension headers (hop-by-hop, routing, destination options, authentication)
/// up to the transport or a fragment header; returns its number and what follows.
fn extension_headers(mut next: u8, mut body: &[u8]) -> Result<(u8, &[u8]), Skip> {
    loop {
        let len = match next {
            0 | 43 | 60 => (usize::from(*body.get(1).ok_or(Skip::Malformed)?) + 1) * 8,
            // The authentication header counts 4-byte words, minus 2 (RFC 4302 §2.2).
            51 => (usize::from(*body.get(1).ok_or(Skip::Malformed)?) + 2) * 4,
            _ => return Ok((next, body)),
        };
        if body.len() < len {
            return Err(Skip::Malformed);
        }
        next = body[0];
        body = &body[len..];
    }
}

/// What an overlay encapsulation carries.
enum Inner<'a> {
    Ethernet(&'a [u8]),
    Ip(&'a [u8]),
}

/// VXLAN (RFC 7348 §5): 8 bytes, flags with the I bit (a valid VNI), then an Ethernet frame.
/// Parsed by hand: etherparse has no VXLAN or GENEVE header, and both are fixed offsets.
fn vxlan(p: &[u8]) -> Result<Inner<'_>, Skip> {
    if p.len() < 8 + 14 || p[0] & 0x08 == 0 {
        return Err(Skip::Malformed);
    }
    Ok(Inner::Ethernet(&p[8..]))
}

/// GENEVE (RFC 8926 §3.4): version, options length in 4-byte words, the O (control) bit, a
/// protocol type (an ethertype; 0x6558 is an Ethernet frame), the VNI, then the options.
fn geneve(p: &[u8]) -> Result<Inner<'_>, Skip> {
    if p.len() < 8 || p[0] >> 6 != 0 {
        return Err(Skip::Malformed);
    }
    if p[1] & 0x80 != 0 {
        // A control message for the tunnel endpoints, no mirrored traffic.
        return Err(Skip::NotTcp);
    }
    let start = 8 + usize::from(p[0] & 0x3f) * 4;
    let inner = p.get(start..).ok_or(Skip::Malformed)?;
    match u16::from_be_bytes([p[2], p[3]]) {
        0x6558 => Ok(Inner::Ethernet(inner)),
        0x0800 | 0x86dd => Ok(Inner::Ip(inner)),
        _ => Err(Skip::NotTcp),
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

fn tcp(
    ts_ns: i64,
    src: IpAddr,
    dst: IpAddr,
    body: &[u8],
    cut: bool,
    owner: Option<&Bytes>,
) -> Result<Segment, Skip> {
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
        payload: share(owner, payload),
        cut,
    })
}

/// `part` as a slice of `owner` when it lies inside it, else a copy (a reassembled IP
/// datagram lies in the fragment buffer, not in the capture's).
fn share(owner: Option<&Bytes>, part: &[u8]) -> Bytes {
    if let Some(owner) = owner {
        let base = owner.as_ptr() as usize;
        let at = part.as_ptr() as usize;
        if at >= base && at + part.len() <= base + owner.len() {
            return owner.slice(at - base..at - base + part.len());
        }
    }
    Bytes::copy_from_slice(part)
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
#[path = "packet_tests.rs"]
mod tests;
