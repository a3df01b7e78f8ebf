#!/usr/bin/env bash
# Memory per idle keep-alive connection, after one request each (and a 1 MiB answer on the
# first 100): mf replay and the recording proxy beside nginx holding the same connections.
# Connection counts fit the machine's descriptor limit (the proxy holds two per client).
set -euo pipefail
MF=$(realpath "$1")
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$work"; }
trap cleanup EXIT
ulimit -n "$(ulimit -Hn)"
limit=$(ulimit -n)
N=$(( limit / 2 - 500 < 10000 ? limit / 2 - 500 : 10000 ))
NP=$(( limit / 3 - 500 < 10000 ? limit / 3 - 500 : 10000 ))
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_line() { for _ in $(seq 200); do grep -q "$2" "$1" 2>/dev/null && { grep -o "$2 [0-9.:]*" "$1" | head -1 | awk '{print $NF}'; return; }; sleep 0.05; done; cat "$1" >&2; exit 1; }
wait_port() { for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.05; done; exit 1; }

up=$(free_port); ngx=$(free_port)
mkdir -p "$work/www" "$work/nginx/logs"
echo '{"users":[{"id":1,"name":"ada"}]}' > "$work/www/api.json"
head -c 1048576 /dev/urandom > "$work/www/big"
cat > "$work/nginx/nginx.conf" <<NGX
worker_processes 1;
worker_rlimit_nofile $limit;
user root;
daemon off;
error_log $work/nginx/logs/error.log;
pid $work/nginx/nginx.pid;
events { worker_connections $limit; }
http {
  access_log off;
  keepalive_timeout 300s;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$up backlog=4096; root $work/www; location / { default_type application/json; } }
  upstream up { server 127.0.0.1:$up; keepalive 64; }
  server { listen 127.0.0.1:$ngx backlog=4096; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
NGX
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" & pids+=($!)
wait_port "$up"; wait_port "$ngx"
ngx_worker=$(pgrep -P "$(cat "$work/nginx/nginx.pid")" | head -1)

# A recording of both answers, for the replay.
"$MF" record --proxy --upstream "http://127.0.0.1:$up" --listen 127.0.0.1:0 -o "$work/r.db" 2> "$work/rec0.log" & r0=$!; pids+=($r0)
a0=$(wait_line "$work/rec0.log" "listening on")
curl -s --noproxy '*' -o /dev/null "http://$a0/api.json"; curl -s --noproxy '*' -o /dev/null "http://$a0/big"
kill -INT $r0; wait $r0 || true

"$MF" replay "$work/r.db" --listen 127.0.0.1:0 --idle-timeout 300s 2> "$work/rep.log" & rep=$!; pids+=($rep)
rep_addr=$(wait_line "$work/rep.log" "listening on")
"$MF" record --proxy --upstream "http://127.0.0.1:$up" --listen 127.0.0.1:0 --idle-timeout 300s -o "$work/p.db" 2> "$work/rec.log" & rec=$!; pids+=($rec)
rec_addr=$(wait_line "$work/rec.log" "listening on")

read -r ngx_b ngx_h < <(python3 "$here/idle_conns.py" "127.0.0.1:$ngx" "$ngx_worker" "$N" /api.json 100 /big)
read -r rep_b rep_h < <(python3 "$here/idle_conns.py" "$rep_addr" "$rep" "$N" /api.json 100 /big)
read -r rec_b rec_h < <(python3 "$here/idle_conns.py" "$rec_addr" "$rec" "$NP" /api.json 100 /big)
python3 - <<PY
def per(b, h, n): return (h - b) / n
rows = [
  ("replay, $N idle connections (MiB)", $rep_h / 1024, per($rep_b, $rep_h, $N), $N),
  ("record proxy, $NP idle connections (MiB)", $rec_h / 1024, per($rec_b, $rec_h, $NP), $NP),
  ("nginx proxy, $N idle connections (MiB)", $ngx_h / 1024, per($ngx_b, $ngx_h, $N), $N),
]
print(f"{'idle keep-alive connections':<44}{'RSS MiB':>9}{'KiB/conn':>10}{'vs nginx':>10}")
base = per($ngx_b, $ngx_h, $N)
for name, rss, kb, n in rows:
    print(f"{name:<44}{rss:>9.1f}{kb:>10.1f}{kb / base if base else float('nan'):>10.2f}")
print(f"goal: 10k idle connections under 200 MB (<= 20 KiB each)")
PY
