#!/usr/bin/env bash
# Long fuzz runs for the record (docs/security.md): each libFuzzer target for
# RUNS executions (default 10 million) over a copy of its seed corpus, one
# line per target in bench/fuzz.md: executions, seconds, corpus size, and the
# crash/leak/timeout artifacts found (their inputs are kept in OUT/).
# Usage: scripts/fuzz-long.sh [RUNS] [target ...]   (default: every build-fuzz/fuzz_*)
# Build the targets first: make build-fuzz/fuzz_api ... (or `make fuzz`).
# FROM=DIR continues a campaign: DIR (a corpus an earlier run grew, kept with
# KEEP=DIR) is added to the seed corpus, and NOTE=text goes into the line.
# KEEP=DIR copies the corpus at the end to DIR/<target>.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
runs=${1:-10000000}; shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=($(ls "$here"/build-fuzz/ | grep "^fuzz_[a-z_]*$"))
out=${OUT:-$here/bench/fuzz}
mkdir -p "$out"
rev=$(git -C "$here" rev-parse --short HEAD 2>/dev/null || echo unknown)
for n in "${targets[@]}"; do
  w=$(mktemp -d)
  cp -r "$here/fuzz/corpus/$n" "$w/corpus"
  [ -n "${FROM:-}" ] && cp "$FROM"/* "$w/corpus/"
  mkdir -p "$w/art"
  s=$(date +%s)
  rc=0
  "$here/build-fuzz/$n" -runs="$runs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$w/art/" "$w/corpus" > "$w/log" 2>&1 || rc=$?
  secs=$(( $(date +%s) - s ))
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$w/log" | tail -n 1)
  found=$(ls "$w/art" | wc -l)
  [ "$found" -gt 0 ] && cp "$w"/art/* "$out/"
  [ -n "${KEEP:-}" ] && mkdir -p "$KEEP/$n" && cp "$w"/corpus/* "$KEEP/$n/"
  line="| $n${NOTE:+ ($NOTE)} | ${execs:-?} | $secs | $(ls "$w/corpus" | wc -l) | $found | $rc | $rev |"
  echo "$line"
  [ -s "$here/bench/fuzz.md" ] || printf '| target | executions | seconds | corpus files at end | crashes, leaks, timeouts | exit | commit |\n| --- | ---: | ---: | ---: | ---: | ---: | --- |\n' > "$here/bench/fuzz.md"
  echo "$line" >> "$here/bench/fuzz.md"
  rm -rf "$w"
done
