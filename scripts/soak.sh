#!/usr/bin/env bash
# Soak benchmark (not part of CI; docs/soak.md): llm-server with the flight
# recorder and the heap profiler on, saturated for --minutes with mixed
# streamed and non-streamed requests and random cancellations, CPU and heap
# profiles and the flight recorder captured every minute. Checks that memory
# stays flat after warm-up, fds and threads do not grow, only 200 and 503
# are answered and every completed response is well-formed; writes
# OUT/soak.csv (the RSS curve) and OUT/soak.md, exits 1 if a criterion fails.
#
#   scripts/soak.sh [--minutes M (30)] [--model FILE] [--out DIR (bench/soak)] [driver options]
#
# Driver options (scripts/soak_driver.py --help): --clients N (24),
# --parallel N (8), --max-queue N (8), --cancel F (0.15), --warmup MIN.
# BIN selects the binaries (default build/bin), MODELS the shared models folder.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${BIN:-$here/build/bin}
models=${MODELS:-$here/../shared/models}
minutes=30 model= out=$here/bench/soak
extra=()
while [ $# -gt 0 ]; do
  case $1 in
    --minutes) minutes=$2; shift 2 ;;
    --model) model=$2; shift 2 ;;
    --out) out=$2; shift 2 ;;
    -h|--help) sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) extra+=("$1"); shift ;;
  esac
done
for b in llm-server llmscope; do
  [ -x "$bin/$b" ] || { echo "soak: $bin/$b not found (make, or set BIN)" >&2; exit 2; }
done
if [ -z "$model" ]; then
  # The stories15M shape, Q8_0, deterministic random weights (speed and
  # memory do not depend on the values).
  model=$here/bench/models/stories15M-q8_0.gguf
  if [ ! -s "$model" ]; then
    mkdir -p "$(dirname "$model")"
    "$bin/llmscope" gguf synth --shape stories15M --type q8_0 --vocab "$models/vocab/ggml-vocab-llama-spm.gguf" \
      --seed 1 -o "$model.tmp" >/dev/null
    mv "$model.tmp" "$model"
  fi
fi
mkdir -p "$out"
exec python3 "$here/scripts/soak_driver.py" --server "$bin/llm-server" --model "$model" --out "$out" \
  --minutes "$minutes" "${extra[@]}"
