"""A small CRUD API for the inference tests (stdlib only): login with a token, users with
numeric ids, orders with UUIDs, pagination, a `/users/me` literal route, errors, and a flaky
endpoint that answers 503 every other call so that clients retry.

Prints `PORT n` once listening on 127.0.0.1 (ephemeral port).
"""
import datetime
import http.server
import itertools
import json
import secrets
import sys
import threading
import urllib.parse
import uuid

LOCK = threading.Lock()
USER_IDS = itertools.count(100)
PASSWORDS = {}  # filled by the first login of each user name: any password of length >= 8
TOKENS = {}  # token -> user name
USERS = {}  # id -> user
ORDERS = {}  # uuid -> order
FLAKY = {}  # token -> calls


def now():
    return datetime.datetime(2024, 5, 1, 12, 0, 0, tzinfo=datetime.timezone.utc).isoformat().replace("+00:00", "Z")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "CrudApi/1.0"

    def log_message(self, *args):
        pass

    def send(self, status, obj=None, extra=()):
        body = b"" if obj is None else json.dumps(obj).encode()
        self.send_response(status)
        if obj is not None:
            self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Server-Request", uuid.uuid4().hex)
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(body)

    def body(self):
        n = int(self.headers.get("Content-Length", 0) or 0)
        raw = self.rfile.read(n) if n else b""
        try:
            return json.loads(raw) if raw else None
        except ValueError:
            return None

    def user_of(self):
        auth = self.headers.get("Authorization", "")
        token = auth[len("Bearer "):] if auth.startswith("Bearer ") else None
        with LOCK:
            return token, TOKENS.get(token)

    def route(self, method):
        url = urllib.parse.urlsplit(self.path)
        parts = [p for p in url.path.split("/") if p]
        query = dict(urllib.parse.parse_qsl(url.query))
        data = self.body() if method in ("POST", "PUT") else None
        if method == "POST" and parts == ["login"]:
            name, pw = (data or {}).get("username"), (data or {}).get("password")
            with LOCK:
                known = PASSWORDS.setdefault(name, pw) if pw and len(pw) >= 8 else None
            if not name or not pw or known != pw:
                return self.send(401, {"error": "invalid credentials", "code": "auth_failed"})
            token = secrets.token_hex(24)
            with LOCK:
                TOKENS[token] = name
            return self.send(200, {"token": token, "token_type": "bearer", "expires_at": now()},
                             [("Set-Cookie", f"session={secrets.token_hex(16)}; HttpOnly")])
        token, who = self.user_of()
        if who is None:
            return self.send(401, {"error": "missing or invalid token", "code": "unauthorized"})
        if parts == ["users", "me"] and method == "GET":
            return self.send(200, {"username": who, "roles": ["customer"], "session": {"since": now()}})
        if parts == ["users"] and method == "GET":
            page, per = int(query.get("page", 1)), int(query.get("per_page", 5))
            with LOCK:
                users = sorted(USERS.values(), key=lambda u: u["id"])
            items = users[(page - 1) * per: page * per]
            return self.send(200, {"items": items, "page": page, "per_page": per, "total": len(users)})
        if parts == ["users"] and method == "POST":
            if not data or "email" not in data or "name" not in data:
                return self.send(422, {"error": "name and email are required", "code": "invalid"})
            user = {"id": next(USER_IDS), "uuid": str(uuid.uuid4()), "name": data["name"], "email": data["email"],
                    "role": data.get("role", "customer"), "created_at": now(), "status": "active",
                    "nickname": data.get("nickname")}
            with LOCK:
                USERS[user["id"]] = user
            return self.send(201, user, [("Location", f"/users/{user['id']}")])
        if len(parts) == 2 and parts[0] == "users" and parts[1].isdigit():
            uid = int(parts[1])
            with LOCK:
                user = USERS.get(uid)
                if method == "DELETE" and user:
                    del USERS[uid]
            if user is None:
                return self.send(404, {"error": "user not found", "code": "not_found"})
            return self.send(204) if method == "DELETE" else self.send(200, user)
        if parts == ["orders"] and method == "POST":
            order = {"id": str(uuid.uuid4()), "user_id": data["user_id"], "items": data["items"],
                     "status": "pending", "total": round(sum(i["qty"] * 2.5 for i in data["items"]), 2),
                     "created_at": now()}
            with LOCK:
                ORDERS[order["id"]] = order
            return self.send(201, order)
        if parts == ["orders"] and method == "GET":
            uid = int(query.get("user_id", 0))
            with LOCK:
                mine = [o for o in ORDERS.values() if o["user_id"] == uid]
            return self.send(200, {"items": mine, "count": len(mine)})
        if len(parts) == 2 and parts[0] == "orders":
            with LOCK:
                order = ORDERS.get(parts[1])
            return self.send(200, order) if order else self.send(404, {"error": "order not found", "code": "not_found"})
        if parts == ["flaky"]:
            with LOCK:
                FLAKY[token] = FLAKY.get(token, 0) + 1
                n = FLAKY[token]
            if n % 2 == 1:
                return self.send(503, {"error": "try again", "code": "unavailable"}, [("Retry-After", "0")])
            return self.send(200, {"ok": True, "attempt": n})
        return self.send(404, {"error": "no such route", "code": "no_route"})

    def do_GET(self):
        self.route("GET")

    def do_POST(self):
        self.route("POST")

    def do_DELETE(self):
        self.route("DELETE")


if __name__ == "__main__":
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(f"PORT {server.server_address[1]}", flush=True)
    server.serve_forever()
