"""WebSocket echo server and client in one process, for the lossy WebSocket capture test.

    ws_lossy.py N

Prints `PORT n` once the server listens on 127.0.0.1, waits for a line on stdin (the test
starts tcpdump in between), then sends N text messages one after the other, each echoed
before the next: message I is `m<I>:` followed by filler, 10 bytes to 6 kB long (sizes
drawn from a fixed seed, so that frames span segments and holes fall in headers and
payloads alike). Prints `SIZES s0,s1,…` (each message's length) and `DONE <echoes
received>`.
"""
import asyncio
import random
import sys

import websockets


def message(i, rng):
    size = rng.choice([10, rng.randint(20, 120), rng.randint(200, 1400), rng.randint(1500, 6000)])
    head = "m%d:" % i
    return head + "abcdefghijklmnopqrstuvwxyz"[i % 26] * max(size - len(head), 0)


async def echo(ws):
    async for msg in ws:
        await ws.send(msg)


async def main(n):
    async with websockets.serve(echo, "127.0.0.1", 0, compression=None, max_size=None) as server:
        port = server.sockets[0].getsockname()[1]
        print("PORT", port, flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        rng = random.Random(5)
        got, sizes = 0, []
        async with websockets.connect("ws://127.0.0.1:%d/feed" % port, compression=None) as ws:
            for i in range(n):
                msg = message(i, rng)
                sizes.append(len(msg))
                await ws.send(msg)
                got += await ws.recv() == msg
        print("SIZES", ",".join(map(str, sizes)), flush=True)
        print("DONE", got, flush=True)


asyncio.run(main(int(sys.argv[1])))
