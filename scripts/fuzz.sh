#!/usr/bin/env bash
# Runs each libFuzzer target for N seconds over its seed corpus
# (fuzz/corpus/<target>/, read-only; new inputs go to a temporary folder).
# Usage: scripts/fuzz.sh SECONDS build-fuzz/fuzz_x ...
set -euo pipefail
secs=$1; shift
here=$(cd "$(dirname "$0")/.." && pwd)
rc=0
for bin in "$@"; do
  name=$(basename "$bin")
  work=$(mktemp -d)
  echo "== $name: ${secs}s"
  if "$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$work/" \
       "$work" "$here/fuzz/corpus/$name" > "$work.log" 2>&1; then
    grep -E "stat::number_of_executed_units|Done" "$work.log" | tail -n 2
  else
    echo "$name FAILED:"; tail -n 40 "$work.log"; rc=1
    for a in "$work"/crash-* "$work"/leak-* "$work"/timeout-*; do [ -e "$a" ] && { echo "input (base64):"; base64 -w0 "$a"; echo; }; done
  fi
  rm -rf "$work" "$work.log"
done
exit $rc
