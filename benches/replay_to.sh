#!/usr/bin/env bash
# `mf replay --to` throughput: a recording of the bare hyper server (made through the record
# proxy under wrk) sent back to that server with `--speed max`, comparing every answer, vs
# wrk against the same server with as many connections. Also the peak RSS of the run.
# Loopback only, bounded (MF_BENCH_SECONDS of recording, 5 s default).
#
# Usage: benches/replay_to.sh MF_BINARY   (BARE=path/to/bare_hyper overrides the baseline)
set -euo pipefail
MF=$(realpath "${1:?usage: benches/replay_to.sh MF_BINARY}")
BARE=${BARE:-$(dirname "$MF")/examples/bare_hyper}
SECS=${MF_BENCH_SECONDS:-5}
CONNS=16
for tool in wrk python3; do command -v $tool >/dev/null || { echo "$tool is required (make setup)"; exit 2; }; done
[ -x "$BARE" ] || { echo "missing $BARE: cargo build --release --example bare_hyper"; exit 2; }

TMP=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$TMP"; }
trap cleanup EXIT

# start NAME PATTERN CMD...: runs CMD in the background, waits for PATTERN in its output and
# sets GOT to the address after it, LAST_PID to its pid.
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

printf 'Content-Type: application/json\n' > "$TMP/headers.txt"
python3 -c 'import json; print(json.dumps({"users":[{"id":i,"name":"user%d"%i} for i in range(8)]}))' > "$TMP/body.json"
start bare 'listening on ' "$BARE" "$TMP/headers.txt" "$TMP/body.json"; BARE_ADDR=$GOT

# The recording: wrk through the record proxy, CONNS keep-alive connections.
start rec 'listening on ' "$MF" record --proxy --upstream "http://$BARE_ADDR" --listen 127.0.0.1:0 -o "$TMP/load.db"; REC=$GOT; REC_PID=$LAST_PID
wrk -t1 -c$CONNS -d"${SECS}s" "http://$REC/users" > /dev/null
kill -INT "$REC_PID"; wait "$REC_PID" || true

# Baseline: wrk straight at the server.
wrk -t1 -c$CONNS -d"${SECS}s" "http://$BARE_ADDR/users" > "$TMP/wrk.txt"
wrk_rps=$(awk '/Requests\/sec:/ {print $2}' "$TMP/wrk.txt")

# mf: every recorded request sent again and its answer compared.
begin=$(date +%s.%N)
set +e
/usr/bin/time -f '%M' -o "$TMP/rss.txt" "$MF" replay "$TMP/load.db" --to "http://$BARE_ADDR" \
  --speed max --concurrency $CONNS > "$TMP/to.txt" 2> "$TMP/to.err"
code=$?
set -e
end=$(date +%s.%N)
[ "$code" = 0 ] || { echo "mf replay --to exited $code:"; head -20 "$TMP/to.txt" "$TMP/to.err"; exit 2; }
sent=$(grep -oE '^[0-9]+ exchanges' "$TMP/to.txt" | head -1 | awk '{print $1}')
rss_kib=$(tail -1 "$TMP/rss.txt")

# Memory over a million sends: the same recording sent as many times as it takes (each pass
# reads it again, and the report grows by one entry per exchange), beside the one-pass RSS.
MILLION=${MF_BENCH_TO_SENDS:-1000000}
times=$(( (MILLION + sent - 1) / sent ))
set +e
/usr/bin/time -f '%M' -o "$TMP/rss_m.txt" "$MF" replay "$TMP/load.db" --to "http://$BARE_ADDR" \
  --speed max --concurrency $CONNS --times "$times" > "$TMP/to_m.txt" 2> "$TMP/to_m.err"
code=$?
set -e
[ "$code" = 0 ] || { echo "mf replay --to --times $times exited $code:"; head -20 "$TMP/to_m.txt" "$TMP/to_m.err"; exit 2; }
sent_m=$(grep -oE '^[0-9]+ exchanges' "$TMP/to_m.txt" | head -1 | awk '{print $1}')
rss_m_kib=$(tail -1 "$TMP/rss_m.txt")

python3 - "$sent" "$begin" "$end" "$wrk_rps" "$rss_kib" "$sent_m" "$rss_m_kib" <<'PY'
import sys
sent, begin, end, wrk, rss = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), int(sys.argv[5])
sent_m, rss_m = int(sys.argv[6]), int(sys.argv[7])
rate = sent / (end - begin)
print(f"{'measure':<40}{'mf':>12}{'baseline':>12}{'ratio':>8}  goal")
print(f"{'replay --to --speed max vs wrk (req/s)':<40}{rate:>12.0f}{wrk:>12.0f}{rate / wrk:>8.2f}  >= 0.5")
print(f"{'peak RSS, %d sends vs %d (MiB)' % (sent_m, sent):<40}{rss_m / 1024:>12.1f}{rss / 1024:>12.1f}{rss_m / max(rss, 1):>8.2f}  ~1 (flat)")
print(f"mf replay --to sent and compared {sent} exchanges in {end - begin:.2f} s (whole run, reading included); peak RSS {rss / 1024:.1f} MiB")
PY
