"""gRPC status messages end to end, with no generated code (raw bytes in and out).

  grpc_status.py serve         a server whose /fid.Status/Fail aborts with DETAILS below and
                               whose /fid.Status/Echo echoes; prints `PORT n` once listening
  grpc_status.py call ADDR PATH  one unary call; prints {"code", "details"} as JSON
"""
import json
import sys
from concurrent import futures

import grpc

# Spaces, ':', '/', '.', '%' and non-ASCII: the characters a status message must survive.
DETAILS = "déjà vu: 100% of /fid.Status/Fail failed"


def serve():
    def fail(request, context):
        context.abort(grpc.StatusCode.FAILED_PRECONDITION, DETAILS)

    def echo(request, context):
        return request

    handler = grpc.method_handlers_generic_handler(
        "fid.Status",
        {
            "Fail": grpc.unary_unary_rpc_method_handler(fail),
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    server.wait_for_termination()


def call(addr, path):
    with grpc.insecure_channel(addr) as ch:
        try:
            reply = ch.unary_unary(path)(b"ping", timeout=10)
            out = {"code": "OK", "reply": reply.decode("utf-8", "replace")}
        except grpc.RpcError as e:
            out = {"code": e.code().name, "details": e.details()}
    print(json.dumps(out, ensure_ascii=False), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve()
    else:
        call(sys.argv[2], sys.argv[3])
