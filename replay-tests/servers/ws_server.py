"""A real `websockets` server for the end-to-end tests. Prints `PORT n` once listening.

On connect it pushes "welcome" unprompted; then per text message:
  "push"        -> "tick" 300 ms later
  "frag"        -> one text message sent as three fragments
  "close-error" -> closes with 1011 "server failure"
  anything else -> "echo: <text>"
Binary messages come back reversed. Pings are answered by the library.
"""
import asyncio

from websockets.asyncio.server import serve


async def handler(ws):
    await ws.send("welcome")
    async for msg in ws:
        if isinstance(msg, bytes):
            await ws.send(msg[::-1])
        elif msg == "push":
            await asyncio.sleep(0.3)
            await ws.send("tick")
        elif msg == "frag":
            await ws.send(["part1-", "part2-", "part3"])
        elif msg == "close-error":
            await ws.close(1011, "server failure")
            return
        else:
            await ws.send("echo: " + msg)


async def main():
    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await asyncio.get_running_loop().create_future()


asyncio.run(main())
