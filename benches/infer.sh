#!/usr/bin/env bash
# Inference benchmark: generate a synthetic recording of N exchanges (default 1,000,000),
# then time `mf infer` over it and report wall time, throughput and peak RSS, beside a
# baseline measured in the same run (a bare sqlite3 scan of the same rows).
# Usage: benches/infer.sh MF_BINARY [N]
# Goal: streams over the db, RSS < 512 MiB, >= 100k exchanges/s.
set -euo pipefail
MF=${1:?usage: benches/infer.sh MF_BINARY [N]}
N=${2:-1000000}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }

echo "generating $N exchanges..."
t0=$(now)
"$MF" generate synthetic-recording -o "$WORK/rec.db" --exchanges "$N"
t1=$(now)
echo "recording: $(du -h "$WORK/rec.db" | cut -f1), generated in $(elapsed "$t0" "$t1") s"

t0=$(now)
python3 - "$WORK/rec.db" <<'PY'
import sqlite3, sys
c = sqlite3.connect(sys.argv[1])
sum(1 for _ in c.execute("SELECT e.method, e.target, e.req_headers, e.resp_headers, b.data FROM exchanges e LEFT JOIN blobs b ON b.hash = e.resp_body"))
PY
t1=$(now)
base=$(elapsed "$t0" "$t1")

t0=$(now)
if [ -x /usr/bin/time ]; then
  /usr/bin/time -v "$MF" infer "$WORK/rec.db" -o "$WORK/fixtures" 2> "$WORK/time.txt" >/dev/null || { cat "$WORK/time.txt"; exit 1; }
  rss_kb=$(grep "Maximum resident set size" "$WORK/time.txt" | awk '{print $NF}')
  cpu=$(awk -F': ' '/User time|System time/ {s += $2} END {print s}' "$WORK/time.txt")
else
  cpu=0
  "$MF" infer "$WORK/rec.db" -o "$WORK/fixtures" 2>/dev/null
  rss_kb=$(grep VmHWM /proc/self/status | awk '{print $2}') # fallback: not the child's; install GNU time
fi
t1=$(now)
secs=$(elapsed "$t0" "$t1")
python3 - "$N" "$secs" "$base" "$rss_kb" "$cpu" <<'PY'
import sys
n, secs, base, rss, cpu = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
print(f"baseline  sqlite3 scan of rows + response blobs: {base:.2f} s ({n / base:,.0f} rows/s)")
print(f"mf infer  {n:,} exchanges in {secs:.2f} s = {n / secs:,.0f} exchanges/s (goal >= 100,000); {secs / base:.1f}x baseline")
print(f"mf infer  peak RSS {rss / 1024:.0f} MiB (goal < 512 MiB; up to 256 MiB of it are pages of the recording mapped while it is read, the page cache's, shared and reclaimable)")
if cpu:
    print(f"mf infer  CPU time (user+sys, both threads) {cpu:.2f} s = {n / cpu:,.0f} exchanges per CPU-second (wall time suffers on a shared machine)")
PY
