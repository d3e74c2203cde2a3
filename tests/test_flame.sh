#!/usr/bin/env bash
# test_flame.sh — `llmscope flame` end to end: a real Go CPU profile (a tiny
# program built here with the standard library's runtime/pprof) folds to
# exactly the stacks `go tool pprof -raw` lists; the profiler's own CPU
# profile folds with --tagfocus on its labels; the SVG is well-formed XML with
# the expected frames, even for hostile frame names; stdin, -o, folded input
# and the errors (one line naming the file and offset, exit codes).
# The Go checks are skipped, with a message, only when go is absent.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
bindir=${LLMSCOPE_BIN:-$here/build/bin}
bin=$bindir/llmscope
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ $# -gt 1 ] && echo "  $2"; }
wellformed() { python3 -c 'import xml.dom.minidom,sys; xml.dom.minidom.parse(sys.argv[1])' "$1" 2>&1; }

# 1. A real Go CPU profile: fold it and compare with Go's own decoding.
if command -v go >/dev/null 2>&1; then
  export HOME=${HOME:-$tmp} GOCACHE=${GOCACHE:-$tmp/gocache} GOTOOLCHAIN=local GOFLAGS= GO111MODULE=on
  mkdir -p "$tmp/burn"
  cat > "$tmp/burn/main.go" <<'GO'
package main

import (
	"os"
	"runtime/pprof"
	"syscall"
	"time"
)

//go:noinline
func burnAlpha(n int) float64 {
	x := 0.0
	for i := 0; i < n; i++ {
		x += float64(i%7) * 1.0001
	}
	return x
}

//go:noinline
func burnBeta(n int) float64 {
	x := 1.0
	for i := 0; i < n; i++ {
		x = x*1.0000001 + float64(i&3)
	}
	return x
}

func main() {
	f, err := os.Create(os.Args[1])
	if err != nil {
		panic(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		panic(err)
	}
	// Burn 300 ms of CPU time (at most 3 s of wall time on a busy machine).
	// The rounds' lengths vary: a fixed alpha + beta round can last as long
	// as the profiler's 10-ms period, and then every sample lands in the same
	// function.
	sink := 0.0
	var ru syscall.Rusage
	r := uint32(1)
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); {
		r = r*1664525 + 1013904223
		sink += burnAlpha(1000000 + int(r>>12)%2000000)
		r = r*1664525 + 1013904223
		sink += burnBeta(500000 + int(r>>12)%1000000)
		syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		if ru.Utime.Sec*1000000+ru.Utime.Usec >= 300000 {
			break
		}
	}
	pprof.StopCPUProfile()
	f.Close()
	if sink == 42 {
		println(sink)
	}
}
GO
  printf 'module flameburn\n\ngo 1.18\n' > "$tmp/burn/go.mod"
  if (cd "$tmp/burn" && go build -o burn . > "$tmp/gobuild.err" 2>&1) && "$tmp/burn/burn" "$tmp/go.pprof"; then
    "$bin" flame --folded "$tmp/go.pprof" > "$tmp/go.folded" 2> "$tmp/err"
    grep -q '^runtime.main;main.main;main.burnAlpha[; ]' "$tmp/go.folded" \
      && ok "go profile: runtime.main;main.main;main.burnAlpha" || bad "go profile: runtime.main;main.main;main.burnAlpha" "$(cat "$tmp/go.folded" "$tmp/err")"
    # go tool pprof -raw lists each sample's values and location ids and each
    # location's functions (inlined ones on continuation lines): fold that.
    go tool pprof -raw "$tmp/go.pprof" > "$tmp/raw" 2>/dev/null
    python3 - "$tmp/raw" > "$tmp/want.folded" <<'PY'
import re, sys, collections
sec, samples, locs, cur = None, [], {}, None
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line in ("Samples:", "Locations", "Mappings"): sec = line; continue
    if sec == "Samples:":
        m = re.match(r"^\s+(\d+)\s+(\d+): ([\d ]+)$", line)
        if m: samples.append((int(m.group(2)), [int(x) for x in m.group(3).split()]))
    elif sec == "Locations":
        m = re.match(r"^\s+(\d+): 0x[0-9a-f]+ M=\d+ (\S+) ", line)
        if m: cur = int(m.group(1)); locs[cur] = [m.group(2)]; continue
        m = re.match(r"^\s+(\S+) \S+:\d+ s=\d+$", line)
        if m and cur is not None: locs[cur].append(m.group(1))
out = collections.Counter()
for v, ids in samples:
    frames = []
    for i in reversed(ids): frames += list(reversed(locs[i]))
    out[";".join(frames)] += v
for k in sorted(out):
    if out[k] > 0: print(k, out[k])
PY
    if [ -s "$tmp/want.folded" ] && diff <(sort "$tmp/go.folded") <(sort "$tmp/want.folded") > "$tmp/diff"; then
      ok "go profile: folded stacks equal go tool pprof -raw's samples"
    else
      bad "go profile: folded stacks equal go tool pprof -raw's samples" "$(head -20 "$tmp/diff")"
    fi
    "$bin" flame --folded --sample-index samples "$tmp/go.pprof" > "$tmp/go.count"
    awk '{ if ($NF > 1000) exit 1 }' "$tmp/go.count" && grep -q burnBeta "$tmp/go.count" \
      && ok "go profile: --sample-index samples counts samples" || bad "go profile: --sample-index samples counts samples" "$(cat "$tmp/go.count")"
    "$bin" flame -o "$tmp/go.svg" --title "burn <&> test" "$tmp/go.pprof" 2> "$tmp/err"
    if out=$(wellformed "$tmp/go.svg") && grep -q '<title>main.burnAlpha (' "$tmp/go.svg" && grep -q 'burn &lt;&amp;&gt; test' "$tmp/go.svg" \
       && grep -q 'nanoseconds' "$tmp/go.svg"; then
      ok "go profile: SVG is well-formed XML with main.burnAlpha"
    else
      bad "go profile: SVG is well-formed XML with main.burnAlpha" "$out $(head -c 300 "$tmp/err")"
    fi
  else
    bad "go program builds and profiles" "$(cat "$tmp/gobuild.err")"
  fi
else
  echo "skipped: go is not installed (Debian: golang-go; scripts/setup.sh installs it): the real Go profile checks"
fi

# 2. The profiler's own CPU profile: labels work with --tagfocus.
if [ -x "$bindir/../tests/test_prof" ] && mkdir -p "$tmp/prof" && "$bindir/../tests/test_prof" --write "$tmp/prof" > /dev/null 2>&1; then
  "$bin" flame --folded --tagfocus phase=alpha "$tmp/prof/cpu.pprof" > "$tmp/alpha" 2>&1
  grep -q ';burner_main;burn_alpha ' "$tmp/alpha" && ! grep -q burn_beta "$tmp/alpha" \
    && ok "own cpu profile: --tagfocus phase=alpha keeps burn_alpha only" || bad "own cpu profile: --tagfocus phase=alpha keeps burn_alpha only" "$(cat "$tmp/alpha")"
  "$bin" flame "$tmp/prof/cpu.pprof" > "$tmp/prof.svg" 2> "$tmp/err"
  out=$(wellformed "$tmp/prof.svg") && grep -q '<title>burn_beta (' "$tmp/prof.svg" \
    && ok "own cpu profile: SVG on stdout" || bad "own cpu profile: SVG on stdout" "$out $(cat "$tmp/err")"
  "$bin" flame --folded "$tmp/prof/block.pprof" | grep -q 'queue_consumer' \
    && ok "own block profile folds" || bad "own block profile folds"
else
  bad "test_prof --write makes profiles"
fi

# 3. Folded input: stdin, -o, identity after sorting, hostile names in the SVG.
printf 'main;run;matmul 30\nmain;run 5\nmain;tok<&>"en" 10\nmain;caf\xc3\xa9;bad\xff 4\nmain;tiny 0\n' > "$tmp/in.folded"
"$bin" flame --folded < "$tmp/in.folded" > "$tmp/out.folded"
printf 'main;caf\xc3\xa9;bad\xff 4\nmain;run 5\nmain;run;matmul 30\nmain;tok<&>"en" 10\n' > "$tmp/want"
cmp -s "$tmp/out.folded" "$tmp/want" && ok "folded stdin to folded" || bad "folded stdin to folded" "$(cat "$tmp/out.folded")"
"$bin" flame -o "$tmp/f.svg" "$tmp/in.folded" 2> "$tmp/err"
if out=$(wellformed "$tmp/f.svg") && grep -q 'tok&lt;&amp;&gt;&quot;en&quot; (10 samples, 20.41%)' "$tmp/f.svg" \
   && grep -q '<title>matmul (30 samples' "$tmp/f.svg" && grep -q 'bad? (4 samples' "$tmp/f.svg"; then
  ok "SVG: well-formed, escaped names, percentages"
else
  bad "SVG: well-formed, escaped names, percentages" "$out $(cat "$tmp/err")"
fi
grep -Eq '<script[^>]*src=|xlink:href|https?://[a-z]' <(grep -v 'xmlns=' "$tmp/f.svg") \
  && bad "SVG: no external resources" || ok "SVG: no external resources"

# 4. perf script text in (a captured sample), folded out.
printf 'llmscope 31361  1368.038238:     250000 cpu-clock: \n\t  34288 op_rmsnorm+0x98 (/opt/x/llmscope)\n\t  274df forward_worker+0x31f (/opt/x/llmscope)\n\t  291ac llama_decode+0xfc (/opt/x/llmscope)\n\n' > "$tmp/perf.txt"
got=$("$bin" flame --folded "$tmp/perf.txt" 2>&1)
[ "$got" = "llmscope;llama_decode;forward_worker;op_rmsnorm 1" ] && ok "perf script to folded" || bad "perf script to folded" "$got"

# 5. Errors: one line naming the input (and the offset), exit 1; usage errors exit 2.
if [ -e "$tmp/prof/cpu.pprof" ]; then
  head -c 200 "$tmp/prof/cpu.pprof" > "$tmp/trunc.pprof"
  "$bin" flame "$tmp/trunc.pprof" > /dev/null 2> "$tmp/err"; rc=$?
  [ $rc -eq 1 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q 'trunc.pprof: offset [0-9]*: truncated gzip stream' "$tmp/err" \
    && ok "truncated profile: one line with the offset" || bad "truncated profile: one line with the offset" "rc=$rc $(cat "$tmp/err")"
  "$bin" flame --sample-index nosuch "$tmp/prof/cpu.pprof" > /dev/null 2> "$tmp/err"; rc=$?
  [ $rc -eq 2 ] && grep -q "no sample type 'nosuch'; it has: 0=samples 1=cpu" "$tmp/err" \
    && ok "--sample-index: unknown type lists the types" || bad "--sample-index: unknown type lists the types" "rc=$rc $(cat "$tmp/err")"
fi
printf 'main;x 1\nmain;y oops\n' > "$tmp/bad.folded"
"$bin" flame "$tmp/bad.folded" > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'bad.folded: line 2 (offset 9): expected' "$tmp/err" && ok "bad folded line: line and offset" || bad "bad folded line: line and offset" "rc=$rc $(cat "$tmp/err")"
"$bin" flame "$tmp/nonexistent" > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'nonexistent: cannot open' "$tmp/err" && ok "missing file" || bad "missing file" "rc=$rc $(cat "$tmp/err")"
"$bin" flame --bogus > /dev/null 2>&1; [ $? -eq 2 ] && ok "unknown flag is a usage error" || bad "unknown flag is a usage error"
"$bin" flame --tagfocus phase "$tmp/in.folded" > /dev/null 2>&1; [ $? -eq 2 ] && ok "--tagfocus without =" || bad "--tagfocus without ="
"$bin" flame --tagfocus phase=x "$tmp/in.folded" > /dev/null 2>&1; [ $? -eq 2 ] && ok "--tagfocus on folded input is a usage error" || bad "--tagfocus on folded input is a usage error"
: > "$tmp/empty"
"$bin" flame "$tmp/empty" > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 1 ] && grep -q 'empty: empty input' "$tmp/err" && ok "empty input" || bad "empty input" "rc=$rc $(cat "$tmp/err")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
