#!/usr/bin/env bash
# Replay realism benchmarks (loopback, bounded, about 40 s):
#  1. throughput with the rule engine on (10 rules, none firing) vs off — goal ≥ 0.95×;
#  2. latency accuracy of --latency fixed:20ms under load: configured vs observed p50/p99.
# Usage: benches/faults.sh MF_BINARY   (needs wrk, curl, python3)
set -euo pipefail
MF=$(realpath "${1:?usage: benches/faults.sh MF_BINARY}")
HERE=$(cd "$(dirname "$0")/.." && pwd)
DUR=${BENCH_SECONDS:-5}
CONNS=${BENCH_CONNECTIONS:-32}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

for t in wrk curl python3; do command -v $t >/dev/null || { echo "faults.sh: $t is missing (make setup)" >&2; exit 2; }; done

# Waits for "MARKER ADDR" in FILE and prints ADDR.
addr_from() {
  local file=$1 marker=$2
  for _ in $(seq 200); do
    if grep -q "$marker" "$file" 2>/dev/null; then
      grep -o "$marker[^ ,]*" "$file" | head -1 | sed "s/$marker//"
      return
    fi
    sleep 0.05
  done
  echo "faults.sh: no '$marker' in $file:" >&2; cat "$file" >&2; exit 2
}

# Record one small JSON exchange from the test upstream.
python3 -u "$HERE/replay-tests/servers/http_upstream.py" >"$WORK/up.out" 2>&1 & PIDS+=($!)
UP=$(addr_from "$WORK/up.out" "PORT ")
"$MF" record --proxy --upstream "http://127.0.0.1:$UP" --listen 127.0.0.1:0 -o "$WORK/rec.db" 2>"$WORK/rec.err" & REC=$!
RADDR=$(addr_from "$WORK/rec.err" "listening on ")
curl -s --noproxy '*' -o /dev/null "http://$RADDR/json"
kill -INT $REC; wait $REC || true

{
  echo "rules:"
  for i in $(seq 1 10); do
    echo "  - {match: {method: POST, path: \"/never/$i/{id}\", header: {x-chaos: \"on\"}}, probability: 0.5, fault: reset}"
  done
} >"$WORK/rules.yaml"

start_replay() {
  local log=$WORK/replay.$RANDOM.err
  "$MF" replay "$WORK/rec.db" --listen 127.0.0.1:0 --seed 1 "$@" 2>"$log" & RPID=$!
  PIDS+=($RPID)
  RURL="http://$(addr_from "$log" "listening on ")/json"
}

rps() { wrk -t2 -c"$CONNS" -d"${DUR}s" "$1" | awk '/Requests\/sec/ {print $2}'; }

best() { printf '%s\n' "$@" | sort -g | tail -1; }

off=(); on=()
for round in 1 2; do
  start_replay; off+=("$(rps "$RURL")"); kill $RPID; wait $RPID 2>/dev/null || true
  start_replay --config "$WORK/rules.yaml"; on+=("$(rps "$RURL")"); kill $RPID; wait $RPID 2>/dev/null || true
done
OFF=$(best "${off[@]}"); ON=$(best "${on[@]}")
printf 'throughput  rules off (baseline): %10.0f req/s   (runs: %s)\n' "$OFF" "${off[*]}"
printf 'throughput  10 rules, none firing: %10.0f req/s   (runs: %s)   ratio %.3f (goal >= 0.95)\n' \
  "$ON" "${on[*]}" "$(awk -v a="$ON" -v b="$OFF" 'BEGIN{print a/b}')"

start_replay --latency fixed:20ms
wrk -t2 -c"$CONNS" -d"${DUR}s" --latency "$RURL" >"$WORK/lat.txt"
kill $RPID; wait $RPID 2>/dev/null || true
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v/=1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v*=1000}; printf "%.2f", v}'; }
P50=$(awk '$1=="50%" {print $2}' "$WORK/lat.txt" | to_ms)
P99=$(awk '$1=="99%" {print $2}' "$WORK/lat.txt" | to_ms)
RATE=$(awk '/Requests\/sec/ {print $2}' "$WORK/lat.txt")
printf 'latency     fixed:20ms under %s connections (%s req/s): p50 %s ms (error %+.2f ms), p99 %s ms (error %+.2f ms)\n' \
  "$CONNS" "$RATE" "$P50" "$(awk -v a="$P50" 'BEGIN{print a-20}')" "$P99" "$(awk -v a="$P99" 'BEGIN{print a-20}')"
