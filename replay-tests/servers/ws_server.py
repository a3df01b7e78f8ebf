"""A real `websockets` server for the end-to-end tests. Prints `PORT n` once listening.

On connect it pushes "welcome" unprompted; then per text message:
  "push"        -> "tick" 300 ms later
  "frag"        -> one text message sent as three fragments
  "close-error" -> closes with 1011 "server failure"
  anything else -> "echo: <text>"
Binary messages come back reversed. Pings are answered by the library.
`--changed`: the greeting is "welcome v2" (a new version, for `mf replay --to`).
"""
import asyncio
import sys

from websockets.asyncio.server import serve


async def handler(ws):
    await ws.send("welcome v2" if "--changed" in sys.argv else "welcome")
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
    ssl_context = None
    if "--tls" in sys.argv:
        import ssl

        i = sys.argv.index("--tls")
        ssl_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ssl_context.load_cert_chain(sys.argv[i + 1], sys.argv[i + 2])
    async with serve(handler, "127.0.0.1", 0, compression=None, ping_interval=None, ssl=ssl_context) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"PORT {port}", flush=True)
        await asyncio.get_running_loop().create_future()


asyncio.run(main())
