"""A WebSocket client written on a bare socket with zlib, independent of any WebSocket
library, for the fidelity tests. It offers permessage-deflate with the parameters given,
follows what the server answered (RFC 7692), and checks it: each compressed message is
inflated with the server's agreed window, afresh for every message when the server agreed
to server_no_context_takeover, so a reference beyond either fails here.

Usage: ws_raw_deflate_client.py URL OFFER

Same scenario and output as ws_deflate_client.py, then one more line:
{"compressed_messages": n} — how many received messages had RSV1 set.
"""
import base64
import hashlib
import json
import os
import socket
import struct
import sys
import zlib
from urllib.parse import urlsplit

TAIL = b"\x00\x00\xff\xff"


def params_of(answer):
    """The permessage-deflate parameters of the server's answer, or None."""
    if not answer:
        return None
    for element in answer.split(","):
        parts = [p.strip() for p in element.split(";")]
        if parts[0].lower() == "permessage-deflate":
            out = {}
            for p in parts[1:]:
                k, _, v = p.partition("=")
                out[k.strip().lower()] = v.strip().strip('"') or True
            return out
    return None


class Conn:
    def __init__(self, url, offer):
        u = urlsplit(url)
        self.sock = socket.create_connection((u.hostname, u.port), timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        path = u.path or "/"
        req = (
            f"GET {path} HTTP/1.1\r\nHost: {u.netloc}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
            f"Sec-WebSocket-Extensions: {offer}\r\n\r\n"
        )
        self.sock.sendall(req.encode())
        self.buf = b""
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.recv_some()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        assert lines[0].split()[1] == "101", lines[0]
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        accept = base64.b64encode(
            hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()
        ).decode()
        assert headers.get("sec-websocket-accept") == accept, headers
        self.answer = headers.get("sec-websocket-extensions")
        self.params = params_of(self.answer)
        self.compressed_messages = 0
        self.compressor = None
        self.decompressor = None

    def recv_some(self):
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("server closed the connection")
        return data

    def read_exact(self, n):
        while len(self.buf) < n:
            self.buf += self.recv_some()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def read_frame(self):
        b0, b1 = self.read_exact(2)
        assert not b1 & 0x80, "server frames are not masked"
        n = b1 & 0x7F
        if n == 126:
            n = struct.unpack("!H", self.read_exact(2))[0]
        elif n == 127:
            n = struct.unpack("!Q", self.read_exact(8))[0]
        return bool(b0 & 0x80), bool(b0 & 0x40), b0 & 0x0F, self.read_exact(n)

    def send_frame(self, fin, rsv1, opcode, payload):
        mask = os.urandom(4)
        b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", b0, 0x80 | n)
        elif n < 65536:
            head = struct.pack("!BBH", b0, 0x80 | 126, n)
        else:
            head = struct.pack("!BBQ", b0, 0x80 | 127, n)
        masked = bytes(c ^ mask[i % 4] for i, c in enumerate(payload))
        self.sock.sendall(head + mask + masked)

    def send_message(self, opcode, parts):
        """Sends one message as len(parts) frames, compressed when deflate was agreed."""
        p = self.params
        if p is not None and (self.compressor is None or "client_no_context_takeover" in p):
            self.compressor = zlib.compressobj(wbits=-15)
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            data = part
            if p is not None:
                data = self.compressor.compress(part) + self.compressor.flush(zlib.Z_SYNC_FLUSH)
                if last:
                    assert data.endswith(TAIL)
                    data = data[: -len(TAIL)]
            self.send_frame(last, p is not None and i == 0, opcode if i == 0 else 0, data)

    def recv_message(self):
        """The next data message (opcode, payload); pings are answered; close → None."""
        opcode, compressed, chunks = None, False, []
        while True:
            fin, rsv1, op, payload = self.read_frame()
            if op == 0x9:
                self.send_frame(True, False, 0xA, payload)
                continue
            if op == 0x8:
                return 0x8, payload
            if op != 0:
                opcode, compressed = op, rsv1
            chunks.append(payload)
            if fin:
                break
        data = b"".join(chunks)
        if compressed:
            assert self.params is not None, "RSV1 without permessage-deflate"
            self.compressed_messages += 1
            bits = int(self.params.get("server_max_window_bits", 15))
            if self.decompressor is None or "server_no_context_takeover" in self.params:
                self.decompressor = zlib.decompressobj(wbits=-bits)
            data = self.decompressor.decompress(data + TAIL)
        return opcode, data


def show(opcode, data):
    if opcode == 0x2:
        return {"binary": data.hex()}
    text = data.decode()
    if len(text) > 200:
        return {"text_sha256": hashlib.sha256(data).hexdigest(), "len": len(text)}
    return {"text": text}


def main(url, offer):
    c = Conn(url, offer)
    out = [{"extensions": c.answer}]
    out.append(show(*c.recv_message()))
    for opcode, parts in [
        (1, [b"hello"]),
        (1, [b"big"]),
        # Fragmented as websockets fragments it (an empty final frame): the replay matches
        # client frames one by one.
        (1, [b"cli", b"ent", b""]),
        (1, [b"hello"]),
        (2, [b"\x01\x02\x03"]),
        (1, [b"frag"]),
    ]:
        c.send_message(opcode, parts)
        out.append(show(*c.recv_message()))
    c.send_frame(True, False, 0x8, struct.pack("!H", 1000) + b"done")
    op, payload = c.recv_message()
    assert op == 0x8, op
    code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else 1005
    out.append({"closed": code, "reason": payload[2:].decode()})
    out.append({"compressed_messages": c.compressed_messages})
    c.sock.close()
    for line in out:
        print(json.dumps(line), flush=True)


main(sys.argv[1], sys.argv[2])
