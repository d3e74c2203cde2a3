#!/usr/bin/env bash
# Allocation-failure sweep of the llmscope command line: for N = 1, 2, …
# LLMSCOPE_FAIL_ALLOC=N fails the Nth allocation of the process. Each run
# must either exit 1 with one line on stderr, or exit 0 with exactly the
# output of a run without the failure; never crash, abort or hang. The
# sweep ends when the process says allocation N was not reached.
set -u
bin=${LLMSCOPE_BIN:-$(cd "$(dirname "$0")/.." && pwd)/build/bin}/llmscope
models=${MODELS:-$(cd "$(dirname "$0")/../.." && pwd)/shared/models}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ $# -gt 1 ] && echo "  $2"; }

# The injection lives in the heap interposer, which defines malloc in the
# binary; sanitizer builds leave it out (their runtime owns malloc).
if ! nm -D --defined-only "$bin" 2>/dev/null | grep -qw malloc; then
  echo "  skipped: the heap interposer (and its failure injection) is compiled out of this build"
  echo "$pass passed, $fail failed"
  exit 0
fi

# sweep NAME STEP CMD...: runs CMD once cleanly and learns how many
# allocations it makes, then fails allocation N for N = 1, 1+STEP, … and
# every one of the last 64 (what follows the model load, which
# test_allocfail.c sweeps allocation by allocation in-process).
sweep() {
  local name=$1 step=$2; shift 2
  "$@" > "$tmp/want" 2> "$tmp/want_err" || { bad "$name: runs without failures" "$(head -3 "$tmp/want_err")"; return; }
  LLMSCOPE_FAIL_ALLOC=100000000 "$@" > /dev/null 2> "$tmp/err"
  local total
  total=$(sed -n 's/^LLMSCOPE_FAIL_ALLOC=100000000: not reached (\([0-9]*\) allocations)$/\1/p' "$tmp/err")
  [ -n "$total" ] || { bad "$name: counting allocations" "$(head -3 "$tmp/err")"; return; }
  local n=1 runs=0 refused=0 rc lines
  while [ $n -le $((total + 1)) ]; do
    LLMSCOPE_FAIL_ALLOC=$n timeout 60 "$@" > "$tmp/out" 2> "$tmp/err"; rc=$?
    runs=$((runs + 1))
    lines=$(wc -l < "$tmp/err")
    if grep -q "^LLMSCOPE_FAIL_ALLOC=$n: not reached" "$tmp/err"; then
      [ $n -gt "$total" ] && [ $rc -eq 0 ] && cmp -s "$tmp/out" "$tmp/want" \
        || { bad "$name: allocation $n not reached (of $total)" "rc=$rc"; return; }
    elif [ $rc -eq 0 ]; then
      # The failure was absorbed: the answer must be the right one.
      cmp -s "$tmp/out" "$tmp/want" || { bad "$name: allocation $n failed: exit 0 with other output" "$(head -c 300 "$tmp/out")"; return; }
    elif [ $rc -ne 1 ] || [ "$lines" -ne 1 ]; then
      bad "$name: allocation $n failed: exit $rc, $lines lines on stderr" "$(head -c 300 "$tmp/err")"; return
    elif grep -qiE "cannot tokenize|malformed|not valid|invalid|corrupt" "$tmp/err"; then
      # Running out of memory is not the input's fault: the message must not blame it.
      bad "$name: allocation $n failed: the message blames the input" "$(head -c 300 "$tmp/err")"; return
    else
      refused=$((refused + 1))
    fi
    if [ $n -ge $((total - 64)) ]; then n=$((n + 1)); else n=$((n + step)); fi
  done
  ok "$name: $((runs - 1)) of $total allocations failed in turn, $refused refused in one line"
}

sweep "gguf info" 1 "$bin" gguf info "$models/stories260K.gguf"
sweep "run" 8 "$bin" run -m "$models/stories260K.gguf" -p "Once upon a time" -n 8 --temp 0 -t 1

# llm-server: start-up (listen, load, engine), then SIGTERM and shutdown.
# Each run either stops cleanly (exit 0) or exits 1 with its error as the
# last line; never crashes or hangs. Every 5th allocation, and each of the
# last 64 (the shutdown).
server="$(dirname "$bin")/llm-server"
serve() { # $1 = N; sets rc
  : > "$tmp/err"   # before the start: the wait below must not read the last run's "ready"
  LLMSCOPE_FAIL_ALLOC=$1 timeout 60 "$server" -m "$models/stories260K.gguf" --http-addr 127.0.0.1:0 -t 1 --parallel 2 \
    > /dev/null 2> "$tmp/err" &
  local pid=$! i
  for i in $(seq 1 2000); do
    grep -q "ready in" "$tmp/err" && break
    kill -0 $pid 2> /dev/null || break
    sleep 0.01
  done
  kill -TERM $pid 2> /dev/null
  wait $pid; rc=$?
}
serve 100000000
total=$(sed -n 's/^LLMSCOPE_FAIL_ALLOC=100000000: not reached (\([0-9]*\) allocations)$/\1/p' "$tmp/err")
if [ $rc -ne 0 ] || [ -z "$total" ]; then
  bad "llm-server: counting allocations" "rc=$rc $(tail -2 "$tmp/err")"
else
  n=1; runs=0; refused=0; problem=""
  while [ $n -le "$total" ]; do
    serve $n; runs=$((runs + 1))
    if [ $rc -eq 1 ] && ! grep -q "ready in" "$tmp/err" && tail -n 1 "$tmp/err" | grep -q "^llm-server: "; then
      refused=$((refused + 1))
    elif [ $rc -ne 0 ] || ! grep -q "llm-server: stopped" "$tmp/err"; then
      problem="allocation $n failed: exit $rc: $(tail -n 3 "$tmp/err" | head -c 300)"; break
    fi
    if [ $n -ge $((total - 64)) ]; then n=$((n + 1)); else n=$((n + 5)); fi
  done
  [ -z "$problem" ] && ok "llm-server start and stop: $runs of $total allocations failed in turn, $refused refused" \
    || bad "llm-server start and stop" "$problem"
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
