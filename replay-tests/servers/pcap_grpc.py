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
server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
server.add_generic_rpc_handlers((handler,))
port = server.add_insecure_port("127.0.0.1:0")
server.start()
print("PORT", port, flush=True)
sys.stdin.readline()
with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
    reply = channel.unary_unary("/demo.Greeter/Say")(b"ada")
    print("UNARY", reply.decode(), flush=True)
    replies = list(channel.stream_stream("/demo.Greeter/Chat")(iter([b"a", b"bb", b"ccc"])))
    print("STREAM", b",".join(replies).decode(), flush=True)
print("DONE", flush=True)
server.stop(0)
