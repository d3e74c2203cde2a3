#!/usr/bin/env bash
# `make bench`: synthesises models of real shapes (random weights; speed does
# not depend on the values) and measures prefill (pp128) and decode (tg64)
# tokens/s at THREADS threads with `llmscope bench`, plus the memory read
# bandwidth measured in the same run. Writes bench/results.jsonl and
# bench/results.md. SHAPES and TYPES narrow the set.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/build/bin/llmscope
models=${MODELS:-$here/../shared/models}
vocab=$models/vocab/ggml-vocab-llama-spm.gguf
dir=$here/bench/models
threads=${THREADS:-2}
shapes=${SHAPES:-"stories15M stories110M tinyllama-1.1b"}
types=${TYPES:-"q8_0 q4_0 q4_k"}
mkdir -p "$dir"
out=$here/bench/results.jsonl
: > "$out"
for shape in $shapes; do
  for type in $types; do
    f=$dir/$shape-$type.gguf
    if [ ! -s "$f" ]; then
      echo "synthesising $f"
      "$bin" gguf synth --shape "$shape" --type "$type" --vocab "$vocab" --seed 1 -o "$f.tmp" >/dev/null
      mv "$f.tmp" "$f"
    fi
    echo "bench $shape $type ($threads threads)"
    "$bin" bench -m "$f" -p 128 -n 64 -t "$threads" -r 3 --json \
      | python3 -c '
import json, sys
d = json.load(sys.stdin)
d["shape"] = sys.argv[1]
# The file as synthesised: a K-quant model keeps Q4_0/Q8_0 where rows are not
# whole 256-value blocks (all of stories15M but ffn_down), so say both.
if d["type"] != sys.argv[2]:
    d["type"] = f"{sys.argv[2]} (mostly {d["type"]})"
print(json.dumps(d))' "$shape" "$type" >> "$out"
  done
done
python3 "$here/scripts/bench_report.py" "$out" > "$here/bench/results.md"
cat "$here/bench/results.md"
