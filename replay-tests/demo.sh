#!/usr/bin/env bash
# The demo behind `make demo`: a real upstream, curl through `mf record --proxy`, `mf ls`,
# then the upstream stopped and the same calls answered by `mf replay`.
set -euo pipefail
MF=${1:-target/debug/mf}
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# Waits for "MARKER <addr>" in a log file and prints the address.
wait_addr() {
  local log=$1 marker=$2
  for _ in $(seq 200); do
    if grep -q "$marker" "$log" 2>/dev/null; then
      grep -o "$marker [0-9.:]*" "$log" | head -1 | awk '{print $NF}'
      return
    fi
    sleep 0.05
  done
  echo "timed out waiting for $marker in $log" >&2; cat "$log" >&2; exit 1
}

calls=(/json /counter /counter "/echo -d {\"hello\":\"world\"}" /chunked /empty /fail)
run_calls() {
  local base=$1 out=$2
  : > "$out"
  for c in "${calls[@]}"; do
    read -r path rest <<<"$c"
    # shellcheck disable=SC2086
    curl -s --noproxy '*' -i $rest "$base$path" >> "$out"
    echo >> "$out"
  done
}

echo "== starting a real upstream (Python http.server)"
python3 -u "$here/servers/http_upstream.py" > "$work/upstream.log" 2>&1 & pids+=($!)
up_port=$(wait_addr "$work/upstream.log" PORT)
echo "   upstream on 127.0.0.1:$up_port"

echo "== mf record --proxy --upstream http://127.0.0.1:$up_port"
"$MF" record --proxy --upstream "http://127.0.0.1:$up_port" --listen 127.0.0.1:0 -o "$work/demo.db" 2> "$work/record.log" & rec=$!; pids+=($rec)
rec_addr=$(wait_addr "$work/record.log" "listening on")
run_calls "http://$rec_addr" "$work/recorded.txt"
kill -INT "$rec"; wait "$rec" || true
tail -2 "$work/record.log"

echo "== mf ls"
"$MF" ls "$work/demo.db"

echo "== stopping the upstream; mf replay serves the recording"
kill "${pids[0]}"
"$MF" replay "$work/demo.db" --listen 127.0.0.1:0 2> "$work/replay.log" & rep=$!; pids+=($rep)
rep_addr=$(wait_addr "$work/replay.log" "listening on")
run_calls "http://$rep_addr" "$work/replayed.txt"

echo "== first replayed answer (cookie values were redacted at capture: no secret is stored):"
sed -n '1,12p' "$work/replayed.txt"
# Everything else is served byte for byte; a Set-Cookie keeps its name and attributes and
# carries a placeholder instead of the value.
cookies() { sed -E 's/^([Ss]et-[Cc]ookie: [^=]*=)[^;]*/\1<value>/' "$1"; }
if diff -u <(cookies "$work/recorded.txt") <(cookies "$work/replayed.txt"); then
  echo "== OK: all ${#calls[@]} replayed answers match the recorded ones (status, headers, bodies; cookie values redacted)"
else
  echo "== MISMATCH between recorded and replayed answers" >&2
  exit 1
fi

echo "== mf infer: fixtures worth committing (templates, schemas, OpenAPI, sequences)"
"$MF" infer "$work/demo.db" -o "$work/fixtures" 2>&1 | tail -4
(cd "$work/fixtures" && find . -type f | sort | head -12)
