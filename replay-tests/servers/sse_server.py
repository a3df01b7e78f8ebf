"""A Server-Sent Events upstream for the streaming tests (stdlib only).

GET /events?n=5&interval_ms=200 answers `text/event-stream`, chunked as SSE servers
(Starlette, Express, Go's net/http) do: the head and event 0 at once, then one event every
`interval_ms`, then the end of the stream. Each event is written and flushed on its own, so
the events cross the wire `interval_ms` apart. Prints `PORT n` once listening on 127.0.0.1
(port 0 = ephemeral, or argv[1]).
"""
import http.server
import json
import sys
import time
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TestSse/1.0"

    def log_message(self, *args):
        pass

    def chunk(self, data):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path != "/events":
            body = b"not found\n"
            self.send_response(404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        query = urllib.parse.parse_qs(url.query)
        n = int(query.get("n", ["5"])[0])
        interval = int(query.get("interval_ms", ["200"])[0]) / 1000
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        start = time.monotonic()
        for i in range(n):
            # Sleep to the event's due time rather than by the interval, so that
            # scheduling delays do not add up.
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            event = "id: %d\nevent: tick\ndata: %s\n\n" % (i, json.dumps({"n": i}))
            self.chunk(event.encode())
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    print("PORT %d" % server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
