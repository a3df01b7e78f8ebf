"""A streaming HTTP/1.1 client for the streaming tests (stdlib `http.client`): reads a
response as it arrives and prints, as one JSON line, when each part arrived in milliseconds
after the response head, measured on the monotonic clock.

Usage: stream_client.py URL sse|bytes
  sse:   {"status": 200, "events": [{"at_ms": 0.4, "text": "id: 0\\ndata: ..."}, ...]}
         (an event is complete at its blank line)
  bytes: {"status": 200, "reads": [[at_ms, bytes so far], ...]}
"""
import http.client
import json
import sys
import time
import urllib.parse


def main(url, mode):
    u = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=30)
    conn.request("GET", u.path + ("?" + u.query if u.query else ""))
    resp = conn.getresponse()
    t0 = time.monotonic()
    since = lambda: round((time.monotonic() - t0) * 1000, 3)
    out = {"status": resp.status}
    if mode == "sse":
        events, lines = [], []
        while True:
            line = resp.readline()
            if not line:
                break
            line = line.decode().rstrip("\r\n")
            if line:
                lines.append(line)
            elif lines:
                events.append({"at_ms": since(), "text": "\n".join(lines)})
                lines = []
        out["events"] = events
    else:
        reads, total = [], 0
        while True:
            data = resp.read1(65536)
            if not data:
                break
            total += len(data)
            reads.append([since(), total])
        out["reads"] = reads
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
