"""Opens a CONNECT tunnel through a proxy and does a TLS handshake inside it offering only
the given ALPN protocols; prints one JSON line: the protocol the server chose, or the error.

Usage: tunnel_alpn.py PROXY_HOST:PORT TARGET_HOST:PORT CA_PEM PROTO[,PROTO...]"""
import json
import socket
import ssl
import sys


def main():
    proxy, target, cafile, protos = sys.argv[1:5]
    host, port = proxy.rsplit(":", 1)
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    status = head.split(b" ", 2)[1].decode() if b" " in head else ""
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.set_alpn_protocols(protos.split(","))
    try:
        tls = ctx.wrap_socket(sock, server_hostname=target.rsplit(":", 1)[0])
        print(json.dumps({"connect": status, "alpn": tls.selected_alpn_protocol()}), flush=True)
        tls.close()
    except (ssl.SSLError, OSError) as e:
        print(json.dumps({"connect": status, "error": str(e)}), flush=True)


if __name__ == "__main__":
    main()
