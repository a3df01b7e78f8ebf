"""gRPC server and client in one process (raw bytes, no generated code), for the passive-capture tests.

Prints `PORT n` once the server listens, waits for a line on stdin (the test starts tcpdump
in between), then makes one unary call and one bidirectional streaming call of three
messages, and prints `DONE`.
"""
import sys
from concurrent import futures

import grpc


def say(request, context):
    return b"hello " + request


def chat(requests, context):
    for r in requests:
        yield b"echo " + r


handler = grpc.method_handlers_generic_handler(
    "demo.Greeter",
    {
        "Say": grpc.unary_unary_rpc_method_handler(say),
        "Chat": grpc.stream_stream_rpc_method_handler(chat),
    },
)
def calls(addr):
    with grpc.insecure_channel(addr) as channel:
        reply = channel.unary_unary("/demo.Greeter/Say")(b"ada", timeout=10)
        print("UNARY", reply.decode(), flush=True)
        replies = list(channel.stream_stream("/demo.Greeter/Chat")(iter([b"a", b"bb", b"ccc"]), timeout=10))
        print("STREAM", b",".join(replies).decode(), flush=True)
    print("DONE", flush=True)


if len(sys.argv) > 2 and sys.argv[1] == "--client":
    # Client only, against ADDR (a replay of the imported capture).
    calls(sys.argv[2])
    sys.exit(0)

server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((handler,))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print("PORT", port, flush=True)
sys.stdin.readline()
calls(f"127.0.0.1:{port}")
server.stop(0)
