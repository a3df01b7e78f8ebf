"""A slow-download upstream for the streaming tests (stdlib only).

GET /download?chunks=5&interval_ms=100&size=1000 answers `application/octet-stream` in
`chunks` pieces of `size` bytes, one every `interval_ms` (the first with the head):
chunked transfer coding by default, or with a Content-Length when `length=1` is given.
Piece i is `size` copies of the byte `a` + i, so a client can tell the pieces apart.
Prints `PORT n` once listening on 127.0.0.1 (port 0 = ephemeral, or argv[1]).
"""
import http.server
import sys
import time
import urllib.parse


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "TestDownload/1.0"

    def log_message(self, *args):
        pass

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        arg = lambda name, default: int(query.get(name, [default])[0])
        if url.path != "/download":
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        chunks, size = arg("chunks", "5"), arg("size", "1000")
        interval = arg("interval_ms", "100") / 1000
        with_length = arg("length", "0") == 1
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        if with_length:
            self.send_header("Content-Length", str(chunks * size))
        else:
            self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        start = time.monotonic()
        for i in range(chunks):
            delay = start + i * interval - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            piece = bytes([ord("a") + i % 26]) * size
            if with_length:
                self.wfile.write(piece)
            else:
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.flush()
        if not with_length:
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
