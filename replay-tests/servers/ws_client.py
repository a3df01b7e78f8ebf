"""A real `websockets` client: runs a scenario against URL and prints what it received as
JSON lines, so a run against the proxy and one against the replay can be compared.

Usage: ws_client.py URL normal|error|abort
  abort: sends "push" and drops the connection (TCP reset) without a close frame.
"""
import asyncio
import json
import sys

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


def show(x):
    return {"binary": x.hex()} if isinstance(x, bytes) else {"text": x}


async def main(url, mode):
    out = []
    ssl_context = None
    if "--cafile" in sys.argv:
        import ssl

        ssl_context = ssl.create_default_context(cafile=sys.argv[sys.argv.index("--cafile") + 1])
    async with connect(url, compression=None, ping_interval=None, open_timeout=10, close_timeout=5, ssl=ssl_context) as ws:
        if mode == "first":
            # Only the first server frame, or how the session ended instead.
            try:
                out.append(show(await ws.recv()))
            except ConnectionClosed as e:
                out.append({"closed": e.rcvd.code if e.rcvd else 1006, "reason": e.rcvd.reason if e.rcvd else None})
            for line in out:
                print(json.dumps(line), flush=True)
            return
        out.append(show(await ws.recv()))  # unprompted welcome
        if mode == "abort":
            await ws.send("push")
            ws.transport.abort()
            print(json.dumps(out[0]), flush=True)
            return
        await ws.send("hello")
        out.append(show(await ws.recv()))
        await ws.send(b"\x01\x02\x03")
        out.append(show(await ws.recv()))
        await ws.send(["cli", "ent"])  # a fragmented client message
        out.append(show(await ws.recv()))
        await ws.send("frag")
        out.append(show(await ws.recv()))
        pong = await ws.ping(b"are you there")
        await asyncio.wait_for(pong, 5)
        out.append({"pong": True})
        await ws.send("push")
        out.append(show(await ws.recv()))
        if mode == "error":
            await ws.send("close-error")
            try:
                await ws.recv()
            except ConnectionClosed as e:
                out.append({"closed": e.rcvd.code if e.rcvd else None, "reason": e.rcvd.reason if e.rcvd else None})
        else:
            await ws.close(1000, "done")
            out.append({"closed": ws.close_code, "reason": ws.close_reason})
    for line in out:
        print(json.dumps(line), flush=True)


asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 30))
