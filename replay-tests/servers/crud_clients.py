"""Simulated clients of crud_api.py: several concurrent clients walk the API the way real
ones do (login, browse pages, create, read back, order, retry a flaky call) with cache
busters, nonces and request ids that differ on every request.

Usage: crud_clients.py BASE_URL CLIENTS. Prints one JSON line: the secrets used and the ids
created, so the test can check that none of the secrets reaches the fixtures.
"""
import json
import sys
import threading
import time
import uuid

import requests

BASE = sys.argv[1].rstrip("/")
CLIENTS = int(sys.argv[2]) if len(sys.argv) > 2 else 8
LOCK = threading.Lock()
REPORT = {"passwords": [], "tokens": [], "user_ids": [], "order_ids": [], "exchanges": 0, "errors": []}


def client(n):
    s = requests.Session()
    count = 0

    def call(method, path, **kw):
        nonlocal count
        headers = kw.pop("headers", {})
        headers["X-Request-Id"] = str(uuid.uuid4())
        count += 1
        return s.request(method, BASE + path, headers=headers, timeout=20, **kw)

    password = f"pw-{n}-Sup3rSecret-{uuid.uuid4().hex[:10]}"
    with LOCK:
        REPORT["passwords"].append(password)
    # A first login with a wrong password, as humans do.
    call("POST", "/login", json={"username": f"client{n}", "password": password})
    r = call("POST", "/login", json={"username": f"client{n}", "password": "wrong-password-x"})
    assert r.status_code == 401, r.status_code
    token = call("POST", "/login", json={"username": f"client{n}", "password": password}).json()["token"]
    with LOCK:
        REPORT["tokens"].append(token)
    auth = {"Authorization": f"Bearer {token}"}
    me = call("GET", "/users/me", headers=dict(auth))
    assert me.status_code == 200
    created = []
    for i in range(3):
        body = {"name": f"user {n}-{i}", "email": f"user{n}.{i}@example.com", "role": ["admin", "customer"][i % 2],
                "client_ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime()) + f".{time.time_ns() % 10**9:09d}Z",
                "nonce": uuid.uuid4().hex}
        if i == 0:
            body["nickname"] = f"nick{n}"
        r = call("POST", "/users", json=body, headers=dict(auth))
        assert r.status_code == 201
        created.append(r.json()["id"])
    call("POST", "/users", json={"name": "incomplete"}, headers=dict(auth))
    for page in (1, 2):
        call("GET", f"/users?page={page}&per_page=5&_={time.time_ns() // 1000000}", headers=dict(auth))
    for uid in created:
        assert call("GET", f"/users/{uid}", headers=dict(auth)).status_code == 200
    call("GET", "/users/999999", headers=dict(auth))
    orders = []
    for i in range(2):
        r = call("POST", "/orders", json={"user_id": created[0], "items": [{"sku": f"SKU-{i}", "qty": i + 1}],
                                          "nonce": uuid.uuid4().hex}, headers=dict(auth))
        orders.append(r.json()["id"])
    for oid in orders:
        call("GET", f"/orders/{oid}", headers=dict(auth))
    call("GET", f"/orders?user_id={created[0]}&_={time.time_ns() // 1000000}", headers=dict(auth))
    # The flaky endpoint: retry after a 503.
    for _ in range(2):
        for attempt in range(3):
            if call("GET", "/flaky", headers=dict(auth)).status_code != 503:
                break
    call("DELETE", f"/users/{created[-1]}", headers=dict(auth))
    call("GET", "/users/me")  # forgot the token: 401
    with LOCK:
        REPORT["user_ids"] += created
        REPORT["order_ids"] += orders
        REPORT["exchanges"] += count


def guarded(n):
    try:
        client(n)
    except Exception as e:  # reported, so the test fails with the reason
        with LOCK:
            REPORT["errors"].append(f"client {n}: {e!r}")


threads = [threading.Thread(target=guarded, args=(n,)) for n in range(CLIENTS)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps(REPORT), flush=True)
sys.exit(1 if REPORT["errors"] else 0)
