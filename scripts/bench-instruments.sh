#!/usr/bin/env bash
# What the instruments cost a serving run (part of `make bench`). The same
# load (llmscope load --openai completions, 8 streams, a fixed duration per
# run) against llm-server on the stories15M shape in these configurations:
#   off       LLMSCOPE_PMU=off LLMSCOPE_MEMPROFILERATE=0: no instrument at all
#   heap      LLMSCOPE_PMU=off, heap sampling at its default 512 KiB
#   heap+cpu100 / heap+cpu1000   the same with a CPU profile at 100 / 1000 Hz
#             covering the whole run (the profiler issue's two targets)
#   default   as the server starts: per-phase counters and heap sampling
#   flight    default plus the flight recorder (--enable-trace)
# Every round runs each configuration once, in an order rotated from round to
# round; each configuration's throughput is divided by the "off" run of the
# same round, and the median of those paired ratios is reported (the machine
# is shared: rounds drift by ±15%, pairs far less). The server's CPU time per
# generated token (utime+stime from /proc) is reported beside it: it does not
# count time the VM lost to its neighbours, so it is the steadier figure.
# Results: bench/instruments.md. ROUNDS (default 9), SECONDS_PER_RUN (6).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/build/bin
models=${MODELS:-$here/../shared/models}
vocab=$models/vocab/ggml-vocab-llama-spm.gguf
rounds=${ROUNDS:-9}
secs=${SECONDS_PER_RUN:-6}
threads=${THREADS:-2}
model=$here/bench/models/stories15M-q8_0.gguf
mkdir -p "$here/bench/models"
if [ ! -s "$model" ]; then
  "$bin/llmscope" gguf synth --shape stories15M --type q8_0 --vocab "$vocab" --seed 1 -o "$model.tmp" >/dev/null
  mv "$model.tmp" "$model"
fi
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
declare -A P PID
start() {   # $1 name, then env assignments and extra flags via env/args
  local name=$1; shift
  P[$name]=$(port)
  env "$@" "$bin/llm-server" -m "$model" --http-addr "127.0.0.1:${P[$name]}" -t "$threads" --parallel 8 --ctx 256 \
    ${EXTRA:-} >/dev/null 2>&1 &
  PID[$name]=$!
}
start off LLMSCOPE_PMU=off LLMSCOPE_MEMPROFILERATE=0
start heap LLMSCOPE_PMU=off
start default LLMSCOPE_X=1
EXTRA=--enable-trace start flight LLMSCOPE_X=1
trap 'kill ${PID[*]} 2>/dev/null' EXIT
for n in "${!P[@]}"; do
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:${P[$n]}/health" >/dev/null && break; sleep 0.1; done
done
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
tmp=$(mktemp -d); trap 'kill ${PID[*]} 2>/dev/null; rm -rf "$tmp"' EXIT
run() {   # $1 server, $2 hz (0 = no CPU profile) -> "tok/s output_tokens cpu_ticks"
  local s=$1 hz=$2 prof= c0 c1 out
  if [ "$hz" != 0 ]; then
    curl -s -o "$tmp/prof" "http://127.0.0.1:${P[$s]}/debug/pprof/profile?seconds=$((secs + 1))&hz=$hz" &
    prof=$!
    sleep 0.3
  fi
  c0=$(cpu_ticks "${PID[$s]}")
  out=$("$bin/llmscope" load --openai completions --max-tokens 64 -c 8 -z "${secs}s" --json \
          "http://127.0.0.1:${P[$s]}/v1/completions" |
        python3 -c 'import json,sys; j=json.load(sys.stdin)["llm"]; print(j["output_throughput"], j["output_tokens"])')
  c1=$(cpu_ticks "${PID[$s]}")
  if [ -n "$prof" ]; then
    wait "$prof"
    # The profile must be real: gzip'd profile.proto covering the run.
    [ "$(head -c2 "$tmp/prof" | od -An -tx1 | tr -d ' ')" = 1f8b ] || { echo "CPU profile at $hz Hz failed" >&2; exit 1; }
  fi
  echo "$out $((c1 - c0))"
}
configs=(off heap heap+cpu100 heap+cpu1000 default flight)
measure() {   # $1 config
  case $1 in
    heap+cpu100) run heap 100 ;;
    heap+cpu1000) run heap 1000 ;;
    *) run "$1" 0 ;;
  esac
}
for c in off heap default flight; do measure "$c" >/dev/null; done   # warm-up
: > "$tmp/results"
for r in $(seq "$rounds"); do
  line="round $r:"
  for k in $(seq 0 $((${#configs[@]} - 1))); do
    c=${configs[$(((k + r) % ${#configs[@]}))]}
    m=$(measure "$c")
    echo "$r $c $m" >> "$tmp/results"
    line+=" $c ${m%% *}"
  done
  echo "$line tok/s"
done
ev=$("$here/build/tests/test_trace" 2>&1 | sed -n 's/.*trace event: \([0-9.]*\) ns on, \([0-9.]*\) ns off.*/\1 \2/p')
handler=$("$here/build/tests/test_prof" --bench 2>/dev/null | sed -n 's/^ *\([0-9]*\) Hz: .*handler: [0-9]* signals, \([0-9]*\) ns each/\1 \2/p' | tr '\n' ' ')
python3 - "$here/bench/instruments.md" "$tmp/results" "$secs" "$ev" "$handler" <<'EOF'
import collections, statistics, sys
out, res, secs, ev, handler = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(), sys.argv[5].split()
runs = collections.defaultdict(dict)   # round -> config -> (tok/s, tokens, ticks)
for line in open(res):
    r, c, tps, toks, ticks = line.split()
    runs[r][c] = (float(tps), int(toks), int(ticks))
names = {
    "off": "everything off (LLMSCOPE_PMU=off LLMSCOPE_MEMPROFILERATE=0)",
    "heap": "heap sampling at 512 KiB (counters off)",
    "heap+cpu100": "heap sampling + a CPU profile at 100 Hz",
    "heap+cpu1000": "heap sampling + a CPU profile at 1000 Hz",
    "default": "default (per-phase counters, heap sampling at 512 KiB)",
    "flight": "default + flight recorder (--enable-trace)",
}
target = {"heap+cpu100": "≥ 99%", "heap+cpu1000": "≥ 97%"}
def cpu_per_tok(c):
    ticks = sum(runs[r][c][2] for r in runs)
    toks = sum(runs[r][c][1] for r in runs)
    return ticks / 100.0 / toks if toks else float("nan")
off_cpt = cpu_per_tok("off")
with open(out, "w") as f:
    f.write(f"{len(runs)} rounds; each runs every configuration for {secs} s (order rotated per round).\n\n")
    f.write("| configuration | tok/s (median) | paired ratio to off: median [min–max] | CPU µs per token | CPU per token vs off | target |\n")
    f.write("| --- | ---: | ---: | ---: | ---: | --- |\n")
    for c in names:
        tps = statistics.median(runs[r][c][0] for r in runs)
        ratios = sorted(runs[r][c][0] / runs[r]["off"][0] for r in runs)
        cpt = cpu_per_tok(c)
        f.write(f"| {names[c]} | {tps:.1f} | {statistics.median(ratios):.1%} [{ratios[0]:.0%}–{ratios[-1]:.0%}] | "
                f"{cpt * 1e6:.0f} | {off_cpt / cpt:.1%} | {target.get(c, '')} |\n")
    f.write("\n\"CPU per token vs off\" is off's CPU time per generated token divided by this configuration's "
            "(100% = no extra CPU).\n")
    if len(ev) == 2:
        f.write(f"\nOne trace event: {ev[0]} ns with tracing on, {ev[1]} ns when off (a branch).\n")
    if len(handler) >= 2:
        pairs = [handler[i:i + 2] for i in range(0, len(handler) - 1, 2)]
        f.write("\nSIGPROF handler time per CPU sample (test_prof --bench, a CPU-bound loop): " +
                ", ".join(f"{ns} ns at {hz} Hz" for hz, ns in pairs) + ".\n")
print(open(out).read())
EOF
