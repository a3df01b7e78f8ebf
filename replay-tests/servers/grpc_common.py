"""Generates Python stubs for fixtures/routes.proto into a temp dir, imports them and removes
the dir again: the modules stay loaded, and a server killed later leaves nothing behind."""
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "..", "fixtures")


def load():
    from grpc_tools import protoc

    with tempfile.TemporaryDirectory(prefix="mf-grpc-stubs-") as out:
        rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--grpc_python_out={out}",
                          os.path.join(PROTO_DIR, "routes.proto")])
        if rc != 0:
            raise SystemExit(f"protoc failed with {rc}")
        sys.path.insert(0, out)
        try:
            import routes_pb2
            import routes_pb2_grpc
        finally:
            sys.path.remove(out)
    return routes_pb2, routes_pb2_grpc
