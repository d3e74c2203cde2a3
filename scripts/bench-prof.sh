#!/usr/bin/env bash
# The profiler's cost (docs/profiling.md): the CPU-loop and allocator figures
# of test_prof --bench, then llm-server throughput under `llmscope load` with
# the profiler off (heap sampling off, no CPU profile) and on (default heap
# rate plus a CPU profile at 100 or 1000 Hz), in alternating runs.
# Usage: scripts/bench-prof.sh [ROUNDS] (default 3); needs `make` first.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
cd "$here"
rounds=${1:-3}
model=${MODEL:-../shared/models/stories260K.gguf}
port=${PORT:-18941}
url="http://127.0.0.1:$port/infer?prompt=Once+upon+a+time&max_tokens=32"
build/tests/test_prof --bench
run() { # label, heap rate, hz (0 = no CPU profile)
  LLMSCOPE_MEMPROFILERATE=$2 build/bin/llm-server --model "$model" --http-addr "127.0.0.1:$port" > /dev/null 2>&1 &
  local pid=$! cp=
  sleep 1
  if [ "$3" != 0 ]; then curl -s -o /dev/null "localhost:$port/debug/pprof/profile?seconds=9&hz=$3" & cp=$!; fi
  local rps
  rps=$(build/bin/llmscope load -z 8s -c 4 "$url" 2>&1 | awk '/Requests\/sec/ {print $2}')
  [ -n "$cp" ] && wait "$cp"
  kill "$pid"; wait "$pid" 2>/dev/null
  printf '  %-22s %s requests/s\n' "$1" "${rps:-?}"
}
echo "llm-server throughput ($model, 4 workers, 8 s each)"
for _ in $(seq "$rounds"); do
  run "off" 0 0
  run "on: heap + CPU 100 Hz" 524288 100
  run "off" 0 0
  run "on: heap + CPU 1000 Hz" 524288 1000
done
