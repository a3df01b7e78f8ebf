// Node's built-in WebSocket client (undici; `node --experimental-websocket` on Node 20) for the
// fidelity tests: the same scenario and output as ws_deflate_client.py, minus the fragmented
// client message (this API cannot send fragments).
//
// Usage: node --experimental-websocket ws_deflate_client.mjs URL
import { createHash } from "node:crypto";

const url = process.argv[2];
const out = [];
const show = (data) => {
  if (typeof data !== "string") return { binary: Buffer.from(data).toString("hex") };
  if (data.length > 200) {
    return { text_sha256: createHash("sha256").update(data).digest("hex"), len: data.length };
  }
  return { text: data };
};

const steps = ["hello", "big", "hello", new Uint8Array([1, 2, 3]), "frag"];
const ws = new WebSocket(url);
ws.binaryType = "arraybuffer";
const timer = setTimeout(() => {
  console.error("timed out");
  process.exit(2);
}, 30000);
ws.onopen = () => out.push({ extensions: ws.extensions || null });
ws.onmessage = (e) => {
  out.push(show(e.data));
  const next = steps.shift();
  if (next === undefined) ws.close(1000, "done");
  else ws.send(next);
};
ws.onerror = (e) => console.error("error", e.message || e);
ws.onclose = (e) => {
  clearTimeout(timer);
  out.push({ closed: e.code, reason: e.reason });
  for (const line of out) console.log(JSON.stringify(line));
};
