"""A `websockets` client for the fidelity tests: runs the scenario below against URL and
prints JSON lines — first the negotiated `Sec-WebSocket-Extensions` answer, then what it
received — so runs against the proxy and the replay can be compared.

Usage: ws_deflate_client.py URL deflate|none

Scenario: welcome; "hello"; "big"; a fragmented "client"; "hello" again (with context
takeover it is a back-reference); bytes 01 02 03; "frag"; close 1000 "done".
"""
import asyncio
import hashlib
import json
import sys

from websockets.asyncio.client import connect


def show(x):
    if isinstance(x, bytes):
        return {"binary": x.hex()}
    if len(x) > 200:
        return {"text_sha256": hashlib.sha256(x.encode()).hexdigest(), "len": len(x)}
    return {"text": x}


async def main(url, compression):
    out = []
    async with connect(
        url,
        compression=None if compression == "none" else "deflate",
        ping_interval=None,
        open_timeout=10,
        close_timeout=5,
        max_size=None,
    ) as ws:
        out.append({"extensions": ws.response.headers.get("Sec-WebSocket-Extensions")})
        out.append(show(await ws.recv()))
        for msg in ["hello", "big", ["cli", "ent"], "hello", b"\x01\x02\x03", "frag"]:
            await ws.send(msg)
            out.append(show(await ws.recv()))
        await ws.close(1000, "done")
        out.append({"closed": ws.close_code, "reason": ws.close_reason})
    for line in out:
        print(json.dumps(line), flush=True)


asyncio.run(asyncio.wait_for(main(sys.argv[1], sys.argv[2]), 30))
