"""A target that fails every request in one way, for `mf replay --to` (stdlib only).

Usage: bad_target.py reset|garbage|hang
  reset:   reads the request head, then resets the connection (RST).
  garbage: answers bytes that are no HTTP response, then closes.
  hang:    reads the request and never answers (until the process ends).
Prints `PORT n` once listening on 127.0.0.1.
"""
import socket
import struct
import sys
import threading

MODE = sys.argv[1]


def serve(conn):
    with conn:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = conn.recv(4096)
            if not chunk:
                return
            data += chunk
        if MODE == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        elif MODE == "garbage":
            conn.sendall(b"\x00\x01 this is not HTTP at all \xff\r\n\r\n")
        elif MODE == "hang":
            while conn.recv(4096):
                pass


def main():
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    print(f"PORT {listener.getsockname()[1]}", flush=True)
    while True:
        conn, _ = listener.accept()
        threading.Thread(target=serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    main()
