"""A software packet mirror, as cloud packet mirroring works: every frame seen on an
interface (both directions) is sent, whole, inside GENEVE (RFC 8926) over UDP to a collector
(stdlib only; Linux, needs CAP_NET_RAW).

    geneve_mirror.py IFACE COLLECTOR_IP VNI

Each GENEVE header carries two options (12 bytes: a 4-byte-value TLV and an empty one), so
that a reader must skip variable-length options to find the frame. Prints `MIRRORING COLLECTOR:6081` once
the raw socket is bound, then mirrors until killed. Frames longer than a UDP datagram can
carry are counted and skipped (the test keeps GSO frames well below that).
"""
import socket
import struct
import sys

ETH_P_ALL = 0x0003
GENEVE_PORT = 6081
MAX_UDP = 65507


def main(iface, collector, vni):
    raw = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_ALL))
    raw.bind((iface, 0))
    out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    options = (
        struct.pack("!HBB", 0x0103, 0x01, 1) + b"\xaa\xbb\xcc\xdd"
        + struct.pack("!HBB", 0x0103, 0x82, 0)
    )
    header = struct.pack("!BBH", len(options) // 4, 0, 0x6558) + struct.pack("!I", vni << 8)
    print("MIRRORING %s:%d" % (collector, GENEVE_PORT), flush=True)
    skipped = 0
    while True:
        frame = raw.recv(1 << 17)
        datagram = header + options + frame
        if len(datagram) > MAX_UDP:
            skipped += 1
            print("SKIPPED", skipped, file=sys.stderr, flush=True)
            continue
        out.sendto(datagram, (collector, GENEVE_PORT))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]))
