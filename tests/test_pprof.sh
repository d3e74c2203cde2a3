#!/usr/bin/env bash
# test_pprof.sh — `go tool pprof` reads the profiler's output: test_prof
# --write makes one profile of each kind (CPU of two labelled threads, heap,
# block, mutex, threads), and pprof must list the known functions with
# file:line, the labels (-tagfocus), and the binary's GNU build ID.
# Skipped (with a message) only when the go command is absent.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${LLMSCOPE_BIN:-$here/build/bin}/../tests/test_prof
if ! command -v go >/dev/null 2>&1; then
  echo "test_pprof.sh: skipped: the go command is not installed (Debian: golang-go; scripts/setup.sh installs it)"
  echo "0 passed, 0 failed"
  exit 0
fi
[ -x "$bin" ] || { echo "FAIL: $bin not built"; echo "0 passed, 1 failed"; exit 1; }
dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
export HOME=${HOME:-$dir} GOCACHE=${GOCACHE:-$dir/gocache} GOTOOLCHAIN=local
pass=0; fail=0
check() { # name, then a command that must succeed
  local name=$1; shift
  if "$@"; then pass=$((pass + 1)); echo "ok   $name"; else fail=$((fail + 1)); echo "FAIL $name"; fi
}
pp() { go tool pprof "$@" 2>"$dir/err"; }
has() { grep -Eq -- "$1" "$2" || { echo "  missing /$1/ in $(basename "$2"):"; sed 's/^/    /' "$2" | head -40; false; }; }
hasnt() { ! grep -Eq -- "$1" "$2" || { echo "  unexpected /$1/ in $(basename "$2")"; false; }; }

check "write profiles" "$bin" --write "$dir"
cpu=$dir/cpu.pprof
pp -top "$cpu" > "$dir/top" ; check "cpu -top names both burners" bash -c "grep -q burn_alpha '$dir/top' && grep -q burn_beta '$dir/top'"
pp -top -lines "$cpu" > "$dir/lines"; check "cpu -lines gives file:line" has 'burn_alpha .*tests/test_prof\.c:[0-9]+' "$dir/lines"
pp -traces "$cpu" > "$dir/traces"; check "cpu -traces: callers and labels" bash -c "
  grep -q burner_main '$dir/traces' && grep -Eq 'phase: +alpha' '$dir/traces' && grep -Eq 'thread: +burn-beta' '$dir/traces'"
pp -top -tagfocus phase=alpha "$cpu" > "$dir/alpha"
check "cpu -tagfocus phase=alpha keeps alpha" has burn_alpha "$dir/alpha"
check "cpu -tagfocus phase=alpha drops beta" hasnt burn_beta "$dir/alpha"
pp -tags "$cpu" > "$dir/tags"; check "cpu -tags lists phases and threads" bash -c "grep -q alpha '$dir/tags' && grep -q beta '$dir/tags' && grep -q burn-alpha '$dir/tags'"
# The build ID pprof reports is the binary's own (from its ELF notes).
want=$(readelf -n "$bin" 2>/dev/null | sed -n 's/.*Build ID: *\([0-9a-f]*\).*/\1/p' | head -n 1)
pp -raw "$cpu" > "$dir/raw"
check "cpu -raw has the binary's build id ($want)" bash -c "[ -n '$want' ] && grep -q 'test_prof $want' '$dir/raw'"
if [ -e "$dir/heap.pprof" ]; then
  pp -top -sample_index=inuse_space "$dir/heap.pprof" > "$dir/heap"
  check "heap -top: the big allocation site" has big_alloc_site "$dir/heap"
  pp -raw "$dir/heap.pprof" > "$dir/heapraw"; check "heap -raw parses" has 'alloc_objects/count alloc_space/bytes inuse_objects/count inuse_space/bytes' "$dir/heapraw"
else
  echo "heap: skipped (the heap interposer is compiled out of this build)"
fi
pp -top "$dir/block.pprof" > "$dir/block"; check "block -top: the queue consumer" has queue_consumer "$dir/block"
pp -tags "$dir/block.pprof" > "$dir/btags"; check "block -tags: the queue's name" has test.block.queue "$dir/btags"
pp -top "$dir/mutex.pprof" > "$dir/mutex"; check "mutex -top: the holder" has hold_the_lock "$dir/mutex"
pp -raw "$dir/threads.pprof" > "$dir/thr"; check "threads -raw parses" has 'goroutine/count' "$dir/thr"
pp -tags "$dir/threads.pprof" > "$dir/ttags"; check "threads -tags: thread names" has writer-main "$dir/ttags"
echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
