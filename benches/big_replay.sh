#!/usr/bin/env bash
# Big recordings: replay start-up (until the first answered curl) and RSS on a synthetic
# recording of N exchanges (default 1,000,000), the near-miss answer time, replay
# throughput, and `mf ls` / `mf export` RSS — each beside a baseline measured in this run
# (the same on a 1,000-exchange recording, a matched answer, bare hyper).
# Usage: benches/big_replay.sh MF_BINARY [N]
# Goals: first answer < 2 s, RSS < 256 MiB, near miss < 50 ms, throughput >= 0.8x bare
# hyper, ls/export RSS flat (< 64 MiB).
set -euo pipefail
MF=$(realpath "${1:?usage: benches/big_replay.sh MF_BINARY [N]}")
N=${2:-1000000}
BARE=${BARE:-$(dirname "$MF")/examples/bare_hyper}
SECS=${MF_BENCH_SECONDS:-5}
WORK=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$WORK"; }
trap cleanup EXIT
now() { date +%s.%N; }

"$MF" generate synthetic-recording -o "$WORK/big.db" --exchanges "$N" 2>/dev/null
"$MF" generate synthetic-recording -o "$WORK/small.db" --exchanges 1000 2>/dev/null
echo "recordings: $N exchanges $(du -h "$WORK/big.db" | cut -f1), 1000 exchanges $(du -h "$WORK/small.db" | cut -f1)"

# A recorded URL of each recording: an order read back (answered once per id).
url_of() { "$MF" ls "$1" --json --path '/orders/*' 2>/dev/null | sed -n "${2}p" | python3 -c 'import json,sys; print(json.loads(sys.stdin.read())["target"])'; }
big_target=$(url_of "$WORK/big.db" 1000)
small_target=$(url_of "$WORK/small.db" 10)

# start DB TARGET NAME -> "seconds_to_first_answer pid port"
start() {
  local port; port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  local t0; t0=$(now)
  "$MF" replay "$1" --listen "127.0.0.1:$port" 2> "$WORK/$3.log" & local pid=$!
  pids+=("$pid")
  for _ in $(seq 6000); do
    if curl -sf --noproxy '*' -o /dev/null "http://127.0.0.1:$port$2" 2>/dev/null; then
      python3 -c "print(f'{$(now) - $t0:.3f} $pid $port')"; return
    fi
    sleep 0.01
  done
  echo "replay of $1 never answered" >&2; cat "$WORK/$3.log" >&2; exit 1
}
rss_mib() { awk '/VmHWM/ {printf "%.1f", $2 / 1024}' "/proc/$1/status"; }

read -r small_start small_pid small_port < <(start "$WORK/small.db" "$small_target" small)
small_rss=$(rss_mib "$small_pid")
read -r big_start big_pid big_port < <(start "$WORK/big.db" "$big_target" big)
big_rss=$(rss_mib "$big_pid")

# Near miss vs a matched answer, each the median of 21 sequential curls.
median_ms() {
  for i in $(seq 21); do
    curl -s --noproxy '*' -o /dev/null -w '%{time_total}\n' "$1$i"
  done | sort -n | sed -n 11p | awk '{printf "%.2f", $1 * 1000}'
}
miss_ms=$(median_ms "http://127.0.0.1:$big_port/orders/no-such-order-")
# A recorded URL (the fragment, which curl does not send, keeps each request the same).
hit_ms=$(median_ms "http://127.0.0.1:$big_port$big_target#")

# Throughput on the big recording vs bare hyper sending the same bytes.
load() {
  wrk -t1 -c16 -d"${SECS}s" "$1" > "$WORK/wrk.txt" 2>&1 || { cat "$WORK/wrk.txt" >&2; exit 1; }
  grep -o 'Requests/sec: *[0-9.]*' "$WORK/wrk.txt" | awk '{printf "%.0f", $2}'
}
curl -s --noproxy '*' -D "$WORK/h.txt" -o "$WORK/body.bin" "http://127.0.0.1:$big_port$big_target"
tail -n +2 "$WORK/h.txt" | tr -d '\r' > "$WORK/headers.txt"
"$BARE" "$WORK/headers.txt" "$WORK/body.bin" 2> "$WORK/bare.log" & pids+=($!)
for _ in $(seq 200); do grep -q "listening on" "$WORK/bare.log" && break; sleep 0.05; done
bare_addr=$(grep -o 'listening on [0-9.:]*' "$WORK/bare.log" | awk '{print $NF}')
bare_rps=$(load "http://$bare_addr$big_target")
# One recorded answer, served again and again (from the cache), as benches/run.sh measures.
replay_rps=$(load "http://127.0.0.1:$big_port$big_target")
# `/users/me` is one group of N/11 recorded answers: each request gets the next one, so this
# load walks the recording (a load from the file per request), not one cached answer.
walk_rps=$(load "http://127.0.0.1:$big_port/users/me")
big_rss_after=$(rss_mib "$big_pid")
kill -INT "$big_pid" "$small_pid" 2>/dev/null || true

# ls / export peak RSS on the big recording vs the small one.
peak() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1 | awk '{printf "%.1f", $1 / 1024}'; }
ls_big=$(peak "$MF" ls "$WORK/big.db" --json); ls_small=$(peak "$MF" ls "$WORK/small.db" --json)
har_big=$(peak "$MF" export "$WORK/big.db" --format har -o "$WORK/big.har"); rm -f "$WORK/big.har"
har_small=$(peak "$MF" export "$WORK/small.db" --format har -o "$WORK/small.har")
curl_big=$(peak "$MF" export "$WORK/big.db" --format curl -o "$WORK/big.sh"); rm -f "$WORK/big.sh"
curl_small=$(peak "$MF" export "$WORK/small.db" --format curl -o "$WORK/small.sh")

python3 - <<PY
def r(a, b): return a / b if b else float("nan")
rows = [
  ("replay start-up to first answer (s)", $big_start, $small_start, "< 2 s"),
  ("replay RSS at first answer (MiB)", $big_rss, $small_rss, "< 256 MiB"),
  ("replay RSS after the load run (MiB)", $big_rss_after, $small_rss, "< 256 MiB"),
  ("near miss vs matched answer (ms)", $miss_ms, $hit_ms, "< 50 ms"),
  ("replay vs bare hyper (req/s)", $replay_rps, $bare_rps, ">= 0.8"),
  ("replay, every answer loaded, vs bare (req/s)", $walk_rps, $bare_rps, "-"),
  ("mf ls --json peak RSS (MiB)", $ls_big, $ls_small, "< 64 MiB"),
  ("mf export --format har peak RSS (MiB)", $har_big, $har_small, "< 64 MiB"),
  ("mf export --format curl peak RSS (MiB)", $curl_big, $curl_small, "< 64 MiB"),
]
print(f"{'measure ($N exchanges vs baseline)':<44}{'big':>10}{'baseline':>10}{'ratio':>8}  goal")
for name, a, b, goal in rows:
    print(f"{name:<44}{a:>10.2f}{b:>10.2f}{r(a, b):>8.2f}  {goal}")
print("baselines: the same on a 1,000-exchange recording; a matched answer; bare hyper")
PY
