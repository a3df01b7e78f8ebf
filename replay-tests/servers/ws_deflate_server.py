"""A `websockets` server with its default compression (permessage-deflate) on, for the
fidelity tests. Prints `PORT n` once listening.

On connect it pushes "welcome"; then per message:
  "big"   -> a 22 400-character text (compresses well, spans the deflate window)
  "frag"  -> one text message sent as three fragments
  bytes   -> the bytes reversed
  other   -> "echo: <text>"
"""
import asyncio

from websockets.asyncio.server import serve

BIG = "".join(f"line {i:05d}: the quick brown fox jumps over the lazy dog\n" for i in range(400))


async def handler(ws):
    await ws.send("welcome")
    async for msg in ws:
        if isinstance(msg, bytes):
            await ws.send(msg[::-1])
        elif msg == "big":
            await ws.send(BIG)
        elif msg == "frag":
            await ws.send(["part1-", "part2-", "part3"])
        else:
            await ws.send("echo: " + msg)


async def main():
    async with serve(handler, "127.0.0.1", 0, compression="deflate", ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await asyncio.get_running_loop().create_future()


asyncio.run(main())
