"""An HTTP/1.1 server that accepts `Upgrade: h2c` (RFC 7540 §3.2) and answers stream 1
over HTTP/2, written as raw frames (stdlib only: no HTTP/2 library is needed for one
response). Prints `PORT n` once listening on 127.0.0.1.

The answer to the upgraded request is `:status 200`, `content-type: text/plain` and the
body `hello over h2c\n`.
"""
import struct

from tcp_serve import serve_forever

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
BODY = b"hello over h2c\n"


def frame(kind, flags, stream, payload):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def literal(name, value):
    # Literal header field without indexing, new name, no Huffman coding (RFC 7541 §6.2.2).
    return b"\x00" + bytes([len(name)]) + name + bytes([len(value)]) + value


def handle(conn):
    data = b""
    while b"\r\n\r\n" not in data:
        piece = conn.recv(4096)
        if not piece:
            return
        data += piece
    conn.sendall(
        b"HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
        + frame(4, 0, 0, b"")
    )
    rest = data.split(b"\r\n\r\n", 1)[1]
    while len(rest) < len(PREFACE) + 9:
        piece = conn.recv(4096)
        if not piece:
            return
        rest += piece
    # :status 200 is index 8 of the static table.
    block = b"\x88" + literal(b"content-type", b"text/plain")
    conn.sendall(
        frame(4, 1, 0, b"")
        + frame(1, 4, 1, block)
        + frame(0, 1, 1, BODY)
    )
    try:
        while conn.recv(4096):
            pass
    except OSError:
        pass
    conn.close()


def main():
    serve_forever(handle)


if __name__ == "__main__":
    main()
