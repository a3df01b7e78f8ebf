#!/usr/bin/env bash
# Import throughput on a large generated capture (>= 500 MB of mixed HTTP/1.1 and gRPC),
# beside the time to just read the file and, where installed, tshark. Usage: import.sh MF_BINARY [SIZE_MB]
set -euo pipefail
mf=${1:?usage: import.sh MF_BINARY [SIZE_MB]}
size=${2:-520}
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
cap="$dir/bench.pcap"
here=$(cd "$(dirname "$0")" && pwd)
expected=$(python3 "$here/gen_capture.py" "$cap" "$size" | awk '/REQUESTS/ {print $2}')
bytes=$(stat -c %s "$cap")
mb=$(python3 -c "print($bytes/1e6)")
now() { date +%s.%N; }
t0=$(now); cat "$cap" > /dev/null; t1=$(now)
read_s=$(python3 -c "print(max($t1-$t0,1e-6))")
/usr/bin/time -v "$mf" import "$cap" -o "$dir/bench.db" 2> "$dir/time.txt" || { cat "$dir/time.txt"; exit 2; }
import_s=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,a,":"); s=0; for(i=1;i<=n;i++) s=s*60+a[i]; print s}' "$dir/time.txt")
rss_kb=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$dir/time.txt")
got=$(grep -oE '^mf: [0-9]+ exchanges' "$dir/time.txt" | awk '{print $2}')
printf 'capture: %.0f MB, %s requests expected\n' "$mb" "$expected"
printf 'read only (cat):   %6.2f s  %8.1f MB/s\n' "$read_s" "$(python3 -c "print($mb/$read_s)")"
printf 'mf import:         %6.2f s  %8.1f MB/s  (%.1fx the read time)  %s exchanges  peak RSS %d MiB\n' \
  "$import_s" "$(python3 -c "print($mb/max($import_s,1e-6))")" "$(python3 -c "print($import_s/$read_s)")" "$got" "$((rss_kb / 1024))"
if command -v tshark >/dev/null; then
  t0=$(now); n=$(tshark -r "$cap" -Y 'http.request || grpc' -d tcp.port==50051,http2 2>/dev/null | wc -l); t1=$(now)
  ts=$(python3 -c "print($t1-$t0)")
  printf 'tshark:            %6.2f s  %8.1f MB/s  %s requests  (mf is %.1fx faster)\n' "$ts" "$(python3 -c "print($mb/$ts)")" "$n" "$(python3 -c "print($ts/max($import_s,1e-6))")"
else
  echo "tshark: not installed, no comparison"
fi
[ "$got" = "$expected" ] || { echo "MISMATCH: mf found $got exchanges, expected $expected"; exit 1; }
