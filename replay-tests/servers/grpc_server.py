"""A real grpcio server for fixtures/routes.proto. Prints `PORT n` once listening.

`--changed`: Chat's second answer to each message says "MORE" instead of "more" (a new
version of the service, for `mf replay --to`)."""
import sys
import time
from concurrent import futures

import grpc

from grpc_common import load

pb, pb_grpc = load()
CHANGED = "--changed" in sys.argv


class Routes(pb_grpc.RoutesServicer):
    def GetPoint(self, request, context):
        if request.label == "missing":
            context.set_trailing_metadata((("detail-bin", b"\x00\x01\xff"), ("why", "no such point")))
            context.abort(grpc.StatusCode.NOT_FOUND, "point not found")
        if request.label == "auth":
            # Answers with a credential of its own in the trailers, as a token service does.
            context.set_trailing_metadata((("x-session-token", "srv-GRPC-TOKEN-4c7e1a"),))
            return pb.Point(x=request.x, label="authorised")
        if request.label == "slow":
            time.sleep(2)
        context.send_initial_metadata((("server-kind", "python"),))
        context.set_trailing_metadata((("checksum-bin", bytes([request.x & 0xFF, 0xFE])), ("served-by", "grpc_server")))
        return pb.Point(x=request.x * 2, label="got " + request.label)

    def ListPoints(self, request, context):
        for i in range(request.x):
            yield pb.Point(x=i, label=f"{request.label}-{i}")
            time.sleep(0.05)

    def RecordPoints(self, request_iterator, context):
        count = total = 0
        for p in request_iterator:
            count += 1
            total += p.x
        return pb.Summary(count=count, total=total)

    def Chat(self, request_iterator, context):
        for p in request_iterator:
            yield pb.Point(x=p.x, label="echo " + p.label)
            yield pb.Point(x=p.x + 1000, label=("MORE " if CHANGED else "more ") + p.label)


def main():
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    pb_grpc.add_RoutesServicer_to_server(Routes(), server)
    if "--tls" in sys.argv:
        i = sys.argv.index("--tls")
        cert, key = open(sys.argv[i + 1], "rb").read(), open(sys.argv[i + 2], "rb").read()
        port = server.add_secure_port("127.0.0.1:0", grpc.ssl_server_credentials([(key, cert)]))
    else:
        port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(f"PORT {port}", flush=True)
    server.wait_for_termination()


if __name__ == "__main__":
    main()
