"""Runs every call kind against ADDR and prints one JSON line per call (messages, metadata,
status), so two runs can be compared.

Usage: grpc_client.py HOST:PORT [all|cancel|long] [--tls CA_PEM]
  cancel: starts a long server stream and cancels it after two messages.
  long:   reads a long server stream, printing each message, until it ends or fails."""
import json
import sys

import grpc

from grpc_common import load

pb, pb_grpc = load()


def md(pairs):
    out = []
    for k, v in pairs or ():
        if k in ("date", "user-agent", "grpc-accept-encoding", "accept-encoding", "content-type"):
            continue
        out.append([k, v.hex() if isinstance(v, bytes) else v])
    return out


def point(p):
    return [p.x, p.label]


def report(name, fn):
    rec = {"call": name}
    try:
        rec.update(fn())
        rec["code"] = "OK"
    except grpc.RpcError as e:
        rec["code"] = e.code().name
        rec["details"] = e.details()
        rec["trailing"] = md(e.trailing_metadata())
    print(json.dumps(rec), flush=True)


def channel(addr, args):
    if "--tls" in args:
        ca = open(args[args.index("--tls") + 1], "rb").read()
        # The certificate names localhost; the test connects to 127.0.0.1.
        return grpc.secure_channel(addr, grpc.ssl_channel_credentials(root_certificates=ca),
                                   options=[("grpc.ssl_target_name_override", "localhost")])
    return grpc.insecure_channel(addr)


def main():
    args = sys.argv[1:]
    addr = args[0]
    mode = args[1] if len(args) > 1 and not args[1].startswith("--") else "all"
    with channel(addr, args) as ch:
        stub = pb_grpc.RoutesStub(ch)
        if mode == "cancel":
            call = stub.ListPoints(pb.Point(x=100, label="c"), timeout=30)
            got = [next(call), next(call)]
            call.cancel()
            print(json.dumps({"call": "cancel", "messages": [point(p) for p in got]}), flush=True)
            return
        if mode == "faults":
            # Three identical unary calls with a short deadline: one status per line.
            for i in range(3):
                def call():
                    resp = stub.GetPoint(pb.Point(x=21, label="a"), timeout=1.5)
                    return {"messages": [point(resp)]}
                report(f"call{i + 1}", call)
            return
        if mode == "secret":
            # One unary call carrying credentials in its metadata.
            def secret():
                md_out = (("authorization", "Bearer grpc-BEARER-9d2f7b"), ("x-api-key", "grpc-APIKEY-1a8c3e"))
                resp, call = stub.GetPoint.with_call(pb.Point(x=7, label="auth"), metadata=md_out, timeout=10)
                return {"messages": [point(resp)], "trailing": md(call.trailing_metadata())}
            report("secret", secret)
            return
        if mode == "long":
            def long():
                out = []
                for p in stub.ListPoints(pb.Point(x=100, label="l"), timeout=30):
                    out.append(point(p))
                    print(json.dumps({"progress": len(out)}), flush=True)
                return {"messages": out}
            report("long", long)
            return

        def unary():
            resp, call = stub.GetPoint.with_call(pb.Point(x=21, label="a"), timeout=10)
            return {"messages": [point(resp)], "initial": md(call.initial_metadata()),
                    "trailing": md(call.trailing_metadata())}

        def unary_other():
            resp = stub.GetPoint(pb.Point(x=5, label="b"), timeout=10)
            return {"messages": [point(resp)]}

        def not_found():
            stub.GetPoint(pb.Point(x=1, label="missing"), timeout=10)
            return {}

        def deadline():
            stub.GetPoint(pb.Point(x=2, label="slow"), timeout=0.5)
            return {}

        def server_stream():
            call = stub.ListPoints(pb.Point(x=5, label="s"), timeout=10)
            return {"messages": [point(p) for p in call]}

        def client_stream():
            resp = stub.RecordPoints(iter([pb.Point(x=i) for i in range(1, 6)]), timeout=10)
            return {"messages": [[resp.count, resp.total]]}

        def bidi():
            # Interactive: each request is sent only after the answers to the previous one
            # arrived, which fails if anything between client and server buffers the stream.
            import queue
            q = queue.Queue()

            def requests():
                for i in range(3):
                    yield pb.Point(x=i, label=f"m{i}")
                    q.get(timeout=5)

            got = []
            for p in stub.Chat(requests(), timeout=10):
                got.append(point(p))
                if len(got) % 2 == 0:
                    q.put(1)
            return {"messages": got}

        report("unary", unary)
        report("unary_other", unary_other)
        report("not_found", not_found)
        report("deadline", deadline)
        report("server_stream", server_stream)
        report("client_stream", client_stream)
        report("bidi", bidi)


if __name__ == "__main__":
    main()
