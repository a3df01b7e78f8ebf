"""Walks versioned_api.py's flow once on one keep-alive connection (stdlib only): log in,
create an item, read it, delete it. Exits non-zero when a step does not answer as v1 does.

Usage: versioned_client.py HOST:PORT
"""
import http.client
import json
import sys


def main(addr):
    conn = http.client.HTTPConnection(addr, timeout=10)

    def call(method, path, body=None, token=None):
        headers = {"Content-Type": "application/json"} if body is not None else {}
        if token:
            headers["Authorization"] = "Bearer " + token
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        res = conn.getresponse()
        raw = res.read()
        return res.status, json.loads(raw) if raw else None

    status, login = call("POST", "/login", {"user": "ada"})
    assert status == 200, status
    token = login["token"]
    status, item = call("POST", "/items", {"name": "pen"}, token)
    assert status == 201, status
    status, got = call("GET", "/items/" + item["id"], token=token)
    assert status == 200 and got["currency"] == "EUR", (status, got)
    status, _ = call("DELETE", "/items/" + item["id"], token=token)
    assert status == 204, status
    print("OK", flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
