"""Keep-alive HTTP/1.1 traffic whose every exchange can be told apart, for the lossy
capture tests (stdlib only).

    lossy_http.py server [HOST]     prints `PORT n`, then serves on HOST (127.0.0.1; an
                                    IPv6 literal works too) until killed
    lossy_http.py client PORT N SEED CONNECTIONS

The server answers `/r/I?size=S[&chunked=1]` with status 200, an `X-Req: I` header and S
bytes derived from I (chunked when asked); a POST body is read and its length echoed in
`X-Got`. The client makes N such requests over CONNECTIONS keep-alive connections (sizes
and methods drawn from SEED) and prints one JSON line per exchange it completed:
{"i", "method", "path", "status", "x_req", "len"}.
"""
import http.client
import http.server
import json
import random
import socket
import sys


def body_for(i, size):
    seed = (i * 2654435761) & 0xFFFFFFFF
    return bytes(((seed >> (k % 24)) + k) & 0xFF for k in range(size))


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self):
        path, _, query = self.path.partition("?")
        params = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
        got = self.rfile.read(int(self.headers.get("Content-Length", 0) or 0))
        i = int(path.rsplit("/", 1)[-1])
        body = body_for(i, int(params.get("size", "0")))
        self.send_response(200)
        self.send_header("X-Req", str(i))
        self.send_header("X-Got", str(len(got)))
        self.send_header("Content-Type", "application/octet-stream")
        if params.get("chunked") == "1":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for k in range(0, len(body), 4000):
                piece = body[k : k + 4000]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    do_GET = answer
    do_POST = answer


def client(port, n, seed, connections):
    rng = random.Random(seed)
    conns = [http.client.HTTPConnection("127.0.0.1", port) for _ in range(connections)]
    for i in range(n):
        conn = conns[i % connections]
        # Mostly small answers, some of tens of kilobytes: many segments, many boundaries.
        size = rng.choice([0, rng.randint(1, 600), rng.randint(600, 6000), rng.randint(6000, 60000)])
        chunked = rng.random() < 0.2
        path = "/r/%d?size=%d%s" % (i, size, "&chunked=1" if chunked else "")
        if rng.random() < 0.3:
            method, payload = "POST", body_for(i + 7, rng.randint(0, 20000))
        else:
            method, payload = "GET", None
        conn.request(method, path, body=payload, headers={"Host": "lossy.test"})
        resp = conn.getresponse()
        data = resp.read()
        print(json.dumps({
            "i": i,
            "method": method,
            "path": path,
            "status": resp.status,
            "x_req": int(resp.getheader("X-Req", "-1")),
            "len": len(data),
        }), flush=True)
    for c in conns:
        c.close()


if __name__ == "__main__":
    if sys.argv[1] == "server":
        host = sys.argv[2] if len(sys.argv) > 2 else "127.0.0.1"

        class Server(http.server.ThreadingHTTPServer):
            address_family = socket.AF_INET6 if ":" in host else socket.AF_INET

        srv = Server((host, 0), Handler)
        print("PORT %d" % srv.server_address[1], flush=True)
        srv.serve_forever()
    else:
        client(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]))
