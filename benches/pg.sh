#!/usr/bin/env bash
# PostgreSQL store benchmark, on a throwaway cluster (initdb as the postgres user, a free
# port of 127.0.0.1, stopped and removed at the end):
#  - recording proxy throughput writing to PostgreSQL vs writing to SQLite (goal >= 0.9x),
#    wrk 1 thread, 16 connections, MF_BENCH_SECONDS (5) each, nginx as the upstream;
#  - `mf copy` of a synthetic recording of N exchanges (default 1,000,000) into PostgreSQL;
#  - database size per exchange vs the SQLite file's.
# Usage: benches/pg.sh MF_BINARY [N]
set -euo pipefail
MF=$(realpath "${1:?usage: benches/pg.sh MF_BINARY [N]}")
N=${2:-${MF_PG_COPY_EXCHANGES:-1000000}}
SECS=${MF_BENCH_SECONDS:-5}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -x "$PGBIN/pg_ctl" ] || { echo "PostgreSQL is not installed (make setup installs it)" >&2; exit 1; }
work=$(mktemp -d)
chown postgres "$work"
pids=()
pg() { runuser -u postgres -- "$PGBIN/$@"; }
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  pg pg_ctl -D "$work/data" -m immediate stop >/dev/null 2>&1 || true
  sleep 0.2; rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
wait_line() {
  for _ in $(seq 200); do
    if grep -q "$2" "$1" 2>/dev/null; then grep -o "$2 [0-9.:]*" "$1" | head -1 | awk '{print $NF}'; return; fi
    sleep 0.05
  done
  echo "timeout waiting for '$2' in $1" >&2; cat "$1" >&2; exit 1
}
rps() { wrk -t1 -c16 -d"${SECS}s" "$1" | awk '/Requests\/sec/ {print $2}'; }

db_port=$(free_port)
pg initdb -D "$work/data" -A trust -U postgres --no-sync >/dev/null
pg pg_ctl -D "$work/data" -l "$work/pg.log" -w -o "-p $db_port -k $work -c listen_addresses=127.0.0.1" start >/dev/null
db="postgres://postgres@127.0.0.1:$db_port/postgres?sslmode=disable"

# --- recording proxy: SQLite file vs PostgreSQL ------------------------------------------
up_port=$(free_port)
mkdir -p "$work/www" "$work/nginx/logs"
python3 -c 'import json; print(json.dumps({"users":[{"id":i,"name":"user%d"%i,"email":"u%d@example.com"%i} for i in range(8)]}))' > "$work/www/api.json"
cat > "$work/nginx/nginx.conf" <<NGX
worker_processes 1;
user root;
daemon off;
error_log $work/nginx/logs/error.log;
pid $work/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  server { listen 127.0.0.1:$up_port; root $work/www; location / { default_type application/json; } }
}
NGX
nginx -p "$work/nginx" -c "$work/nginx/nginx.conf" & pids+=($!)
wait_port "$up_port"

# record OUTPUT LOG -> "rps stored"
record() {
  "$MF" record --proxy --upstream "http://127.0.0.1:$up_port" --listen 127.0.0.1:0 -o "$1" 2> "$2" & local rec=$!
  local addr; addr=$(wait_line "$2" "listening on")
  local r; r=$(rps "http://$addr/api.json")
  kill -INT $rec; wait $rec || true
  local stored; stored=$(grep -o "recorded [0-9]* exchanges" "$2" | awk '{print $2}')
  echo "$r ${stored:-0}"
}
read -r sqlite_rps sqlite_stored < <(record "$work/load.db" "$work/rec-sqlite.log")
read -r pg_rps pg_stored < <(record "$db&recording=load" "$work/rec-pg.log")

# --- mf copy of N exchanges into PostgreSQL ----------------------------------------------
"$MF" generate synthetic-recording -o "$work/synthetic.db" --exchanges "$N" >/dev/null 2>&1
t0=$(now)
"$MF" copy "$work/synthetic.db" "$db&recording=copy" 2> "$work/copy.log" || { cat "$work/copy.log" >&2; exit 1; }
t1=$(now)
copied=$(grep -o "copied [0-9]* exchanges" "$work/copy.log" | awk '{print $2}')
# What the server said when a write failed (a full disk, say): the copy only counts it.
grep -E "ERROR|FATAL|PANIC" "$work/pg.log" | head -5 >&2 || true
sqlite_bytes=$(stat -c %s "$work/synthetic.db")
pg_bytes=$(psql -qAt -h 127.0.0.1 -p "$db_port" -U postgres postgres -c \
  "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'mf_copy' AND c.relkind IN ('r', 'm')")

python3 - "$sqlite_rps" "$sqlite_stored" "$pg_rps" "$pg_stored" "$N" "${copied:-0}" "$t0" "$t1" "$sqlite_bytes" "$pg_bytes" <<'PY'
import sys
s_rps, s_stored, p_rps, p_stored = float(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4])
n, copied, t0, t1 = int(sys.argv[5]), int(sys.argv[6]), float(sys.argv[7]), float(sys.argv[8])
s_bytes, p_bytes = int(sys.argv[9]), int(sys.argv[10])
secs = t1 - t0
print(f"{'measure':<46}{'postgres':>12}{'sqlite':>12}{'ratio':>8}  goal")
print(f"{'record proxy throughput (req/s)':<46}{p_rps:>12.0f}{s_rps:>12.0f}{p_rps / s_rps:>8.2f}  >= 0.9")
print(f"{'record proxy exchanges stored':<46}{p_stored:>12}{s_stored:>12}")
print(f"{'size per exchange (bytes), synthetic':<46}{p_bytes / n:>12.0f}{s_bytes / n:>12.0f}{p_bytes / s_bytes:>8.2f}")
print(f"mf copy into PostgreSQL: {copied:,} of {n:,} exchanges in {secs:.1f} s = {copied / secs:,.0f} exchanges/s")
PY
