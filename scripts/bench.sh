#!/usr/bin/env bash
# `make bench`: synthesises models of real shapes (random weights; speed does
# not depend on the values) and measures prefill (pp128) and decode (tg64)
# tokens/s at THREADS threads with `llmscope bench`, plus the memory read
# bandwidth measured in the same run, in PASSES (3) passes over the whole set,
# minutes apart: on a shared host one pass can catch a slow spell, so each row
# of bench/results.md is the pass with the median pp and the pass with the
# median tg (bench_report.py; bench/results.jsonl keeps every pass). SHAPES
# and TYPES narrow the set.
# Then long-context decode: tg64 with DEPTH (2048) tokens already in the
# context against tg64 on an empty one, for each shape:type in LONGCTX
# (default tinyllama-1.1b:q4_0), in ROUNDS (5) pairs run back to back in one
# process (llmscope bench -d); the median of the per-round ratios goes to
# bench/longctx.md.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=$here/build/bin/llmscope
models=${MODELS:-$here/../shared/models}
vocab=$models/vocab/ggml-vocab-llama-spm.gguf
dir=$here/bench/models
threads=${THREADS:-2}
shapes=${SHAPES:-"stories15M stories110M tinyllama-1.1b"}
types=${TYPES:-"q8_0 q4_0 q4_k q4_k_m"}
passes=${PASSES:-3}
mkdir -p "$dir"
out=$here/bench/results.jsonl
: > "$out"
for pass in $(seq 1 "$passes"); do
for shape in $shapes; do
  for type in $types; do
    f=$dir/$shape-$type.gguf
    if [ ! -s "$f" ]; then
      echo "synthesising $f"
      "$bin" gguf synth --shape "$shape" --type "$type" --vocab "$vocab" --seed 1 -o "$f.tmp" >/dev/null
      mv "$f.tmp" "$f"
    fi
    echo "bench $shape $type ($threads threads), pass $pass of $passes"
    "$bin" bench -m "$f" -p 128 -n 64 -t "$threads" -r 5 --json \
      | python3 -c '
import json, sys
d = json.load(sys.stdin)
d["shape"] = sys.argv[1]
d["pass"] = int(sys.argv[3])
# The file as synthesised: a K-quant model keeps Q4_0/Q8_0 where rows are not
# whole 256-value blocks (all of stories15M but ffn_down), so say both.
if d["type"] != sys.argv[2]:
    d["type"] = sys.argv[2] + " (mostly " + d["type"] + ")"
print(json.dumps(d))' "$shape" "$type" "$pass" >> "$out"
  done
done
done
python3 "$here/scripts/bench_report.py" "$out" > "$here/bench/results.md"
cat "$here/bench/results.md"

depth=${DEPTH:-2048}
rounds=${ROUNDS:-5}
lout=$here/bench/longctx.jsonl
: > "$lout"
for sc in ${LONGCTX-tinyllama-1.1b:q4_0}; do
  shape=${sc%%:*}; type=${sc##*:}
  f=$dir/$shape-$type.gguf
  [ -s "$f" ] || "$bin" gguf synth --shape "$shape" --type "$type" --vocab "$vocab" --seed 1 -o "$f" >/dev/null
  echo "bench $shape $type tg64 @ d$depth and on an empty context, $rounds paired rounds ($threads threads)"
  "$bin" bench -m "$f" -p 0 -n 64 -d "$depth" -t "$threads" -r "$rounds" --no-bw --json \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); d["shape"]=sys.argv[1]; print(json.dumps(d))' "$shape" >> "$lout"
done
python3 - "$lout" > "$here/bench/longctx.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("| shape | type | threads | KV cache | tg64 tok/s (empty) | tg64 @ depth tok/s | depth | kept (median of paired rounds) | range | rounds |")
print("| --- | --- | ---: | --- | ---: | ---: | ---: | ---: | --- | ---: |")
for d in rows:
    e = d["tg_empty"]
    print(f'| {d["shape"]} | {d["type"]} | {d["threads"]} | {d["kv_type"]} | {e["avg_ts"]:.1f} | {d["tg"]["avg_ts"]:.1f} '
          f'| {d["n_depth"]} | {100 * e["kept"]:.0f}% | {100 * e["kept_min"]:.0f}–{100 * e["kept_max"]:.0f}% | {d["repetitions"]} |')
PY
cat "$here/bench/longctx.md"

# Batched decode in the engine: tg64 of one sequence and of PAR sequences
# decoded together, paired round by round (llmscope bench --parallel).
par=${PAR:-8}
bout=$here/bench/batched.jsonl
: > "$bout"
for sc in ${BATCHED-stories110M:q8_0}; do
  shape=${sc%%:*}; type=${sc##*:}
  f=$dir/$shape-$type.gguf
  [ -s "$f" ] || "$bin" gguf synth --shape "$shape" --type "$type" --vocab "$vocab" --seed 1 -o "$f" >/dev/null
  echo "bench $shape $type tg64 x1 and x$par ($threads threads)"
  "$bin" bench -m "$f" -p 0 -n 64 -np "$par" -t "$threads" -r 5 --no-bw --json \
    | python3 -c 'import json,sys; d=json.load(sys.stdin); d["shape"]=sys.argv[1]; print(json.dumps(d))' "$shape" >> "$bout"
done
python3 - "$bout" > "$here/bench/batched.md" <<'PY'
import json, sys
print("| shape | type | threads | tg64 tok/s, 1 sequence | sequences | tg64 tok/s, all together | × one (median of paired rounds) | range | rounds |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
for l in open(sys.argv[1]):
    d = json.loads(l); p = d["tg_parallel"]
    print(f'| {d["shape"]} | {d["type"]} | {d["threads"]} | {d["tg"]["avg_ts"]:.1f} | {p["n_seq"]} | {p["avg_ts"]:.1f} '
          f'| {p["speedup"]:.2f} | {p["speedup_min"]:.2f}–{p["speedup_max"]:.2f} | {d["repetitions"]} |')
PY
cat "$here/bench/batched.md"
