"""A minimal HTTP CONNECT proxy for the tunnel capture tests (stdlib only).

    connect_proxy.py            answers CONNECT with 200 and relays bytes both ways
    connect_proxy.py silent     reads the CONNECT and never answers

Prints `PORT n` once listening on 127.0.0.1.
"""
import socket
import sys
import threading

from tcp_serve import serve_forever


def relay(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
    except OSError:
        pass
    finally:
        try:
            dst.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def handle(conn, silent):
    head = b""
    while b"\r\n\r\n" not in head:
        data = conn.recv(4096)
        if not data:
            conn.close()
            return
        head += data
    if silent:
        # Hold the connection open and say nothing until the client gives up.
        while conn.recv(4096):
            pass
        conn.close()
        return
    line = head.split(b"\r\n", 1)[0].decode()
    host, _, port = line.split(" ")[1].rpartition(":")
    upstream = socket.create_connection((host, int(port)))
    conn.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
    rest = head.split(b"\r\n\r\n", 1)[1]
    if rest:
        upstream.sendall(rest)
    threading.Thread(target=relay, args=(upstream, conn), daemon=True).start()
    relay(conn, upstream)


def main():
    silent = len(sys.argv) > 1 and sys.argv[1] == "silent"
    serve_forever(handle, silent)


if __name__ == "__main__":
    main()
