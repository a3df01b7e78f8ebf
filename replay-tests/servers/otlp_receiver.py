"""An OTLP/HTTP trace receiver that decodes the real protobufs (the `opentelemetry-proto`
package) and appends every span to OUT as one JSON line.

Usage: otlp_receiver.py OUT.jsonl   (prints `PORT n` once listening on 127.0.0.1)
A request that is not `POST /v1/traces` with `Content-Type: application/x-protobuf`, or
whose body does not decode, is answered 400 and noted in OUT as {"error": ...}.
"""
import http.server
import json
import sys

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

OUT = sys.argv[1]


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


def note(line):
    with open(OUT, "a") as f:
        f.write(json.dumps(line) + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def answer(self, status, body, ctype):
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        ctype = self.headers.get("Content-Type", "")
        if self.path != "/v1/traces" or ctype != "application/x-protobuf":
            note({"error": f"unexpected {self.path} {ctype}"})
            return self.answer(400, b"bad request\n", "text/plain")
        req = ExportTraceServiceRequest()
        try:
            req.ParseFromString(body)
        except Exception as e:  # a body that is not an OTLP request
            note({"error": f"undecodable body: {e}"})
            return self.answer(400, b"bad protobuf\n", "text/plain")
        for rs in req.resource_spans:
            resource = {kv.key: value(kv.value) for kv in rs.resource.attributes}
            for ss in rs.scope_spans:
                for s in ss.spans:
                    note({
                        "service": resource.get("service.name"),
                        "scope": ss.scope.name,
                        "name": s.name,
                        "kind": s.kind,
                        "trace_id": s.trace_id.hex(),
                        "span_id": s.span_id.hex(),
                        "parent_span_id": s.parent_span_id.hex(),
                        "start": s.start_time_unix_nano,
                        "end": s.end_time_unix_nano,
                        "status": s.status.code,
                        "attributes": {kv.key: value(kv.value) for kv in s.attributes},
                    })
        self.answer(200, ExportTraceServiceResponse().SerializeToString(), "application/x-protobuf")


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(f"PORT {server.server_address[1]}", flush=True)
server.serve_forever()
