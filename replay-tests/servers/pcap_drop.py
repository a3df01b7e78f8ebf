"""Removes TCP segments from a classic pcap file, deterministically, to make a capture with
loss (stdlib only).

    pcap_drop.py IN OUT EVERY SEED

Every EVERY-th IPv4 TCP segment carrying payload (counting from an offset drawn from SEED)
is left out. Prints one JSON line: how many segments were dropped, and which request heads
(`GET /r/I`, `POST /r/I`) and response heads (`X-Req: I`) they carried, so that a test
knows which exchanges no pairing could recover.
"""
import json
import random
import re
import struct
import sys

REQ = re.compile(rb"(?:GET|POST) /r/(\d+)")
RESP = re.compile(rb"HTTP/1\.1 \d{3}[^\r\n]*\r\n(?:[^\r\n]+\r\n)*?X-Req: (\d+)", re.I)


def tcp_payload(frame, linktype):
    if linktype == 1:
        if len(frame) < 14 or frame[12:14] != b"\x08\x00":
            return None
        ip = frame[14:]
    elif linktype in (101, 228):
        ip = frame
    else:
        return None
    if len(ip) < 20 or ip[0] >> 4 != 4 or ip[9] != 6:
        return None
    ihl = (ip[0] & 0x0F) * 4
    total = struct.unpack(">H", ip[2:4])[0]
    tcp = ip[ihl:total]
    if len(tcp) < 20:
        return None
    return tcp[(tcp[12] >> 4) * 4 :]


def main(src, dst, every, seed):
    data = open(src, "rb").read()
    magic = data[:4]
    endian = "<" if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    linktype = struct.unpack(endian + "I", data[20:24])[0]
    out = [data[:24]]
    count = random.Random(seed).randrange(every)
    dropped, lost_req, lost_resp = 0, set(), set()
    at = 24
    while at + 16 <= len(data):
        incl = struct.unpack(endian + "I", data[at + 8 : at + 12])[0]
        record = data[at : at + 16 + incl]
        at += 16 + incl
        payload = tcp_payload(record[16:], linktype)
        if payload:
            count += 1
            if count % every == 0:
                dropped += 1
                lost_req.update(int(m) for m in REQ.findall(payload))
                lost_resp.update(int(m) for m in RESP.findall(payload))
                continue
        out.append(record)
    open(dst, "wb").write(b"".join(out))
    print(json.dumps({
        "dropped": dropped,
        "lost_request_heads": sorted(lost_req),
        "lost_response_heads": sorted(lost_resp),
    }), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
