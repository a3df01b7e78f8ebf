"""Two versions of a small, noisy API for the `mf diff` tests (stdlib only), asked by a fixed
curl script (no state, no login: the stateful flow is `versioned_api.py`'s). Every answer
carries fresh ids and the time of the answer (UUIDs, ISO 8601 and epoch-millisecond
timestamps, a random X-Request-Id and ETag), so two runs of the same version differ only in
noise. Version 2 renames user 3 and answers /status with 503: the two known differences.
POST /items creates an item (fresh UUID) that GET /items/{id} reads back.

Usage: noisy_api.py 1|2. Prints `PORT n` once listening on 127.0.0.1 (ephemeral port).
"""
import datetime
import http.server
import json
import secrets
import sys
import threading
import time
import uuid

VERSION = int(sys.argv[1]) if len(sys.argv) > 1 else 1
ITEMS = {}
LOCK = threading.Lock()


def now_iso():
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "VersionedApi/1.0"

    def log_message(self, *args):
        pass

    def send(self, status, body, content_type="application/json"):
        data = (json.dumps(body) if content_type == "application/json" else body).encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("X-Request-Id", str(uuid.uuid4()))
        self.send_header("ETag", '"%s"' % secrets.token_hex(8))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/users/3":
            name = "User Three" if VERSION == 2 else "user-3"
            return self.send(200, {"id": 3, "name": name, "seen_at": now_iso(), "trace": secrets.token_hex(16)})
        if self.path == "/status":
            return self.send(503 if VERSION == 2 else 200, {"ok": True, "checked_ms": int(time.time() * 1000)})
        if self.path.startswith("/items/"):
            with LOCK:
                item = ITEMS.get(self.path[len("/items/"):])
            return self.send(200, item) if item else self.send(404, {"error": "no such item"})
        if self.path == "/page":
            page = "<html>\n<h1>Hello</h1>\n<footer>generated %s</footer>\n</html>\n" % now_iso()
            return self.send(200, page, "text/html")
        return self.send(404, {"error": "no such route"})

    def do_POST(self):
        n = int(self.headers.get("Content-Length", 0) or 0)
        raw = self.rfile.read(n) if n else b"{}"
        try:
            item = json.loads(raw)
        except ValueError:
            return self.send(400, {"error": "bad json"})
        if self.path == "/items":
            item.update({"id": str(uuid.uuid4()), "created_at": now_iso()})
            with LOCK:
                ITEMS[item["id"]] = item
            return self.send(201, item)
        return self.send(404, {"error": "no such route"})


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()
