"""Writes a large synthetic pcap of mixed HTTP/1.1 and gRPC (h2c) traffic for `import.sh`.

Usage: gen_capture.py FILE SIZE_MB [http1]. Prints `REQUESTS n` (the exchange count a
correct importer finds). With `http1`, only keep-alive HTTP/1.1 connections (GETs and
POSTs, API-sized bodies from empty to a few kilobytes, now and then 30 kB, some chunked): what `import.sh` makes lossy
to compare pairing with tshark's. Frames are built from templates (Ethernet/IPv4/TCP, checksums left zero:
importers do not verify them, and tshark does not by default).
"""
import struct
import sys

path, size_mb = sys.argv[1], int(sys.argv[2])
http1_only = len(sys.argv) > 3 and sys.argv[3] == "http1"
target = size_mb * 1_000_000
out = open(path, "wb", buffering=1 << 22)
out.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
written = 24
ts = 1_700_000_000_000_000  # microseconds
MSS = 1448


def frame(src, dst, sport, dport, seq, ack, flags, payload):
    ip_len = 20 + 20 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_len, 0, 0x4000, 64, 6, 0, src, dst)
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags, 65535, 0, 0)
    return b"\x02\x00\x00\x00\x00\x02\x02\x00\x00\x00\x00\x01\x08\x00" + ip + tcp + payload


def put(data):
    global written, ts
    ts += 7
    out.write(struct.pack("<IIII", ts // 1_000_000, ts % 1_000_000, len(data), len(data)))
    out.write(data)
    written += 16 + len(data)


SYN, ACK, PSH, FIN = 0x02, 0x10, 0x08, 0x01


class Conn:
    def __init__(self, n, port):
        self.c = bytes([10, 0, (n >> 8) & 255, n & 255])
        self.s = bytes([10, 1, 0, 1])
        self.cp, self.sp = 1024 + n % 60000, port
        self.cseq, self.sseq = 1000, 500000
        put(frame(self.c, self.s, self.cp, self.sp, self.cseq, 0, SYN, b""))
        put(frame(self.s, self.c, self.sp, self.cp, self.sseq, self.cseq + 1, SYN | ACK, b""))
        self.cseq += 1
        self.sseq += 1

    def send(self, from_client, data):
        for i in range(0, len(data), MSS):
            part = data[i:i + MSS]
            if from_client:
                put(frame(self.c, self.s, self.cp, self.sp, self.cseq, self.sseq, PSH | ACK, part))
                self.cseq += len(part)
            else:
                put(frame(self.s, self.c, self.sp, self.cp, self.sseq, self.cseq, PSH | ACK, part))
                self.sseq += len(part)

    def close(self):
        put(frame(self.c, self.s, self.cp, self.sp, self.cseq, self.sseq, FIN | ACK, b""))
        put(frame(self.s, self.c, self.sp, self.cp, self.sseq, self.cseq + 1, FIN | ACK, b""))


def lit(name, value):
    # HPACK literal header field without indexing, new name, no Huffman (RFC 7541 §6.2.2).
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def h2frame(kind, flags, stream, payload):
    return struct.pack("!I", len(payload))[1:] + bytes([kind, flags]) + struct.pack("!I", stream) + payload


body_req = bytes(range(256)) * 8          # 2 KiB
body_resp = (b"0123456789abcdef" * 512)   # 8 KiB
grpc_req = b"\x00" + struct.pack("!I", 2048) + bytes(2048)
grpc_resp = b"\x00" + struct.pack("!I", 4096) + b"\x07" * 4096
requests = 0
n = 0


def http1_mixed(conn, n):
    """Twenty exchanges of assorted shapes, each telling its number in `X-Req`."""
    global requests
    for i in range(20):
        k = (n * 20 + i) * 2654435761 & 0xFFFFFFFF
        # API-sized answers, about 600 bytes an exchange on the wire as in the lossy
        # production capture this mode stands for; now and then a larger one.
        size = (0, 40, 120, 300, 700, 2500)[k % 6] if k % 50 else 30000
        if k % 3 == 0:
            body = body_req[: (k >> 8) % 600]
            head = b"POST /r/%d HTTP/1.1\r\nHost: bench\r\nContent-Length: %d\r\n\r\n" % (requests, len(body))
            conn.send(True, head + body)
        else:
            conn.send(True, b"GET /r/%d?size=%d HTTP/1.1\r\nHost: bench\r\nAccept: */*\r\n\r\n" % (requests, size))
        payload = (body_resp * 5)[:size]
        if k % 7 == 0:
            chunks = b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in (payload[j:j + 4000] for j in range(0, len(payload), 4000)) if c)
            conn.send(False, b"HTTP/1.1 200 OK\r\nX-Req: %d\r\nTransfer-Encoding: chunked\r\n\r\n" % requests + chunks + b"0\r\n\r\n")
        else:
            conn.send(False, b"HTTP/1.1 200 OK\r\nX-Req: %d\r\nContent-Length: %d\r\n\r\n" % (requests, len(payload)) + payload)
        requests += 1


while written < target:
    n += 1
    if http1_only:
        conn = Conn(n, 8080)
        http1_mixed(conn, n)
    elif n % 2:
        conn = Conn(n, 8080)
        for i in range(20):
            req = b"POST /api/items/%d HTTP/1.1\r\nHost: bench\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % (i, len(body_req)) + body_req
            conn.send(True, req)
            conn.send(False, b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n" % len(body_resp) + body_resp)
            requests += 1
    else:
        conn = Conn(n, 50051)
        conn.send(True, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2frame(4, 0, 0, b""))
        conn.send(False, h2frame(4, 0, 0, b"") + h2frame(4, 1, 0, b""))
        for i in range(20):
            sid = 2 * i + 1
            hdrs = lit(b":method", b"POST") + lit(b":scheme", b"http") + lit(b":path", b"/bench.Svc/Call") + lit(b":authority", b"bench") + lit(b"content-type", b"application/grpc") + lit(b"te", b"trailers")
            conn.send(True, h2frame(1, 4, sid, hdrs) + h2frame(0, 1, sid, grpc_req))
            resp = h2frame(1, 4, sid, lit(b":status", b"200") + lit(b"content-type", b"application/grpc"))
            resp += h2frame(0, 0, sid, grpc_resp) + h2frame(1, 5, sid, lit(b"grpc-status", b"0"))
            conn.send(False, resp)
            requests += 1
    conn.close()
out.close()
print("REQUESTS", requests)
