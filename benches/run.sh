#!/usr/bin/env bash
# `make bench`: every figure beside a baseline measured in the same run, on 127.0.0.1 only.
# Load: wrk, 1 thread, 16 connections, 5 s per run (MF_BENCH_SECONDS to change).
set -euo pipefail
MF=$(realpath "${1:-target/release/mf}")
BARE=${BARE:-$(dirname "$MF")/examples/bare_hyper}
SECS=${MF_BENCH_SECONDS:-5}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$work"; }
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { # file marker -> address after marker
  for _ in $(seq 200); do
    if grep -q "$2" "$1" 2>/dev/null; then grep -o "$2 [0-9.:]*" "$1" | head -1 | awk '{print $NF}'; return; fi
    sleep 0.05
  done
  echo "timeout waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}
wait_port() { for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }

# wrk URL -> "rps p50_ms p99_ms"
load() {
  wrk -t1 -c16 -d"${SECS}s" --latency "$1" > "$work/wrk.txt" 2>&1 || { cat "$work/wrk.txt" >&2; exit 1; }
  python3 - "$work/wrk.txt" <<'PY'
import re, sys
t = open(sys.argv[1]).read()
def ms(label):
    m = re.search(r"^\s*%s\s+([\d.]+)(us|ms|s)\s*$" % re.escape(label), t, re.M)
    if not m: return float("nan")
    v, u = float(m.group(1)), m.group(2)
    return v / 1000 if u == "us" else v * 1000 if u == "s" else v
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", t).group(1))
errs = re.search(r"Non-2xx or 3xx responses: (\d+)", t)
if errs: print("warning: %s non-2xx responses" % errs.group(1), file=sys.stderr)
print(f"{rps:.0f} {ms('50%'):.3f} {ms('99%'):.3f}")
PY
}

# --- nginx: the upstream (static files) and a plain reverse proxy in front of it ---------
up_port=$(free_port); ngx_port=$(free_port)
mkdir -p "$work/www" "$work/nginx/logs" "$work/nginx-proxy/logs"
python3 -c 'import json; print(json.dumps({"users":[{"id":i,"name":"user%d"%i,"email":"u%d@example.com"%i} for i in range(8)]}))' > "$work/www/api.json"
truncate -s 1G "$work/www/big"
# The upstream and nginx's proxy are two nginx processes of one worker each: in one worker the
# proxy would share its core with the upstream it calls, a handicap mf's proxy (a process of
# its own) does not have. Measured here: the shared worker proxied 12.5k-38.1k req/s where a
# separate one did 13.9k-53.6k in the same rounds.
# ngx_conf PREFIX SERVER_BLOCKS -> nginx.conf under PREFIX
ngx_conf() {
  cat > "$1/nginx.conf" <<NGX
worker_processes 1;
user root;
daemon off;
error_log $1/logs/error.log;
pid $1/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  $2
}
NGX
}
ngx_conf "$work/nginx" "server { listen 127.0.0.1:$up_port; root $work/www; location / { default_type application/json; } }"
ngx_conf "$work/nginx-proxy" "upstream up { server 127.0.0.1:$up_port; keepalive 64; }
  server {
    listen 127.0.0.1:$ngx_port;
    location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_buffering off; }
  }"
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" & pids+=($!)
nginx -p "$work/nginx-proxy" -c "$work/nginx-proxy/nginx.conf" & pids+=($!)
wait_port "$up_port"; wait_port "$ngx_port"

# One connection thread, as nginx's proxy has one worker (mf's store writer is a thread of its own).
"$MF" record --proxy --threads 1 --upstream "http://127.0.0.1:$up_port" --listen 127.0.0.1:0 -o "$work/load.db" 2> "$work/rec.log" & rec=$!; pids+=($rec)
rec_addr=$(wait_line "$work/rec.log" "listening on")

read -r direct_rps direct_p50 direct_p99 < <(load "http://127.0.0.1:$up_port/api.json")
read -r nginx_rps nginx_p50 nginx_p99 < <(load "http://127.0.0.1:$ngx_port/api.json")
read -r mf_rps mf_p50 mf_p99 < <(load "http://$rec_addr/api.json")

# Peak RSS of the recording proxy while 1 GiB streams through it.
rss_before=$(awk '/VmHWM/ {print $2}' /proc/$rec/status)
curl -s --noproxy '*' -o /dev/null "http://$rec_addr/big"
rss_after=$(awk '/VmHWM/ {print $2}' /proc/$rec/status)
kill -INT $rec; wait $rec || true
recorded=$(grep -o 'recorded [0-9]* exchanges' "$work/rec.log" | awk '{print $2}')

# --- replay vs a bare hyper server sending the same bytes ---------------------------------
"$MF" record --proxy --upstream "http://127.0.0.1:$up_port" --listen 127.0.0.1:0 -o "$work/one.db" 2> "$work/rec1.log" & rec1=$!; pids+=($rec1)
rec1_addr=$(wait_line "$work/rec1.log" "listening on")
curl -s --noproxy '*' -o /dev/null "http://$rec1_addr/api.json"
kill -INT $rec1; wait $rec1 || true
"$MF" replay "$work/one.db" --listen 127.0.0.1:0 2> "$work/replay.log" & rep=$!; pids+=($rep)
rep_addr=$(wait_line "$work/replay.log" "listening on")
curl -s --noproxy '*' -D "$work/h.txt" -o "$work/body.bin" "http://$rep_addr/api.json"
tail -n +2 "$work/h.txt" | tr -d '\r' > "$work/headers.txt"
"$BARE" "$work/headers.txt" "$work/body.bin" 2> "$work/bare.log" & pids+=($!)
bare_addr=$(wait_line "$work/bare.log" "listening on")
read -r bare_rps bare_p50 bare_p99 < <(load "http://$bare_addr/api.json")
read -r replay_rps replay_p50 replay_p99 < <(load "http://$rep_addr/api.json")

# --- bytes on disk per exchange: a JSON API workload, recording vs HAR ---------------------
python3 -u "$root/replay-tests/servers/http_upstream.py" > "$work/py.log" 2>&1 & pids+=($!)
py_port=$(wait_line "$work/py.log" PORT)
"$MF" record --proxy --upstream "http://127.0.0.1:$py_port" --listen 127.0.0.1:0 -o "$work/api.db" 2> "$work/rec2.log" & rec2=$!; pids+=($rec2)
rec2_addr=$(wait_line "$work/rec2.log" "listening on")
python3 - "$rec2_addr" <<'PY'
import http.client, sys
host, port = sys.argv[1].rsplit(":", 1)
c = http.client.HTTPConnection(host, int(port))
for i in range(2000):
    c.request("GET", f"/api/items/{i % 400}", headers={"Accept": "application/json", "User-Agent": "bench/1.0"})
    c.getresponse().read()
PY
kill -INT $rec2; wait $rec2 || true
"$MF" export "$work/api.db" --format har -o "$work/api.har"
db_bytes=$(stat -c %s "$work/api.db"); har_bytes=$(stat -c %s "$work/api.har")

python3 - <<PY
def r(a, b): return a / b if b else float("nan")
rows = [
  ("replay vs bare hyper (req/s)", $replay_rps, $bare_rps, r($replay_rps, $bare_rps), ">= 0.85"),
  ("record proxy vs nginx proxy (req/s)", $mf_rps, $nginx_rps, r($mf_rps, $nginx_rps), ">= 1.0"),
  ("record proxy vs direct (req/s)", $mf_rps, $direct_rps, r($mf_rps, $direct_rps), "-"),
  ("disk per exchange vs HAR (bytes)", $db_bytes / 2000, $har_bytes / 2000, r($db_bytes, $har_bytes), "<= 0.2"),
]
print(f"{'measure':<40}{'mf':>12}{'baseline':>12}{'ratio':>8}  goal")
for name, a, b, ratio, goal in rows:
    print(f"{name:<40}{a:>12.0f}{b:>12.0f}{ratio:>8.2f}  {goal}")
print()
print(f"added latency through the record proxy: p50 {$mf_p50 - $direct_p50:+.3f} ms, p99 {$mf_p99 - $direct_p99:+.3f} ms (nginx proxy: p50 {$nginx_p50 - $direct_p50:+.3f} ms, p99 {$nginx_p99 - $direct_p99:+.3f} ms)")
print(f"replay latency p50/p99 {$replay_p50:.3f}/{$replay_p99:.3f} ms vs bare hyper {$bare_p50:.3f}/{$bare_p99:.3f} ms")
print(f"peak RSS of the record proxy: {$rss_before/1024:.1f} MiB before, {$rss_after/1024:.1f} MiB after streaming 1 GiB through it (goal: flat, < 64 MiB)")
print(f"record proxy stored ${recorded:-0} exchanges during its load run")
PY
for extra in ${MF_BENCH_EXTRAS-tls grpc_ws import infer faults idle_conns replay_to big_replay pg}; do
  if [ -f "$here/$extra.sh" ]; then echo; echo "== $extra"; bash "$here/$extra.sh" "$MF"; fi
done
