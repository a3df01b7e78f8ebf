//! Unit tests of the frame decoder: link layers, fragments, overlay encapsulations.

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

#[test]
fn linux_cooked_sll_frames_give_segments() {
    let a: SocketAddr = "10.0.0.1:5000".parse().expect("addr");
    let b: SocketAddr = "10.0.0.2:80".parse().expect("addr");
    let eth = build_frame(a, b, 9, 0, false, false, false, b"HEAD");
    // Packet type, ARPHRD_ETHER, address length and address, then the ethertype.
    let mut sll = vec![0, 4, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&eth[14..]);
    let s = PacketDecoder::new()
        .decode(1, linktype::LINUX_SLL, &sll)
        .expect("segment");
    assert_eq!((s.src, s.dst, &s.payload[..]), (a, b, &b"HEAD"[..]));
}

/// Ethernet/IPv4/UDP to `port` around `inner`.
fn udp_frame(port: u16, inner: &[u8]) -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 3], [2, 0, 0, 0, 0, 4])
        .ipv4([172, 16, 0, 1], [172, 16, 0, 2], 64)
        .udp(49152, port);
    let mut out = Vec::new();
    b.write(&mut out, inner).expect("udp frame");
    out
}

#[test]
fn vxlan_and_geneve_are_opened_to_the_inner_segment() {
    let a: SocketAddr = "192.168.42.1:40000".parse().expect("addr");
    let b: SocketAddr = "192.168.42.2:8080".parse().expect("addr");
    let inner = build_frame(a, b, 100, 5, false, false, false, b"GET / HTTP/1.1\r\n\r\n");
    let mut d = PacketDecoder::new();

    let mut vx = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    vx.extend_from_slice(&inner);
    let s = d
        .decode(1, linktype::ETHERNET, &udp_frame(4789, &vx))
        .expect("vxlan");
    assert_eq!((s.src, s.dst, s.seq), (a, b, 100));
    assert_eq!(&s.payload[..], b"GET / HTTP/1.1\r\n\r\n");
    // Without the I flag the header is not VXLAN.
    let mut bad = vx.clone();
    bad[0] = 0;
    assert_eq!(
        d.decode(1, linktype::ETHERNET, &udp_frame(4789, &bad))
            .err(),
        Some(Skip::Malformed)
    );

    // GENEVE with 12 bytes of options (two TLVs), Ethernet inside.
    let mut gn = vec![3, 0, 0x65, 0x58, 0, 0, 7, 0];
    gn.extend_from_slice(&[0x01, 0x02, 0x80, 0x01, 0xaa, 0xbb, 0xcc, 0xdd]);
    gn.extend_from_slice(&[0x01, 0x03, 0x01, 0x00]);
    gn.extend_from_slice(&inner);
    let s = d
        .decode(1, linktype::ETHERNET, &udp_frame(6081, &gn))
        .expect("geneve");
    assert_eq!((s.src, s.dst, s.ack_no), (a, b, 5));
    // GENEVE carrying IPv4 directly.
    let mut gn_ip = vec![0, 0, 0x08, 0x00, 0, 0, 7, 0];
    gn_ip.extend_from_slice(&inner[14..]);
    assert_eq!(
        d.decode(1, linktype::ETHERNET, &udp_frame(6081, &gn_ip))
            .expect("geneve ip")
            .dst,
        b
    );
    // Options longer than the packet, and a control message.
    let mut short = gn.clone();
    short[0] = 0x3f;
    short.truncate(40);
    assert_eq!(
        d.decode(1, linktype::ETHERNET, &udp_frame(6081, &short))
            .err(),
        Some(Skip::Malformed)
    );
    let mut control = gn.clone();
    control[1] = 0x80;
    assert_eq!(
        d.decode(1, linktype::ETHERNET, &udp_frame(6081, &control))
            .err(),
        Some(Skip::NotTcp)
    );
    assert_eq!(d.decapsulated, 3);
    // Other UDP is no tunnel.
    assert_eq!(
        d.decode(1, linktype::ETHERNET, &udp_frame(53, &vx)).err(),
        Some(Skip::NotTcp)
    );
}

#[test]
fn nested_encapsulation_is_bounded() {
    let a: SocketAddr = "10.0.0.1:5000".parse().expect("addr");
    let b: SocketAddr = "10.0.0.2:80".parse().expect("addr");
    let mut frame = build_frame(a, b, 1, 0, false, false, false, b"x");
    for _ in 0..6 {
        let mut vx = vec![0x08, 0, 0, 0, 0, 0, 1, 0];
        vx.extend_from_slice(&frame);
        frame = udp_frame(4789, &vx);
    }
    assert_eq!(
        PacketDecoder::new()
            .decode(1, linktype::ETHERNET, &frame)
            .err(),
        Some(Skip::NotTcp)
    );
}

/// An IPv6/TCP packet's IP part, then cut into fragments of `size` payload bytes (the last
/// shorter), each a whole IPv6 packet with a fragment header.
fn ipv6_fragments(payload: &[u8], size: usize, id: u32) -> (Vec<u8>, Vec<Vec<u8>>) {
    let b = etherparse::PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64)
        .tcp(40000, 8080, 77, 65535)
        .ack(1);
    let mut whole = Vec::new();
    b.write(&mut whole, payload).expect("ipv6 packet");
    let tcp = &whole[40..];
    let mut out = Vec::new();
    for (i, chunk) in tcp.chunks(size).enumerate() {
        let offset = i * size;
        let more = offset + chunk.len() < tcp.len();
        let mut p = whole[..40].to_vec();
        p[4..6].copy_from_slice(&((8 + chunk.len()) as u16).to_be_bytes());
        p[6] = 44;
        p.extend_from_slice(&[6, 0]);
        p.extend_from_slice(&(((offset / 8) as u16) << 3 | u16::from(more)).to_be_bytes());
        p.extend_from_slice(&id.to_be_bytes());
        p.extend_from_slice(chunk);
        out.push(p);
    }
    (whole, out)
}

#[test]
fn ipv6_fragments_are_reassembled_in_any_order() {
    let body: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
    let (_, mut frags) = ipv6_fragments(&body, 1232, 9);
    assert_eq!(frags.len(), 3);
    frags.swap(0, 2);
    let mut d = PacketDecoder::new();
    assert_eq!(
        d.decode(1, linktype::IPV6, &frags[0]).err(),
        Some(Skip::Fragment)
    );
    assert_eq!(
        d.decode(2, linktype::IPV6, &frags[1]).err(),
        Some(Skip::Fragment)
    );
    // A duplicate changes nothing.
    assert_eq!(
        d.decode(2, linktype::IPV6, &frags[1]).err(),
        Some(Skip::Fragment)
    );
    let s = d.decode(3, linktype::IPV6, &frags[2]).expect("reassembled");
    assert_eq!((s.seq, s.src.port(), s.dst.port()), (77, 40000, 8080));
    assert_eq!(&s.payload[..], &body[..]);
    assert_eq!(d.fragments_incomplete(), 0);

    // An atomic fragment (offset 0, no more) is a whole packet.
    let (_, one) = ipv6_fragments(b"tiny", 2000, 10);
    assert_eq!(
        &d.decode(4, linktype::IPV6, &one[0])
            .expect("atomic")
            .payload[..],
        b"tiny"
    );
}

#[test]
fn incomplete_fragments_time_out_and_are_counted() {
    let body = vec![7u8; 2500];
    let (_, frags) = ipv6_fragments(&body, 1232, 11);
    let mut d = PacketDecoder::new();
    let sec = 1_000_000_000i64;
    assert_eq!(
        d.decode(sec, linktype::IPV6, &frags[0]).err(),
        Some(Skip::Fragment)
    );
    assert_eq!(d.fragments_incomplete(), 1);
    // 31 s later (capture time) another datagram's fragment sweeps the stale one out, and
    // the late rest of the first no longer completes it.
    let (_, other) = ipv6_fragments(&body, 1232, 12);
    assert_eq!(
        d.decode(32 * sec, linktype::IPV6, &other[0]).err(),
        Some(Skip::Fragment)
    );
    assert_eq!(d.fragments.dropped, 1);
    for f in &frags[1..] {
        assert_eq!(
            d.decode(32 * sec, linktype::IPV6, f).err(),
            Some(Skip::Fragment)
        );
    }
    assert_eq!(d.fragments_incomplete(), 3);
}

#[test]
fn fragment_memory_is_bounded() {
    let mut d = PacketDecoder::new();
    // Far more first fragments than the table holds, none ever completed.
    for id in 0..5000u32 {
        let (_, frags) = ipv6_fragments(&[1u8; 3000], 1232, id);
        assert_eq!(
            d.decode(1, linktype::IPV6, &frags[0]).err(),
            Some(Skip::Fragment)
        );
    }
    assert!(d.fragments.pending() <= 1024);
    assert_eq!(d.fragments_incomplete(), 5000);
    // A fragment beyond the largest datagram is refused outright.
    let (_, mut frags) = ipv6_fragments(&[1u8; 3000], 1232, 99_999);
    frags[1][42..44].copy_from_slice(&(8190u16 << 3 | 1).to_be_bytes());
    assert_eq!(
        d.decode(1, linktype::IPV6, &frags[1]).err(),
        Some(Skip::Fragment)
    );
}

#[test]
fn ipv4_fragments_of_a_vxlan_datagram_are_reassembled() {
    let a: SocketAddr = "192.168.42.1:40000".parse().expect("addr");
    let b: SocketAddr = "192.168.42.2:8080".parse().expect("addr");
    let body = vec![b'z'; 1400];
    let inner = build_frame(a, b, 5, 6, false, false, false, &body);
    let mut vx = vec![0x08, 0, 0, 0, 0, 0, 42, 0];
    vx.extend_from_slice(&inner);
    let whole = udp_frame(4789, &vx);
    // Split the outer IPv4 payload (UDP header + VXLAN + inner frame) at 800 bytes.
    let ip = &whole[14..];
    let payload = &ip[20..];
    let mut parts = Vec::new();
    for (off, chunk, more) in [(0, &payload[..800], true), (800, &payload[800..], false)] {
        let mut h = ip[..20].to_vec();
        h[2..4].copy_from_slice(&((20 + chunk.len()) as u16).to_be_bytes());
        h[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
        h[6..8].copy_from_slice(&(u16::from(more) << 13 | (off / 8) as u16).to_be_bytes());
        h.extend_from_slice(chunk);
        parts.push(h);
    }
    let mut d = PacketDecoder::new();
    assert_eq!(
        d.decode(1, linktype::RAW, &parts[1]).err(),
        Some(Skip::Fragment)
    );
    let s = d.decode(1, linktype::RAW, &parts[0]).expect("reassembled");
    assert_eq!((s.src, s.dst, s.payload.len()), (a, b, 1400));
}
