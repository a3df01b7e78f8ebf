#!/usr/bin/env bash
# Imports every capture of a folder of real-world captures and compares the exchange counts
# with the expected ones in its README.md table (`make corpus`). Not part of `cargo test`:
# the folder exists only on development machines.
set -uo pipefail
dir=${1:?usage: corpus.sh CAPTURE_DIR [MF_BINARY]}
mf=${2:-target/debug/mf}
[ -f "$dir/README.md" ] || { echo "corpus: no $dir/README.md, nothing to check"; exit 0; }
[ -x "$mf" ] || cargo build --quiet
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
printf '%-70s %-22s %-22s %s\n' file "expected (t/h1/h2/g/ws)" "mf (t/h1/h2/g/ws)" result
# Table rows: | `file` | source | requests | http/1.x | h2 | grpc | websocket |
grep -E '^\| `[^`]+` \|' "$dir/README.md" | while IFS='|' read -r _ file _ total h1 h2 grpc ws _; do
  file=$(echo "$file" | tr -d ' `'); total=$(echo $total); h1=$(echo $h1); h2=$(echo $h2); grpc=$(echo $grpc); ws=$(echo $ws)
  db="$tmp/$file.db"
  if ! "$mf" import "$dir/$file" -o "$db" 2>"$tmp/err"; then
    printf '%-70s %-22s %-22s %s\n' "$file" "$total/$h1/$h2/$grpc/$ws" "error" "FAIL: $(tail -1 "$tmp/err")"; continue
  fi
  got=$("$mf" ls --json "$db" | python3 -c '
import json,sys
c={"t":0,"h1":0,"h2":0,"grpc":0,"ws":0}
for l in sys.stdin:
    e=json.loads(l); p=e["protocol"]
    if e.get("method") in (None,""): continue
    c["t"]+=1
    c[{"http/1.0":"h1","http/1.1":"h1","h2":"h2","grpc":"grpc","websocket":"ws"}[p]]+=1
print("%d/%d/%d/%d/%d"%(c["t"],c["h1"],c["h2"],c["grpc"],c["ws"]))')
  want="$total/$h1/$h2/$grpc/$ws"
  if [ "$got" = "$want" ]; then r=ok; else r=MISMATCH; fi
  printf '%-70s %-22s %-22s %s\n' "$file" "$want" "$got" "$r"
done | tee "$tmp/out"
if grep -qE 'MISMATCH|FAIL' "$tmp/out"; then exit 1; fi
