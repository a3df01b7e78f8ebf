"""WebSocket echo server and client in one process, for the passive-capture tests.

Prints `PORT n` once the server listens on 127.0.0.1, then waits for a line on stdin (the
test starts tcpdump in between), runs the client: a text message, a binary message, a
fragmented text message, then a clean close. Prints each echo as `ECHO <hex>` and `DONE`.
"""
import asyncio
import sys

import websockets


async def echo(ws):
    async for msg in ws:
        await ws.send(msg)


async def client(addr):
    async with websockets.connect(f"ws://{addr}/chat?room=1", compression=None) as ws:
        for msg in ["hello", b"\x00\x01binary\xff", ["frag-", "mented"]]:
            await ws.send(msg)
            got = await ws.recv()
            data = got.encode() if isinstance(got, str) else got
            print("ECHO", data.hex(), flush=True)
    print("DONE", flush=True)


async def main():
    if len(sys.argv) > 2 and sys.argv[1] == "--client":
        # Client only, against ADDR (a replay of the imported capture).
        await client(sys.argv[2])
        return
    async with websockets.serve(echo, "127.0.0.1", 0, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print("PORT", port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        await client(f"127.0.0.1:{port}")


asyncio.run(main())
