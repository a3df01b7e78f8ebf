"""Opens N keep-alive connections to HOST:PORT, sends PATH on each and reads the whole answer,
then holds them all open and prints the resident memory of PID (kB) — the memory a server
keeps per idle connection. The first BIG connections ask for BIG_PATH first (a large answer:
buffers must shrink back after it). Usage: idle_conns.py HOST:PORT PID N PATH BIG BIG_PATH"""
import resource
import socket
import sys


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def exchange(s, path):
    s.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n".encode())
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            raise SystemExit("server closed")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        k, _, v = line.partition(b":")
        if k.strip().lower() == b"content-length":
            length = int(v)
    while len(body) < length:
        chunk = s.recv(1 << 20)
        if not chunk:
            raise SystemExit("server closed mid-body")
        body += chunk


def main():
    addr, pid, n, path, big, big_path = sys.argv[1:7]
    host, port = addr.rsplit(":", 1)
    n, big = int(n), int(big)
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    before = rss_kb(pid)
    conns = []
    for i in range(n):
        s = socket.create_connection((host, int(port)))
        if i < big:
            exchange(s, big_path)
        exchange(s, path)
        conns.append(s)
    held = rss_kb(pid)
    print(before, held)
    for s in conns:
        s.close()


main()
