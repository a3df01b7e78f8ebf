#!/usr/bin/env bash
# HTTPS figures for `make bench` (called by benches/run.sh): requests/s through the recording
# proxy with TLS on both sides (keep-alive) vs going direct to the HTTPS upstream, and new TLS
# handshakes/s on an mf listener whose leaf is minted once and cached vs nginx's static leaf.
set -euo pipefail
MF=$(realpath "${1:-target/release/mf}")
SECS=${MF_BENCH_SECONDS:-5}
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.2; rm -rf "$work"; }
trap cleanup EXIT
[ -n "${MF_BENCH_DEBUG:-}" ] && trap - EXIT
export MF_CA_DIR="$work/mfca"
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_port() { for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/$1) 2>/dev/null && return; sleep 0.05; done; echo "port $1 never opened" >&2; exit 1; }
rps() { wrk -t1 -c16 -d"${SECS}s" "$@" 2>&1 | awk '/Requests\/sec/ {print int($2)}'; }

cd "$work"
printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > ext.cnf
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=benchca 2>/dev/null
openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout s.key -out s.csr -subj /CN=localhost 2>/dev/null
openssl x509 -req -in s.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out s.pem -days 2 -extfile ext.cnf 2>/dev/null
mkdir -p www logs
python3 -c 'import json; print(json.dumps({"users":[{"id":i,"name":"user%d"%i} for i in range(8)]}))' > www/api.json
port=$(free_port)
cat > nginx.conf <<NGX
worker_processes 1; user root; daemon off; error_log $work/logs/error.log; pid $work/nginx.pid;
events { worker_connections 1024; }
http { access_log off; keepalive_requests 1000000;
  server { listen 127.0.0.1:$port ssl; ssl_certificate $work/s.pem; ssl_certificate_key $work/s.key; root $work/www; }
}
NGX
nginx -p "$work" -c "$work/nginx.conf" & pids+=($!)
wait_port "$port"
mfport=$(free_port)
"$MF" record --proxy --upstream "https://localhost:$port" --upstream-ca ca.pem --tls --listen "127.0.0.1:$mfport" -o "$work/tls.db" 2> rec.log & pids+=($!)
wait_port "$mfport"
direct=$(rps "https://localhost:$port/api.json")
proxied=$(rps "https://localhost:$mfport/api.json")
hs_nginx=$(rps -H "Connection: close" "https://localhost:$port/api.json")
hs_mf=$(rps -H "Connection: close" "https://localhost:$mfport/api.json")
python3 - <<PY
print(f"{'measure':<46}{'mf':>10}{'baseline':>10}{'ratio':>8}")
print(f"{'HTTPS req/s, TLS both sides, vs direct':<46}{$proxied:>10}{$direct:>10}{$proxied/$direct:>8.2f}")
print(f"{'new TLS connections/s (cached leaf) vs nginx':<46}{$hs_mf:>10}{$hs_nginx:>10}{$hs_mf/$hs_nginx:>8.2f}")
PY
