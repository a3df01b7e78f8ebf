"""A real HTTP/1.1 upstream for the end-to-end tests (stdlib only).

Prints `PORT n` once listening on 127.0.0.1 (port 0 = ephemeral, or argv[1]).
"""
import gzip
import hashlib
import http.server
import itertools
import json
import sys

COUNTER = itertools.count(1)
BINARY = bytes((i * 7 + (i >> 8)) & 0xFF for i in range(1 << 20))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TestUpstream/1.0"

    def log_message(self, *args):
        pass

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            data = b""
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length", 0))
        return self.rfile.read(n) if n else b""

    def send(self, status, body, ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def route(self):
        path = self.path.split("?")[0]
        if path == "/json":
            body = json.dumps({"users": [{"id": 1, "name": "ada"}, {"id": 2, "name": "bob"}]}).encode()
            return self.send(200, body, extra=[("Set-Cookie", "a=1"), ("set-cookie", "b=2"), ("X-Mixed-Case", "Yes")])
        if path == "/login":
            # A login as real services answer it: a session cookie and a bearer token.
            self.read_body()
            body = json.dumps({"access_token": "tok-LOGIN-5f3a9c1e7d", "token_type": "bearer"}).encode()
            return self.send(200, body, extra=[("Set-Cookie", "session=sess-COOKIE-8e2b4d6f; Path=/; HttpOnly")])
        if path == "/headers":
            # The request's headers as received (what a proxy forwarded).
            body = json.dumps({k.lower(): v for k, v in self.headers.items()}).encode()
            return self.send(200, body, ctype="application/json")
        if path == "/echo":
            body = self.read_body()
            return self.send(200, body, ctype=self.headers.get("Content-Type", "application/octet-stream"))
        if path == "/upload":
            body = self.read_body()
            out = json.dumps({"received": len(body), "sha256": hashlib.sha256(body).hexdigest()}).encode()
            return self.send(201, out)
        if path == "/binary":
            return self.send(200, BINARY, ctype="application/octet-stream")
        if path == "/chunked":
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("Trailer", "X-Checksum")
            self.end_headers()
            for part in (b"first chunk\n", b"second, longer chunk\n" * 50, b"last\n"):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\nX-Checksum: 42\r\n\r\n")
            return
        if path == "/gzip-login":
            body = gzip.compress(json.dumps({"refresh_token": "gz-REFRESH-7e9d1c3b", "ok": True}).encode(), mtime=0)
            return self.send(200, body, extra=[("Content-Encoding", "gzip")])
        if path == "/gzip":
            body = gzip.compress(json.dumps({"compressed": True, "pad": "x" * 500}).encode(), mtime=0)
            return self.send(200, body, extra=[("Content-Encoding", "gzip")])
        if path == "/empty":
            self.send_response(204)
            self.end_headers()
            return
        if path == "/fail":
            return self.send(503, b'{"error":"overloaded"}', extra=[("Retry-After", "5")])
        if path == "/counter":
            return self.send(200, json.dumps({"call": next(COUNTER)}).encode())
        if path == "/size":
            body = self.read_body()
            return self.send(200, json.dumps({"size": len(body)}).encode())
        if path.startswith("/api/items/"):
            # A JSON API answer that varies by id, for the disk-usage benchmark.
            n = int(path.rsplit("/", 1)[1] or 0)
            body = json.dumps({
                "id": n, "name": f"item-{n}", "price": (n * 37) % 1000 / 10, "in_stock": n % 3 != 0,
                "tags": ["blue", "large"] if n % 2 else ["red"], "owner": {"id": n % 50, "email": f"user{n % 50}@example.com"},
                "updated_at": f"2026-11-{1 + n % 28:02d}T10:00:00Z",
            }).encode()
            return self.send(200, body, extra=[("Cache-Control", "max-age=60"), ("X-Request-Id", f"req-{n:08d}")])
        if path == "/stall":
            # A head promising 1000 bytes, 100 of them, then nothing until the client leaves.
            import time
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", "1000")
            self.end_headers()
            self.wfile.write(b"s" * 100)
            self.wfile.flush()
            time.sleep(60)
            return
        if path == "/slow":
            import time
            time.sleep(0.3)
            return self.send(200, b'{"slow":true}')
        self.read_body()
        return self.send(404, b'{"error":"not found"}')

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = route


def main():
    args = sys.argv[1:]
    tls = None
    if "--tls" in args:
        i = args.index("--tls")
        tls = (args[i + 1], args[i + 2])
        del args[i : i + 3]
    port = int(args[0]) if args else 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    if tls:
        import ssl

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*tls)
        ctx.set_alpn_protocols(["http/1.1"])
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print("PORT", server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
