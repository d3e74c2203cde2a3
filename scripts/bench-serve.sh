#!/usr/bin/env bash
# Serving benchmark (part of `make bench`): llm-server on the stories110M
# shape (Q8_0, random weights: speed does not depend on the values), driven by
# `llmscope load --openai completions` at 1, 4, 8 and 16 concurrent streams.
# Writes bench/serving.jsonl and bench/serving.md: aggregate generated
# tokens/s, TTFT and TPOT percentiles, and the speed-up over one stream
# measured in the same run. LEVELS, MAX_TOKENS and THREADS change the run.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/build/bin
models=${MODELS:-$here/../shared/models}
vocab=$models/vocab/ggml-vocab-llama-spm.gguf
levels=${LEVELS:-"1 4 8 16"}
max_tokens=${MAX_TOKENS:-64}
threads=${THREADS:-2}
model=$here/bench/models/stories110M-q8_0.gguf
mkdir -p "$here/bench/models"
if [ ! -s "$model" ]; then
  "$bin/llmscope" gguf synth --shape stories110M --type q8_0 --vocab "$vocab" --seed 1 -o "$model.tmp" >/dev/null
  mv "$model.tmp" "$model"
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
log=$(mktemp)
"$bin/llm-server" -m "$model" --http-addr "127.0.0.1:$port" -t "$threads" --parallel 16 --ctx 512 > "$log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" >/dev/null && break; sleep 0.1; done
out=$here/bench/serving.jsonl
: > "$out"
url=http://127.0.0.1:$port/v1/completions
# Warm-up (page in the weights).
"$bin/llmscope" load --openai completions --max-tokens 16 -c 1 -n 2 --json "$url" > /dev/null
for c in $levels; do
  n=$((c * 4)); [ "$n" -lt 8 ] && n=8
  echo "serving: $c concurrent streams, $n requests of $max_tokens tokens ($threads threads)"
  "$bin/llmscope" load --openai completions --max-tokens "$max_tokens" -c "$c" -n "$n" --json "$url" \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); d["streams"]=int(sys.argv[1]); print(json.dumps(d))' "$c" >> "$out"
done
python3 - "$out" > "$here/bench/serving.md" <<'EOF'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
base = next((r["llm"]["output_throughput"] for r in rows if r["streams"] == 1), None)
print("| streams | requests | generated tok/s | × one stream | TTFT p50 / p99 ms | TPOT p50 / p99 ms | ITL p99 ms | errors |")
print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
for r in rows:
    l = r["llm"]
    x = f'{l["output_throughput"] / base:.2f}' if base else "—"
    print(f'| {r["streams"]} | {l["completed"]} | {l["output_throughput"]:.1f} | {x} '
          f'| {l["ttft_ms"]["p50"]:.1f} / {l["ttft_ms"]["p99"]:.1f} | {l["tpot_ms"]["p50"]:.2f} / {l["tpot_ms"]["p99"]:.2f} '
          f'| {l["itl_ms"]["p99"]:.2f} | {l["failed"]} |')
EOF
cat "$here/bench/serving.md"
