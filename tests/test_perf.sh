#!/usr/bin/env bash
# test_perf.sh — Linux perf sees our binaries whole: they keep their symbols,
# frame pointers and a GNU build ID, so `perf record -g` on a one-shot
# generation and on llm-server under load gives stacks that `perf report`
# names with project functions (llama_decode, forward_worker, the matmul
# kernels), and `perf script | llmscope flame --folded` gives deep stacks.
# The software event cpu-clock is used: hardware cycles may be unsupported
# (virtual machines). Skipped, with the reason, only where perf is missing or
# `perf record` itself cannot record (e.g. kernel.perf_event_paranoid).
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
bindir=${LLMSCOPE_BIN:-$here/build/bin}
models=${MODELS:-$(cd "$here/.." && pwd)/shared/models}
model=$models/stories260K.gguf
tmp=$(mktemp -d)
srv=; load=
cleanup() {
  [ -n "$load" ] && kill "$load" 2>/dev/null
  [ -n "$srv" ] && kill "$srv" 2>/dev/null
  wait 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ $# -gt 1 ] && echo "  $2"; }
skip() { echo "skipped: perf cannot record here ($1)"; echo "$pass passed, $fail failed"; exit 0; }

# perf: Debian's /usr/bin/perf is a wrapper that runs perf_<kernel version>
# and fails when the running kernel has no matching package; then any
# installed perf_* binary (linux-perf) does the work for user-space stacks.
perf=
for p in perf /usr/bin/perf_*; do
  command -v "$p" >/dev/null 2>&1 || [ -x "$p" ] || continue
  if "$p" --version >/dev/null 2>&1; then perf=$p; break; fi
done
[ -n "$perf" ] || skip "no runnable perf binary; Debian: apt-get install linux-perf"

# 1. The binaries are not stripped and carry a GNU build ID.
# Sanitizer runtimes (libasan, libubsan) keep no frame pointers: samples that
# land inside them cannot be unwound, so those builds get a lower bar.
want=90
readelf -d "$bindir/llmscope" 2>/dev/null | grep -Eq 'lib(asan|ubsan|tsan)' && want=80
for b in "$bindir/llmscope" "$bindir/llm-server"; do
  [ -e "$b" ] || continue
  n=$(basename "$b")
  readelf -n "$b" 2>/dev/null | grep -Eq 'Build ID: [0-9a-f]{40}' && ok "$n: GNU build ID" || bad "$n: GNU build ID" "$(readelf -n "$b" 2>&1 | head -5)"
  readelf -S "$b" 2>/dev/null | grep -q '\.symtab' && readelf -s "$b" 2>/dev/null | grep -q ' llama_decode$' \
    && ok "$n: not stripped (symtab has llama_decode)" || bad "$n: not stripped (symtab has llama_decode)"
done

# Folds perf script output of user-space frames only (kernel frames come
# from the kernel's own unwinder; the frame-pointer walk is the user part).
fold_user() { "$perf" script -i "$1" 2> /dev/null | grep -v '(\[kernel\.kallsyms\])' | "$bindir/llmscope" flame --folded; }
# deep_stack FOLDED: the deepest stack through llama_decode and forward_worker (its depth, then it).
deep_stack() {
  awk '/llama_decode/ && /forward_worker/ { n = split($0, f, ";"); if (n > best) { best = n; line = $0 } }
       END { if (best > 3) { print best; print line } else exit 1 }' "$1"
}
# complete DATA: of the samples whose innermost user frame lies in our own
# binary, the percentage whose stack reaches a thread's or the process's entry
# (frame pointers all the way down), then the sample count. Samples that stop
# inside libc or the dynamic loader are left out: those are built without
# frame pointers, and a short run can have a tenth of its samples there.
# complete_misses DATA: the stacks that did not reach an entry.
entry_re='^(__libc_start_call_main|__libc_start_main|_start|start_thread|clone3?|__clone3?)$'
own_samples() {
  "$perf" script -i "$1" 2> /dev/null | grep -v '(\[kernel\.kallsyms\])' | awk -v bin="$(readlink -f "$bindir")" -v re="$entry_re" '
    function flush() { if (n && index(leaf, bin) == 1) print (last ~ re ? "+" : "-"), stack; n = 0; stack = "" }
    /^[^ \t]/ { flush(); next }
    /^[ \t]+[0-9a-f]+ / { sym = $2; sub(/\+0x[0-9a-f]+$/, "", sym); dso = $NF; gsub(/[()]/, "", dso)
                         if (!n) leaf = dso; n++; last = sym; stack = stack (n > 1 ? ";" : "") sym; next }
    /^$/ { flush() }
    END { flush() }'
}
complete() { own_samples "$1" | awk '{ t++; if ($1 == "+") c++ } END { printf "%d %d\n", t ? 100 * c / t : 0, t }'; }
complete_misses() { own_samples "$1" | awk '$1 == "-" { print $2 }' | sort | uniq -c | sort -rn | head -5; }

# 2. perf record -g on a one-shot generation.
"$perf" record -g -e cpu-clock -F 999 -o "$tmp/run.data" -- "$bindir/llmscope" run -m "$model" -p "Once upon a time" -n 200 -t 2 \
  > "$tmp/run.out" 2> "$tmp/record.err"
rc=$?
if [ $rc -ne 0 ] || [ ! -s "$tmp/run.data" ]; then
  if grep -q "generation: 200 tokens" "$tmp/record.err"; then
    bad "perf record on llmscope run" "$(tail -5 "$tmp/record.err")"   # the program ran, perf failed to write
  else
    skip "perf record failed: $(grep -v '^$' "$tmp/record.err" | head -3 | tr '\n' ' ')"
  fi
else
  ok "perf record -g -e cpu-clock on llmscope run"
  "$perf" report -i "$tmp/run.data" --stdio --no-children 2> /dev/null > "$tmp/run.report"
  for fn in llama_decode forward_worker; do
    grep -q "$fn" "$tmp/run.report" && ok "perf report names $fn" || bad "perf report names $fn" "$(head -40 "$tmp/run.report")"
  done
  grep -Eq '\b(mm_[a-z0-9_]+|matmul_[a-z0-9_]+|dot_[a-z0-9_]+)\b' "$tmp/run.report" \
    && ok "perf report names a matmul kernel ($(grep -Eo '\b(mm_[a-z0-9_]+|matmul_[a-z0-9_]+|dot_[a-z0-9_]+)\b' "$tmp/run.report" | sort | uniq -c | sort -rn | head -1 | awk '{print $2}'))" \
    || bad "perf report names a matmul kernel" "$(head -40 "$tmp/run.report")"
  fold_user "$tmp/run.data" > "$tmp/run.folded" 2> "$tmp/flame.err"
  if d=$(deep_stack "$tmp/run.folded"); then
    ok "perf script | llmscope flame: user stacks $(echo "$d" | head -1) deep through llama_decode and forward_worker"
    read -r pct own <<< "$(complete "$tmp/run.data")"
    [ "$own" -gt 0 ] && [ "$pct" -ge "$want" ] && ok "frame pointers: $pct% of $own samples in our code unwind to the thread's entry" \
      || bad "frame pointers: $pct% of $own samples in our code unwind to the thread's entry (want >= $want%)" "$(complete_misses "$tmp/run.data")"
    grep -Eq ';(cmd_run);llama_decode;' "$tmp/run.folded" && ok "folded stacks: main thread cmd_run;llama_decode" \
      || bad "folded stacks: main thread cmd_run;llama_decode" "$(head -5 "$tmp/run.folded")"
    grep -Eq '^compute-[0-9]+;.*worker_main;forward_worker' "$tmp/run.folded" && ok "folded stacks: compute threads named compute-N" \
      || bad "folded stacks: compute threads named compute-N" "$(cut -d';' -f1 "$tmp/run.folded" | sort | uniq -c)"
  else
    bad "perf script | llmscope flame: deep stacks through llama_decode" "$(cat "$tmp/flame.err"; sort -t' ' -k2 -n "$tmp/run.folded" | tail -5)"
  fi
fi

# 3. perf record -g -p on llm-server under load.
if [ -x "$bindir/llm-server" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  "$bindir/llm-server" -m "$model" --http-addr "127.0.0.1:$port" -t 2 --parallel 4 > "$tmp/server.out" 2> "$tmp/server.err" &
  srv=$!
  up=
  for _ in $(seq 100); do
    curl -fs "http://127.0.0.1:$port/health" > /dev/null 2>&1 && { up=1; break; }
    kill -0 "$srv" 2>/dev/null || break
    sleep 0.1
  done
  if [ -z "$up" ]; then
    bad "llm-server starts" "$(tail -5 "$tmp/server.err")"
  else
    "$bindir/llmscope" load -z 4s -c 4 "http://127.0.0.1:$port/infer?prompt=Once+upon+a+time&max_tokens=64" > "$tmp/load.out" 2>&1 &
    load=$!
    sleep 0.3
    "$perf" record -g -e cpu-clock -F 999 -p "$srv" -o "$tmp/srv.data" -- sleep 3 > /dev/null 2> "$tmp/srec.err"
    rc=$?
    wait "$load" 2>/dev/null; load=
    if [ $rc -ne 0 ] || [ ! -s "$tmp/srv.data" ]; then
      bad "perf record -p on llm-server" "$(tail -5 "$tmp/srec.err")"
    else
      "$perf" report -i "$tmp/srv.data" --stdio --no-children 2> /dev/null > "$tmp/srv.report"
      for fn in llama_decode forward_worker; do
        grep -q "$fn" "$tmp/srv.report" && ok "llm-server under load: perf report names $fn" \
          || bad "llm-server under load: perf report names $fn" "$(head -40 "$tmp/srv.report"; tail -3 "$tmp/load.out")"
      done
      fold_user "$tmp/srv.data" > "$tmp/srv.folded" 2> "$tmp/flame.err"
      if d=$(deep_stack "$tmp/srv.folded"); then
        ok "llm-server under load: user stacks $(echo "$d" | head -1) deep through llama_decode"
        read -r pct own <<< "$(complete "$tmp/srv.data")"
        [ "$own" -gt 0 ] && [ "$pct" -ge "$want" ] && ok "llm-server under load: $pct% of $own samples in our code unwind to the thread's entry" \
          || bad "llm-server under load: $pct% of $own samples in our code unwind to the thread's entry (want >= $want%)" "$(complete_misses "$tmp/srv.data")"
      else
        bad "llm-server under load: folded stacks through llama_decode" "$(cat "$tmp/flame.err"; sort -t' ' -k2 -n "$tmp/srv.folded" | tail -5)"
      fi
      "$bindir/llmscope" flame -o "$tmp/srv.svg" "$tmp/srv.folded" 2> "$tmp/flame.err"
      python3 -c 'import xml.dom.minidom,sys; xml.dom.minidom.parse(sys.argv[1])' "$tmp/srv.svg" 2>&1 && grep -q '<title>llama_decode (' "$tmp/srv.svg" \
        && ok "llm-server under load: flame graph SVG" || bad "llm-server under load: flame graph SVG" "$(cat "$tmp/flame.err")"
    fi
  fi
  kill -TERM "$srv" 2>/dev/null; wait "$srv" 2>/dev/null; srv=
fi

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
