#!/usr/bin/env bash
# Runs every benchmark script in benches/ against MF_BINARY.
set -euo pipefail
MF=${1:?usage: benches/run.sh MF_BINARY}
cd "$(dirname "$0")"
for b in *.sh; do
  [ "$b" = run.sh ] && continue
  echo "== $b"
  bash "$b" "$MF"
done
