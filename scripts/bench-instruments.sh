#!/usr/bin/env bash
# What the instruments cost a serving run (part of `make bench`): the same
# load (llmscope load --openai completions, 8 streams) against llm-server on
# the stories15M shape with everything off (LLMSCOPE_PMU=off,
# LLMSCOPE_MEMPROFILERATE=0), as it starts by default (per-phase counters and
# heap sampling at 512 KiB on), with the flight recorder on too
# (--enable-trace), and with a CPU profile at 100 and at 1000 Hz running, in
# interleaved rounds; the medians' ratios go to bench/instruments.md. The trace's
# per-event cost comes from the tracer's own test (build/tests/test_trace).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/build/bin
models=${MODELS:-$here/../shared/models}
vocab=$models/vocab/ggml-vocab-llama-spm.gguf
rounds=${ROUNDS:-5}
threads=${THREADS:-2}
model=$here/bench/models/stories15M-q8_0.gguf
mkdir -p "$here/bench/models"
if [ ! -s "$model" ]; then
  "$bin/llmscope" gguf synth --shape stories15M --type q8_0 --vocab "$vocab" --seed 1 -o "$model.tmp" >/dev/null
  mv "$model.tmp" "$model"
fi
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pa=$(port); pb=$(port); pc=$(port)
LLMSCOPE_PMU=off LLMSCOPE_MEMPROFILERATE=0 "$bin/llm-server" -m "$model" --http-addr "127.0.0.1:$pa" -t "$threads" --parallel 8 --ctx 256 >/dev/null 2>&1 &
a=$!
"$bin/llm-server" -m "$model" --http-addr "127.0.0.1:$pb" -t "$threads" --parallel 8 --ctx 256 >/dev/null 2>&1 &
b=$!
"$bin/llm-server" -m "$model" --http-addr "127.0.0.1:$pc" -t "$threads" --parallel 8 --ctx 256 --enable-trace >/dev/null 2>&1 &
c=$!
trap 'kill $a $b $c 2>/dev/null' EXIT
for p in $pa $pb $pc; do for _ in $(seq 100); do curl -sf "http://127.0.0.1:$p/health" >/dev/null && break; sleep 0.1; done; done
run() {   # $1 port -> output tokens/s
  "$bin/llmscope" load --openai completions --max-tokens 64 -c 8 -n "${REQUESTS:-96}" --json "http://127.0.0.1:$1/v1/completions" \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["llm"]["output_throughput"])'
}
run "$pa" >/dev/null; run "$pb" >/dev/null; run "$pc" >/dev/null   # warm-up
profiled() {   # $1 hz -> tok/s of the default server while a CPU profile runs
  curl -s "http://127.0.0.1:$pb/debug/pprof/profile?seconds=60&hz=$1" > /dev/null &
  local prof=$!
  sleep 0.2
  run "$pb"
  kill "$prof" 2>/dev/null || true; wait "$prof" 2>/dev/null || true
}
off=(); def=(); fl=(); cpu=(); cpu1k=()
for r in $(seq "$rounds"); do
  off+=("$(run "$pa")")
  def+=("$(run "$pb")")
  fl+=("$(run "$pc")")
  cpu+=("$(profiled 100)")
  cpu1k+=("$(profiled 1000)")
  echo "round $r: off ${off[-1]}  default ${def[-1]}  flight recorder ${fl[-1]}  cpu 100 Hz ${cpu[-1]}  cpu 1000 Hz ${cpu1k[-1]} tok/s"
done
ev=$("$here/build/tests/test_trace" 2>&1 | sed -n 's/.*trace event: \([0-9.]*\) ns on, \([0-9.]*\) ns off.*/\1 \2/p')
python3 - "$here/bench/instruments.md" "${off[*]}" "${def[*]}" "${fl[*]}" "${cpu[*]}" "${cpu1k[*]}" "$ev" <<'EOF'
import statistics, sys
out, off, de, fl, cpu, cpu1k, ev = sys.argv[1], *[list(map(float, a.split())) for a in sys.argv[2:7]], sys.argv[7].split()
mo, md, mf, mc = statistics.median(off), statistics.median(de), statistics.median(fl), statistics.median(cpu)
mk = statistics.median(cpu1k)
with open(out, "w") as f:
    f.write("| configuration | generated tok/s (median of %d rounds) | vs. off |\n| --- | ---: | ---: |\n" % len(off))
    f.write(f"| everything off (LLMSCOPE_PMU=off LLMSCOPE_MEMPROFILERATE=0) | {mo:.1f} | 100% |\n")
    f.write(f"| default (per-phase counters, heap sampling at 512 KiB) | {md:.1f} | {md / mo:.1%} |\n")
    f.write(f"| counters + flight recorder (--enable-trace) | {mf:.1f} | {mf / mo:.1%} |\n")
    f.write(f"| default + a CPU profile at 100 Hz running | {mc:.1f} | {mc / mo:.1%} |\n")
    f.write(f"| default + a CPU profile at 1000 Hz running | {mk:.1f} | {mk / mo:.1%} |\n")
    if len(ev) == 2:
        f.write(f"\nOne trace event: {ev[0]} ns with tracing on, {ev[1]} ns when off (a branch).\n")
print(open(out).read())
EOF
