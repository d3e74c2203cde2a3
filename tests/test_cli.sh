#!/usr/bin/env bash
# End-to-end tests of the llmscope command line on the real shared model and
# on a synthesised one: exact greedy text, exit codes, one-line errors.
set -u
bin=${LLMSCOPE_BIN:-$(cd "$(dirname "$0")/.." && pwd)/build/bin}/llmscope
models=${MODELS:-$(cd "$(dirname "$0")/../.." && pwd)/shared/models}
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ $# -gt 1 ] && echo "  $2"; }

# 1. Greedy generation from BOS reproduces llama2.c's known output byte for byte.
"$bin" run -m "$models/stories260K.gguf" -p "" -n 200 --temp 0 -t 2 > "$tmp/out" 2> "$tmp/err"
printf '%s\n' "$(cat "$models/golden/stories260K_greedy_bos_200.txt")" > "$tmp/want"
if cmp -s "$tmp/out" "$tmp/want"; then ok "run: golden text from BOS"; else bad "run: golden text from BOS" "$(diff "$tmp/out" "$tmp/want" | head -5)"; fi
grep -q "generation: 200 tokens" "$tmp/err" && ok "run: timing line" || bad "run: timing line" "$(cat "$tmp/err")"

# 2. With a prompt: the golden case "Once upon a time" (64 positions).
want=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cases"][1]["stdout_text"])' "$models/golden/stories260K_greedy.json")
got=$("$bin" run -m "$models/stories260K.gguf" -p "Once upon a time" -n 60 --temp 0 2>/dev/null)
[ "$got" = "$want" ] && ok "run: golden text with prompt" || bad "run: golden text with prompt" "got: $got"

# 3. Sampling is deterministic for a seed and differs between seeds.
a=$("$bin" run -m "$models/stories260K.gguf" -p "Lily" -n 40 --temp 1 --seed 7 2>/dev/null)
b=$("$bin" run -m "$models/stories260K.gguf" -p "Lily" -n 40 --temp 1 --seed 7 2>/dev/null)
c=$("$bin" run -m "$models/stories260K.gguf" -p "Lily" -n 40 --temp 1 --seed 8 2>/dev/null)
[ "$a" = "$b" ] && [ "$a" != "$c" ] && ok "run: seeded sampling" || bad "run: seeded sampling"

# 4. Errors: usage errors exit 2, bad files exit 1 with one line naming the file.
"$bin" run > /dev/null 2>&1; [ $? -eq 2 ] && ok "run: no model is a usage error" || bad "run: no model is a usage error"
"$bin" run -m x -n abc > /dev/null 2>&1; [ $? -eq 2 ] && ok "run: bad -n" || bad "run: bad -n"
"$bin" nosuchcmd > /dev/null 2>&1; [ $? -eq 2 ] && ok "unknown command" || bad "unknown command"
head -c 1000 "$models/stories260K.gguf" > "$tmp/trunc.gguf"
"$bin" run -m "$tmp/trunc.gguf" > /dev/null 2> "$tmp/err"; rc=$?
if [ $rc -eq 1 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q "trunc.gguf: offset [0-9]*" "$tmp/err"; then ok "run: truncated file refused in one line"; else bad "run: truncated file refused in one line" "rc=$rc $(cat "$tmp/err")"; fi

# 5. A prompt longer than the context is a clear error.
long=$(python3 -c 'print("word " * 400)')
"$bin" run -m "$models/stories260K.gguf" -p "$long" -c 64 -n 4 > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q "context holds 64" "$tmp/err" && ok "run: prompt longer than context" || bad "run: prompt longer than context" "$(cat "$tmp/err")"

# 6. gguf synth writes a model that gguf info describes as asked, and that runs.
if "$bin" gguf synth --shape tiny --type q8_0 --vocab "$models/vocab/ggml-vocab-llama-spm.gguf" --seed 3 -o "$tmp/tiny.gguf" > /dev/null 2> "$tmp/err"; then
  "$bin" gguf info "$tmp/tiny.gguf" > "$tmp/info" 2>&1
  grep -q "llama.embedding_length.*64" "$tmp/info" && grep -q "blk.1.ffn_down.weight" "$tmp/info" && grep -qi "q8_0" "$tmp/info" \
    && ok "gguf synth + info" || bad "gguf synth + info" "$(head -20 "$tmp/info")"
  "$bin" run -m "$tmp/tiny.gguf" -p "Hello" -n 8 --temp 0 > "$tmp/out" 2> "$tmp/err" \
    && grep -q "generation: 8 tokens" "$tmp/err" && ok "synthesised model generates" || bad "synthesised model generates" "$(cat "$tmp/err")"
  "$bin" gguf synth --shape tiny --type q8_0 --vocab "$models/vocab/ggml-vocab-llama-spm.gguf" --seed 3 -o "$tmp/tiny2.gguf" > /dev/null 2>&1
  cmp -s "$tmp/tiny.gguf" "$tmp/tiny2.gguf" && ok "gguf synth is deterministic" || bad "gguf synth is deterministic"
else
  bad "gguf synth" "$(cat "$tmp/err")"
fi

# 6b. K-quant synth at the stories15M shape: only ffn_down has rows of a
# multiple of 256 (768); the 288-wide tensors fall back to q4_0 / q8_0.
for t in q4_k q6_k q4_k_m; do
  if "$bin" gguf synth --shape stories15M --type $t --vocab "$models/vocab/ggml-vocab-llama-spm.gguf" --seed 1 -o "$tmp/15m-$t.gguf" > /dev/null 2> "$tmp/err"; then
    "$bin" gguf info "$tmp/15m-$t.gguf" > "$tmp/info" 2>&1
    case $t in
      q4_k)   want="blk.5.ffn_down.weight +q4_k|blk.0.attn_q.weight +q4_0" ;;
      q6_k)   want="blk.5.ffn_down.weight +q6_k|blk.0.attn_q.weight +q8_0" ;;
      q4_k_m) want="blk.0.ffn_down.weight +q4_k|blk.2.ffn_down.weight +q6_k|blk.5.ffn_down.weight +q6_k|output.weight +q8_0" ;;
    esac
    miss=""
    IFS='|'; for w in $want; do grep -Eq "^ +$w " "$tmp/info" || miss="$miss [$w]"; done; unset IFS
    [ -z "$miss" ] && ok "gguf synth --type $t + info" || bad "gguf synth --type $t + info" "missing:$miss"
    "$bin" run -m "$tmp/15m-$t.gguf" -p "Once upon a time" -n 8 --temp 0 -t 2 > "$tmp/out" 2> "$tmp/err" \
      && grep -q "generation: 8 tokens" "$tmp/err" && ok "synthesised $t model generates" || bad "synthesised $t model generates" "$(cat "$tmp/err")"
  else
    bad "gguf synth --type $t" "$(cat "$tmp/err")"
  fi
done

# 7. tokenize prints the ids with BOS (and without, on request).
got=$("$bin" tokenize -m "$models/vocab/ggml-vocab-llama-spm.gguf" --ids "I believe the meaning of life is" 2>&1)
[ "$got" = "[1, 306, 4658, 278, 6593, 310, 2834, 338]" ] && ok "tokenize --ids" || bad "tokenize --ids" "$got"
got=$("$bin" tokenize -m "$models/vocab/ggml-vocab-llama-spm.gguf" --ids --no-bos "I believe" 2>&1)
[ "$got" = "[306, 4658]" ] && ok "tokenize --no-bos" || bad "tokenize --no-bos" "$got"

# 8. bench runs and reports pp and tg.
"$bin" bench -m "$models/stories260K.gguf" -p 16 -n 8 -r 1 -t 2 --no-bw --json > "$tmp/b.json" 2>&1
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["pp"]["avg_ts"]>0 and d["tg"]["avg_ts"]>0' "$tmp/b.json" \
  && ok "bench --json" || bad "bench --json" "$(cat "$tmp/b.json")"
# 8b. without --no-bw, every tg run is followed by a bandwidth probe, and the
#     decode's share is the median of the rounds' ratios.
"$bin" bench -m "$models/stories260K.gguf" -p 0 -n 8 -r 3 -t 2 --json > "$tmp/bw.json" 2>&1
python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["mem_read_bw_probes"] == 3, d
assert d["mem_read_bw_bytes_per_s"] > 1e8, d
assert 0 < d["decode_bw_fraction"] < 100, d' "$tmp/bw.json" \
  && ok "bench probes the bandwidth after every tg run" || bad "bench probes the bandwidth after every tg run" "$(cat "$tmp/bw.json")"
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert "mem_read_bw_probes" not in d and d["decode_bw_fraction"] == 0' "$tmp/b.json" \
  && ok "bench --no-bw skips the probes" || bad "bench --no-bw skips the probes" "$(cat "$tmp/b.json")"
# 8a. with AVX2, every pp run is followed by the multiply-add probe, and prefill's
#     rate is given as a fraction of it (a real fraction: above 0, not far past 1).
if grep -qw avx2 /proc/cpuinfo; then
  python3 -c '
import json, sys
d = json.load(open(sys.argv[1]))
assert d["madd_peak_per_s"] > 1e9, d
assert 0 < d["pp_madd_fraction"] < 1.5, d' "$tmp/b.json" \
    && ok "bench reports prefill against the multiply-add probe" || bad "bench reports prefill against the multiply-add probe" "$(cat "$tmp/b.json")"
  "$bin" bench -m "$models/stories260K.gguf" -p 0 -n 4 -r 1 -t 2 --no-bw --json > "$tmp/b0.json" 2>&1
  python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert "madd_peak_per_s" not in d' "$tmp/b0.json" \
    && ok "bench without pp runs no probe" || bad "bench without pp runs no probe" "$(cat "$tmp/b0.json")"
fi

# 8b. bench -d: the tests start with that many tokens already in the context
#     (llama-bench's label "tg8 @ d200"); a context too big to allocate is a one-line error.
"$bin" bench -m "$models/stories260K.gguf" -p 8 -n 4 -d 200 -r 1 -t 2 --no-bw > "$tmp/bd.txt" 2>&1
grep -q "| pp8 @ d200 | [0-9]" "$tmp/bd.txt" && grep -q "| tg4 @ d200 | [0-9]" "$tmp/bd.txt" \
  && ok "bench -d labels its tests with the depth" || bad "bench -d labels its tests with the depth" "$(cat "$tmp/bd.txt")"
"$bin" bench -m "$models/stories260K.gguf" -p 0 -n 4 -d 200 -r 3 -t 2 --no-bw --json > "$tmp/bd.json" 2>&1
python3 -c '
import json, sys
d = json.load(open(sys.argv[1])); e = d["tg_empty"]
assert d["n_depth"] == 200 and d["tg"]["avg_ts"] > 0 and e["avg_ts"] > 0 and d["kv_type"] == "f16"
assert 0 < e["kept_min"] <= e["kept"] <= e["kept_max"]' "$tmp/bd.json" \
  && ok "bench -d --json: tg at depth paired with tg on an empty context" || bad "bench -d --json: tg at depth paired with tg on an empty context" "$(cat "$tmp/bd.json")"
grep -q "| tg4 | [0-9]" "$tmp/bd.txt" && grep -Eq "^depth: decode at 200 tokens of context keeps [0-9]+% of its speed on an empty one" "$tmp/bd.txt" \
  && ok "bench -d reports the speed kept at depth" || bad "bench -d reports the speed kept at depth" "$(cat "$tmp/bd.txt")"
# --kv-type: f32 on request (said in the output), anything else a one-line error.
"$bin" bench -m "$models/stories260K.gguf" -p 0 -n 4 -r 1 -t 2 --no-bw --kv-type f32 --json > "$tmp/bk.json" 2>&1
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["kv_type"]=="f32"' "$tmp/bk.json" \
  && ok "bench --kv-type f32" || bad "bench --kv-type f32" "$(cat "$tmp/bk.json")"
# The weights: read into 2 MiB pages by default (where the kernel's transparent
# huge pages are on), a file mapping with --mmap; the output says which.
thp=$(sed -n 's/.*\[\(.*\)\].*/\1/p' /sys/kernel/mm/transparent_hugepage/hugepages-2048kB/enabled 2>/dev/null)
[ -z "$thp" ] || [ "$thp" = inherit ] && thp=$(sed -n 's/.*\[\(.*\)\].*/\1/p' /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null)
"$bin" bench -m "$models/stories260K.gguf" -p 0 -n 4 -r 1 -t 2 --no-bw --json > "$tmp/bh.json" 2>&1
"$bin" bench -m "$models/stories260K.gguf" -p 0 -n 4 -r 1 -t 2 --no-bw --json --mmap > "$tmp/bm.json" 2>&1
python3 -c '
import json, sys
d, e, thp = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
assert e["weights_memory"].startswith("file mapping (--mmap)") and e["weights_huge_page_bytes"] == 0, e
if thp in ("always", "madvise"):
    assert d["weights_memory"].startswith("read into memory, ") and d["weights_huge_page_bytes"] > 0, d
else:
    assert d["weights_memory"].startswith("file mapping") and thp in d["weights_memory"], d' "$tmp/bh.json" "$tmp/bm.json" "${thp:-unavailable}" \
  && ok "bench says how the weights are held (THP ${thp:-unavailable}; --mmap maps)" \
  || bad "bench says how the weights are held" "$(cat "$tmp/bh.json" "$tmp/bm.json")"
"$bin" run -m "$models/stories260K.gguf" -n 8 --temp 0 --mmap > "$tmp/rm.txt" 2> /dev/null
"$bin" run -m "$models/stories260K.gguf" -n 8 --temp 0 > "$tmp/rh.txt" 2> /dev/null
[ -s "$tmp/rm.txt" ] && cmp -s "$tmp/rm.txt" "$tmp/rh.txt" && ok "run --mmap gives the same greedy text" \
  || bad "run --mmap gives the same greedy text" "$(cat "$tmp/rm.txt" "$tmp/rh.txt")"
for c in bench run; do
  "$bin" $c -m "$models/stories260K.gguf" -n 4 --kv-type q8 > /dev/null 2> "$tmp/err"; rc=$?
  [ $rc -eq 2 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q "kv-type" "$tmp/err" && ok "$c rejects --kv-type q8" || bad "$c rejects --kv-type q8" "rc=$rc $(cat "$tmp/err")"
done
"$bin" bench -m "$models/stories260K.gguf" -p 0 -n 4 -d x --no-bw > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] && ok "bench -d rejects a bad value" || bad "bench -d rejects a bad value" "rc=$rc $(cat "$tmp/err")"

# 8c. bench --parallel N: tg also as N sequences decoded together ("tg8 x4"),
#     with the speed-up over one sequence from paired rounds; at a depth too.
"$bin" bench -m "$models/stories260K.gguf" -p 0 -n 8 -np 4 -r 3 -t 2 --no-bw > "$tmp/bp.txt" 2>&1
grep -q "| tg8 | [0-9]" "$tmp/bp.txt" && grep -q "| tg8 x4 | [0-9]" "$tmp/bp.txt" \
  && grep -Eq "^parallel decode: 4 sequences give [0-9.]+x the tokens/s of one \(median of 3 paired rounds" "$tmp/bp.txt" \
  && ok "bench --parallel adds the batched tg test and its speed-up" || bad "bench --parallel adds the batched tg test and its speed-up" "$(cat "$tmp/bp.txt")"
"$bin" bench -m "$models/stories260K.gguf" -p 0 -n 4 -np 3 -d 50 -r 3 -t 2 --no-bw --json > "$tmp/bp.json" 2>&1
python3 -c '
import json, sys
d = json.load(open(sys.argv[1])); p = d["tg_parallel"]
assert p["n_seq"] == 3 and p["n_gen"] == 4 and d["n_depth"] == 50 and p["avg_ts"] > 0
assert p["speedup_min"] <= p["speedup"] <= p["speedup_max"]' "$tmp/bp.json" \
  && ok "bench --parallel --json" || bad "bench --parallel --json" "$(cat "$tmp/bp.json")"
for v in 0 257 x; do
  "$bin" bench -m "$models/stories260K.gguf" -p 0 -n 4 -np "$v" --no-bw > /dev/null 2> "$tmp/err"; rc=$?
  [ $rc -eq 2 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] && ok "bench --parallel rejects $v" || bad "bench --parallel rejects $v" "rc=$rc $(cat "$tmp/err")"
done

# 9. Placement: --cpu-affinity pins the compute threads (same greedy text),
#    CPUs the process may not use and unknown --numa modes are one-line errors.
cpu=$(python3 -c 'import os; print(min(os.sched_getaffinity(0)))')
"$bin" bench -m "$models/stories260K.gguf" -p 8 -n 4 -r 1 -t 2 --cpu-affinity "$cpu" > "$tmp/b.txt" 2>&1
grep -q "placement: 2 compute threads pinned to CPUs $cpu,$cpu; [0-9]* NUMA node" "$tmp/b.txt" \
  && ok "bench --cpu-affinity reports the placement" || bad "bench --cpu-affinity reports the placement" "$(tail -3 "$tmp/b.txt")"
golden=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["cases"][1]["stdout_text"])' "$models/golden/stories260K_greedy.json")
got=$("$bin" run -m "$models/stories260K.gguf" -p "Once upon a time" -n 60 --temp 0 --cpu-affinity "$cpu" --numa isolate 2>/dev/null)
[ "$got" = "$golden" ] && ok "run: pinned threads give the golden text" || bad "run: pinned threads give the golden text" "got: $got"
"$bin" run -m "$models/stories260K.gguf" -n 4 --cpu-affinity 1023 > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 1 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q "CPU 1023" "$tmp/err" \
  && ok "run: a CPU outside the process's set is refused" || bad "run: a CPU outside the process's set is refused" "rc=$rc $(cat "$tmp/err")"
"$bin" run -m "$models/stories260K.gguf" -n 4 --numa sideways > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -ne 0 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q "numa" "$tmp/err" \
  && ok "run: unknown --numa refused" || bad "run: unknown --numa refused" "rc=$rc $(cat "$tmp/err")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
