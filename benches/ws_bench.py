"""WebSocket round trips per second against URL: sends a binary message, waits for the echo,
for SECONDS seconds, with CONNS concurrent connections. Prints `MSGS_PER_SEC n`.

Usage: ws_bench.py URL [SECONDS] [CONNS]"""
import asyncio
import sys
import time

from websockets.asyncio.client import connect


async def one(url, deadline, counts):
    async with connect(url, compression=None, ping_interval=None) as ws:
        await ws.recv()  # welcome
        n = 0
        payload = b"x" * 64
        while time.monotonic() < deadline:
            await ws.send(payload)
            await ws.recv()
            n += 1
        counts.append(n)


async def main():
    url = sys.argv[1]
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 3
    conns = int(sys.argv[3]) if len(sys.argv) > 3 else 4
    counts = []
    start = time.monotonic()
    await asyncio.gather(*(one(url, start + seconds, counts) for _ in range(conns)))
    elapsed = time.monotonic() - start
    # Each round trip is two messages (one each way).
    print(f"MSGS_PER_SEC {2 * sum(counts) / elapsed:.0f}", flush=True)


asyncio.run(main())
