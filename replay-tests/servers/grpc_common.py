"""Generates Python stubs for fixtures/routes.proto into a temp dir at import time."""
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PROTO_DIR = os.path.join(HERE, "..", "..", "fixtures")


def load():
    from grpc_tools import protoc

    out = tempfile.mkdtemp(prefix="mf-grpc-stubs-")
    rc = protoc.main(["protoc", f"-I{PROTO_DIR}", f"--python_out={out}", f"--grpc_python_out={out}",
                      os.path.join(PROTO_DIR, "routes.proto")])
    if rc != 0:
        raise SystemExit(f"protoc failed with {rc}")
    sys.path.insert(0, out)
    import routes_pb2
    import routes_pb2_grpc
    return routes_pb2, routes_pb2_grpc
