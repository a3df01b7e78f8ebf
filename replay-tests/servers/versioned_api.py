"""A small JSON API in two versions, for `mf replay --to` (stdlib only). Every run mints fresh
ids (UUIDs), tokens and timestamps, so only a replay that rebinds them and ignores their noise
sees the two runs of one version as equal. Version 2 differs from version 1 in exactly one
field (`currency` of GET /items/{id}) and one status (DELETE /items/{id}: 200 instead of 204).

  POST   /login         {"user": ...}   -> 200 {"token", "issued_at"}
  POST   /items         {"name": ...}   -> 201 {"id", "name", "created_at"}   (Bearer token)
  GET    /items/{id}                    -> 200 {"id", "name", "currency"} or 404
  DELETE /items/{id}                    -> 204 (v2: 200)

Usage: versioned_api.py [--v2]. Prints `PORT n` once listening on 127.0.0.1.
"""
import datetime
import http.server
import json
import secrets
import sys
import threading
import uuid

V2 = "--v2" in sys.argv
LOCK = threading.Lock()
TOKENS = set()
ITEMS = {}


def now():
    return datetime.datetime.now(datetime.timezone.utc).isoformat().replace("+00:00", "Z")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Head and body go out as two writes: without this each answer waits for a delayed ACK.
    disable_nagle_algorithm = True

    def log_message(self, *args):
        pass

    def send(self, status, obj=None):
        body = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(status)
        if obj is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Request-Id", uuid.uuid4().hex)
        self.end_headers()
        self.wfile.write(body)

    def json_body(self):
        n = int(self.headers.get("Content-Length", 0) or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else {}
        except ValueError:
            return {}

    def authorized(self):
        auth = self.headers.get("Authorization", "")
        with LOCK:
            return auth.startswith("Bearer ") and auth[7:] in TOKENS

    def item_id(self):
        parts = self.path.split("?")[0].strip("/").split("/")
        return parts[1] if len(parts) == 2 and parts[0] == "items" else None

    def do_POST(self):
        body = self.json_body()
        if self.path == "/login":
            token = secrets.token_hex(16)
            with LOCK:
                TOKENS.add(token)
            return self.send(200, {"token": token, "issued_at": now()})
        if self.path == "/items":
            if not self.authorized():
                return self.send(401, {"error": "login first"})
            item = {"id": str(uuid.uuid4()), "name": body.get("name", ""), "created_at": now()}
            with LOCK:
                ITEMS[item["id"]] = item
            return self.send(201, item)
        self.send(404, {"error": "no such route"})

    def do_GET(self):
        if not self.authorized():
            return self.send(401, {"error": "login first"})
        with LOCK:
            item = ITEMS.get(self.item_id())
        if item is None:
            return self.send(404, {"error": "no such item"})
        self.send(200, {"id": item["id"], "name": item["name"], "currency": "USD" if V2 else "EUR"})

    def do_DELETE(self):
        if not self.authorized():
            return self.send(401, {"error": "login first"})
        with LOCK:
            found = ITEMS.pop(self.item_id(), None)
        if found is None:
            return self.send(404, {"error": "no such item"})
        self.send(200 if V2 else 204)


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
