"""Splits the IPv6 TCP packets of a classic pcap (Ethernet link type) into IPv6 fragments
(RFC 8200 §4.5), deterministically (stdlib only).

    ipv6_fragment.py IN OUT SIZE [DROP]

Every IPv6 packet whose TCP part is longer than SIZE bytes (a multiple of 8) becomes
fragments of SIZE bytes, each a packet of its own with a Fragment header (identification
counting from 1). Every other fragmented packet has its fragments written last-first, so
that a reader must reassemble out of order. With DROP, the second fragment of the DROP-th
fragmented packet is left out (a datagram that can never be completed). Prints one JSON
line: {"packets", "fragmented", "fragments", "dropped"}.
"""
import json
import struct
import sys


def main(src, dst, size, drop):
    data = open(src, "rb").read()
    assert data[:4] == b"\xd4\xc3\xb2\xa1", "classic little-endian µs pcap expected"
    assert struct.unpack("<I", data[20:24])[0] == 1, "Ethernet link type expected"
    out = [data[:24]]
    at, packets, fragmented, fragments, dropped, ident = 24, 0, 0, 0, 0, 0
    while at + 16 <= len(data):
        sec, usec, incl, orig = struct.unpack("<IIII", data[at : at + 16])
        frame = data[at + 16 : at + 16 + incl]
        at += 16 + incl
        packets += 1
        eth, ip = frame[:14], frame[14:]
        if eth[12:14] != b"\x86\xdd" or len(ip) < 40 or ip[6] != 6 or len(ip) - 40 <= size:
            out.append(struct.pack("<IIII", sec, usec, incl, orig) + frame)
            continue
        fragmented += 1
        ident += 1
        payload = ip[40:]
        pieces = []
        for off in range(0, len(payload), size):
            chunk = payload[off : off + size]
            more = off + len(chunk) < len(payload)
            head = bytearray(ip[:40])
            head[4:6] = struct.pack("!H", 8 + len(chunk))
            head[6] = 44
            frag = struct.pack("!BBHI", 6, 0, (off // 8) << 3 | int(more), ident)
            pieces.append(eth + bytes(head) + frag + chunk)
        if drop and fragmented == drop:
            del pieces[1]
            dropped += 1
        if fragmented % 2 == 0:
            pieces.reverse()
        for p in pieces:
            out.append(struct.pack("<IIII", sec, usec, len(p), len(p)) + p)
            fragments += 1
    open(dst, "wb").write(b"".join(out))
    print(json.dumps({"packets": packets, "fragmented": fragmented,
                      "fragments": fragments, "dropped": dropped}))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]) if len(sys.argv) > 4 else 0)
