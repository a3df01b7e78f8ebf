#!/usr/bin/env bash
# gRPC unary replay vs a bare hyper HTTP/2 server answering the same bytes — the recorded
# message, headers and trailers — (h2load), and
# WebSocket messages per second through the recording proxy vs direct. Loopback only, bounded.
#
# Usage: benches/grpc_ws.sh MF_BINARY   (BARE_H2=path/to/bare_h2 overrides the baseline binary)
set -euo pipefail
MF=$(realpath "${1:?usage: benches/grpc_ws.sh MF_BINARY}")
HERE=$(cd "$(dirname "$0")/.." && pwd)
BARE_H2=${BARE_H2:-$(dirname "$MF")/examples/bare_h2}
SERVERS=$HERE/replay-tests/servers
N=${N:-150000}
SECONDS_WS=${SECONDS_WS:-3}
for tool in h2load python3; do command -v $tool >/dev/null || { echo "$tool is required (make setup)"; exit 2; }; done
[ -x "$BARE_H2" ] || { echo "missing $BARE_H2: cargo build --release --example bare_h2"; exit 2; }

TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

# start NAME PATTERN CMD...: runs CMD in the background, waits for PATTERN in its output and
# sets GOT to what follows it (the port or address), LAST_PID to its pid.
start() {
  local name=$1 pattern=$2; shift 2
  "$@" >"$TMP/$name.log" 2>&1 &
  LAST_PID=$!
  PIDS+=($LAST_PID)
  for _ in $(seq 200); do
    if grep -qE "$pattern" "$TMP/$name.log"; then
      GOT=$(grep -oE "$pattern[^ ,]*" "$TMP/$name.log" | head -1 | sed -E "s/^$pattern//")
      return
    fi
    sleep 0.05
  done
  echo "$name did not start:" >&2; cat "$TMP/$name.log" >&2; exit 2
}

h2load_rps() {
  h2load -n "$N" -c 4 -m 16 -t 1 -d "$TMP/req.bin" -H 'content-type: application/grpc' -H 'te: trailers' \
    "http://$1/mftest.Routes/GetPoint" | awk '/^finished in/ { for (i=1;i<=NF;i++) if ($i ~ /req\/s/) print $(i-1) }'
}

# --- gRPC unary replay vs bare hyper -----------------------------------------------------
start grpc 'PORT ' python3 -u "$SERVERS/grpc_server.py"; GRPC_PORT=$GOT
start rec 'listening on ' "$MF" record --proxy --upstream "http://127.0.0.1:$GRPC_PORT" --listen 127.0.0.1:0 -o "$TMP/grpc.db"; REC=$GOT; REC_PID=$LAST_PID
python3 "$SERVERS/grpc_client.py" "$REC" all >/dev/null
kill -INT "$REC_PID"; wait "$REC_PID" || true
start replay 'listening on ' "$MF" replay "$TMP/grpc.db" --latency none --listen 127.0.0.1:0; REPLAY=$GOT
# The baseline sends the recorded answer's own headers and trailers, as the replay must.
python3 - "$MF" "$TMP" <<'PY'
import json, subprocess, sys
mf, tmp = sys.argv[1], sys.argv[2]
rows = [json.loads(l) for l in subprocess.run([mf, "ls", f"{tmp}/grpc.db", "--json"], capture_output=True, text=True).stdout.splitlines()]
for r in rows:
    if not r["url"].endswith("/GetPoint") or r.get("grpc_status") != "0":
        continue
    ex = json.loads(subprocess.run([mf, "show", f"{tmp}/grpc.db", str(r["id"]), "--json"], capture_output=True, text=True).stdout)
    with open(f"{tmp}/head.txt", "w") as f:
        f.writelines(f"{k}: {v}\n" for k, v in ex["response"]["headers"])
    with open(f"{tmp}/tail.txt", "w") as f:
        f.writelines(f"{k}: {v}\n" for k, v in ex["response"]["trailers"])
    break
PY
if [ -s "$TMP/head.txt" ]; then
  start bare 'PORT ' "$BARE_H2" "$TMP/head.txt" "$TMP/tail.txt"; BARE_PORT=$GOT
else
  start bare 'PORT ' "$BARE_H2"; BARE_PORT=$GOT
fi
# Point { x: 21, label: "a" }: the recorded unary request, so every call matches exactly.
printf '\x00\x00\x00\x00\x05\x08\x15\x12\x01a' >"$TMP/req.bin"
median() { sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
# The machine may be shared: alternate the two servers and keep the median of three runs each.
h2load_rps "$REPLAY" >/dev/null   # warm-up
for _ in 1 2 3; do
  h2load_rps "$REPLAY" >>"$TMP/mf.rps"
  h2load_rps "127.0.0.1:$BARE_PORT" >>"$TMP/bare.rps"
done
MF_RPS=$(median <"$TMP/mf.rps")
BARE_RPS=$(median <"$TMP/bare.rps")
echo "grpc unary (h2load -c4 -m16, replay --latency none, median of 3): mf replay ${MF_RPS} req/s, bare hyper h2 ${BARE_RPS} req/s, ratio $(python3 -c "print(f'{$MF_RPS/$BARE_RPS:.2f}')")x (goal >= 0.9x)"

# --- WebSocket through the recording proxy vs direct ---------------------------------------
start ws 'PORT ' python3 -u "$SERVERS/ws_server.py"; WS_PORT=$GOT
start wsrec 'listening on ' "$MF" record --proxy --upstream "http://127.0.0.1:$WS_PORT" --listen 127.0.0.1:0 -o "$TMP/ws.db"; WSREC=$GOT
for _ in 1 2 3; do
  python3 "$HERE/benches/ws_bench.py" "ws://127.0.0.1:$WS_PORT/bench" "$SECONDS_WS" 4 | awk '/MSGS_PER_SEC/ {print $2}' >>"$TMP/direct.mps"
  python3 "$HERE/benches/ws_bench.py" "ws://$WSREC/bench" "$SECONDS_WS" 4 | awk '/MSGS_PER_SEC/ {print $2}' >>"$TMP/proxied.mps"
done
DIRECT=$(median <"$TMP/direct.mps")
PROXIED=$(median <"$TMP/proxied.mps")
echo "websocket (4 connections, 64 B echo round trips, median of 3): through recording proxy ${PROXIED} msg/s, direct ${DIRECT} msg/s, ratio $(python3 -c "print(f'{$PROXIED/$DIRECT:.2f}')")x"
