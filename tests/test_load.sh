#!/usr/bin/env bash
# End-to-end tests of `llmscope load` against tests/load_server.py, a server
# with known delays, known stream timings and a switch that stalls it: the
# reported percentiles, TTFT, TPOT and ITL must match the known values, -q
# must hold its rate, and in the open loop a stall must show in the corrected
# percentiles while the uncorrected (closed-loop) view hides it.
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${LLMSCOPE_BIN:-$here/build/bin}/llmscope
tmp=$(mktemp -d)
srv=
trap '[ -n "$srv" ] && kill "$srv" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"' EXIT
pass=0; fail=0
ok()  { pass=$((pass + 1)); echo "ok   $1"; }
bad() { fail=$((fail + 1)); echo "FAIL $1"; [ $# -gt 1 ] && echo "  $2"; }

python3 "$here/tests/load_server.py" > "$tmp/port" 2> "$tmp/server.err" &
srv=$!
for _ in $(seq 50); do grep -q PORT "$tmp/port" 2>/dev/null && break; sleep 0.1; done
port=$(awk '/PORT/ {print $2}' "$tmp/port")
if [ -z "$port" ]; then bad "test server starts" "$(cat "$tmp/server.err")"; echo "$pass passed, $fail failed"; exit 1; fi
u="http://127.0.0.1:$port"

# check NAME FILE PYTHON-EXPR: the expression sees the JSON report as d.
check() {
  local name=$1 file=$2 expr=$3 out
  if out=$(python3 - "$file" "$expr" 2>&1 <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
L = d.get("llm") or {}
if not eval(sys.argv[2]):
    lat = d["latency_ms"]; unc = d.get("latency_uncorrected_ms") or {}
    print("false:", sys.argv[2]); print("summary:", d["summary"]); print("latency_ms:", lat)
    print("uncorrected:", unc); print("status:", d["status_codes"], "errors:", d["errors"])
    if L: print("llm:", {k: L[k] for k in ("completed", "failed", "output_tokens", "goodput", "ttft_ms", "tpot_ms", "itl_ms")})
    sys.exit(1)
PY
  ); then ok "$name"; else bad "$name" "$out"; fi
}

# 1. Closed loop (hey's mode): every request takes 20 ms, so every percentile
# is 20 ms plus the loopback and server overhead.
"$bin" load -n 60 -c 3 --json "$u/delay?ms=20" > "$tmp/a.json" 2> "$tmp/a.err"
check "closed loop: percentiles match a 20 ms server" "$tmp/a.json" \
  'all(20 <= d["latency_ms"][p] <= 32 for p in ("p10","p25","p50","p75")) and d["latency_ms"]["p90"] <= 45 and d["latency_ms"]["p99"] >= 20 and d["summary"]["responses"] == 60 and d["status_codes"] == {"200": 60} and d["summary"]["total_bytes"] == 300'
[ -s "$tmp/a.err" ] && bad "no progress line when stderr is not a terminal" "$(head -c 300 "$tmp/a.err")" || ok "no progress line when stderr is not a terminal"

# A terminal gets the live progress line (script(1) gives the command a terminal).
if command -v script > /dev/null; then
  script -qec "'$bin' load -z 1.2s -c 2 -q 10 '$u/health' > /dev/null" /dev/null > "$tmp/tty" 2>&1
  grep -q 'done .* errors .* req/s' "$tmp/tty" && ok "progress line on a terminal" || bad "progress line on a terminal" "$(od -c "$tmp/tty" | head -5)"
fi

# 2. -q holds the rate: 2 workers at 20 requests/s each for 1.5 s is 60 requests
# (a loaded machine can make a worker miss a tick, as hey's Go ticker would;
# a total rate of 20/s would give 30, no pacing thousands).
"$bin" load -c 2 -q 20 -z 1.5s --json "$u/health" > "$tmp/q.json" 2>&1
check "-q 20 x -c 2 holds 40 requests/s" "$tmp/q.json" \
  '50 <= d["summary"]["responses"] <= 62 and 33 <= d["summary"]["requests_per_sec"] <= 42'

# 3. Coordinated omission. The 40th request stalls the server for 500 ms.
# Open loop at 100/s: the ~50 arrivals during the stall wait, and counted from
# their intended send times they show it (p90 well above 200 ms); counted
# from the actual send time (the uncorrected view) they do not (the bounds
# leave room for a loaded machine's hiccups, far below the 500 ms stall).
"$bin" load --rate 100 -n 150 -c 1 --json "$u/fast?stall_at=40&stall_ms=500&k=open" > "$tmp/o.json" 2>&1
check "open loop: the stall shows in the corrected percentiles" "$tmp/o.json" \
  'd["latency_ms"]["p90"] > 200 and d["latency_ms"]["p99"] > 400 and 480 <= d["latency_ms"]["max"] <= 560 and d["summary"]["responses"] == 150'
check "open loop: the uncorrected view hides the stall" "$tmp/o.json" \
  'd["latency_uncorrected_ms"]["p90"] < 100 and d["latency_uncorrected_ms"]["p99"] < 150 and d["latency_uncorrected_ms"]["max"] >= 480'
# The same stall under hey's closed loop at the same pace: only one request sees it.
"$bin" load -n 150 -c 1 -q 100 --json "$u/fast?stall_at=40&stall_ms=500&k=closed" > "$tmp/c.json" 2>&1
check "closed loop: the same stall is hidden from p99" "$tmp/c.json" \
  'd["latency_ms"]["p99"] < 150 and d["latency_ms"]["max"] >= 480 and d["summary"]["responses"] == 150'
# Constant arrivals keep their schedule: 150 at 100/s take 1.5 s plus the stall's drain.
check "open loop: arrivals keep their schedule" "$tmp/o.json" '1.45 <= d["summary"]["total_s"] <= 1.8'

# 4. Streams (llmscope's /infer events): first token after 50 ms, then one
# every 15 ms, 8 tokens: TTFT 50, ITL and TPOT 15, E2E 50 + 7 * 15 = 155 ms.
# Minimums and medians: a loaded machine only ever adds delay.
"$bin" load --stream -n 6 -c 3 --json --slo-ttft 2000 --slo-e2e 5000 "$u/sse?n=8&ttft=50&gap=15&style=infer" > "$tmp/s.json" 2>&1
check "stream: TTFT matches" "$tmp/s.json" '49 <= L["ttft_ms"]["min"] <= 58 and 49 <= L["ttft_ms"]["p50"] <= 65 and L["ttft_ms"]["count"] == 6'
check "stream: ITL matches (every gap)" "$tmp/s.json" 'L["itl_ms"]["count"] == 42 and 12 <= L["itl_ms"]["p25"] and L["itl_ms"]["p50"] <= 21 and 13 <= L["itl_ms"]["mean"]'
# (The fake server times each gap from the previous send, so load adds a
# little to every gap; E2E must equal TTFT + 7 TPOT per request, on average.)
check "stream: TPOT and E2E match" "$tmp/s.json" '14 <= L["tpot_ms"]["p50"] <= 20 and 154 <= L["e2el_ms"]["min"] <= 185 and abs(L["e2el_ms"]["mean"] - L["ttft_ms"]["mean"] - 7 * L["tpot_ms"]["mean"]) < 3'
check "stream: tokens, throughput, goodput" "$tmp/s.json" \
  'L["completed"] == 6 and L["failed"] == 0 and L["output_tokens"] == 48 and abs(L["output_throughput"] - 48 / L["duration_s"]) < 1e-6 and L["good_requests"] == 6 and L["goodput"] > 0'
"$bin" load --stream -n 4 -c 2 --json --slo-tpot 5 "$u/sse?n=4&ttft=5&gap=15&style=openai" > "$tmp/g.json" 2>&1
check "stream: goodput counts only requests within the SLO" "$tmp/g.json" 'L["completed"] == 4 and L["good_requests"] == 0 and L["goodput"] == 0'

# 5. OpenAI bodies from a prompt file (the server answers 400 to a bad body),
# chat's role-only first event is not a token, usage.completion_tokens wins.
printf '%s\n' '{"prompt": "Once upon a time"}' '' '{"messages": [{"role": "user", "content": "Hi \"there\""}]}' '{"prompt": "a\nb"}' > "$tmp/p.jsonl"
"$bin" load --openai chat --max-tokens 5 --prompts "$tmp/p.jsonl" -n 6 -c 2 --json "$u/" > "$tmp/chat.json" 2>&1
check "openai chat: bodies accepted, 5 tokens each" "$tmp/chat.json" 'd["status_codes"] == {"200": 6} and L["completed"] == 6 and L["output_tokens"] == 30 and L["itl_ms"]["count"] == 24'
printf '%s\n' '{"prompt": "Once"}' '{"prompt": "upon"}' > "$tmp/c.jsonl"
"$bin" load --openai completions --max-tokens 4 --prompts "$tmp/c.jsonl" -n 4 -c 2 --json "$u/v1/completions?usage=9" > "$tmp/comp.json" 2>&1
check "openai completions: usage.completion_tokens preferred" "$tmp/comp.json" 'd["status_codes"] == {"200": 4} and L["completed"] == 4 and L["output_tokens"] == 36'
"$bin" load --openai completions --prompts "$tmp/p.jsonl" -n 2 -c 1 "$u/" > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 1 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q "p.jsonl:3:" "$tmp/err" && ok "prompt file: a messages line for completions is one error naming the line" || bad "prompt file: a messages line for completions is one error naming the line" "rc=$rc $(cat "$tmp/err")"

# Without --openai, -D's body and each --prompts line are sent as they are.
printf '{"model":"m","prompt":"hi","max_tokens":3,"stream":true}' > "$tmp/body.json"
"$bin" load --stream -m POST -T application/json -D "$tmp/body.json" -n 4 -c 2 --json "$u/v1/completions" > "$tmp/d.json" 2>&1
check "-D body sent as is" "$tmp/d.json" 'd["status_codes"] == {"200": 4} and L["output_tokens"] == 12'
printf '%s\n' '{"model":"m","prompt":"a","max_tokens":2,"stream":true}' '{"model":"m","prompt":"b","max_tokens":4,"stream":true}' > "$tmp/raw.jsonl"
"$bin" load --stream -m POST -T application/json --prompts "$tmp/raw.jsonl" -n 4 -c 1 --json "$u/v1/completions" > "$tmp/r.json" 2>&1
check "--prompts lines sent as they are, cycled" "$tmp/r.json" 'd["status_codes"] == {"200": 4} and L["output_tokens"] == 12'

# 6. HTTP framing: chunked bodies, bodies ended by the close, keep-alive and
# -disable-keepalive (the server counts the connections it saw).
"$bin" load -n 10 -c 2 --json "$u/chunked?n=7" > "$tmp/ch.json" 2>&1
check "chunked bodies de-chunked" "$tmp/ch.json" 'd["summary"]["total_bytes"] == 700 and d["status_codes"] == {"200": 10} and not d["errors"]'
"$bin" load -n 10 -c 2 --json "$u/close" > "$tmp/cl.json" 2>&1
check "bodies ended by Connection: close" "$tmp/cl.json" 'd["summary"]["total_bytes"] == 120 and d["status_codes"] == {"200": 10} and not d["errors"]'
"$bin" load -n 20 -c 2 --json "$u/health?tag=ka" > /dev/null 2>&1
"$bin" load -n 20 -c 2 -disable-keepalive --json "$u/health?tag=noka" > "$tmp/nk.json" 2>&1
ka=$(curl -s "$u/stats?tag=ka"); nk=$(curl -s "$u/stats?tag=noka")
[ "$ka" = '{"connections": 2}' ] && [ "$nk" = '{"connections": 20}' ] && ok "keep-alive reuses connections; -disable-keepalive does not" || bad "keep-alive reuses connections; -disable-keepalive does not" "ka=$ka noka=$nk"

# 7. Errors are counted, never fatal: dropped connections, a malformed
# response, timeouts; non-2xx statuses are responses.
"$bin" load -n 30 -c 1 -disable-keepalive --json "$u/flaky?every=3" > "$tmp/f.json" 2>&1; rc=$?
check "dropped connections counted in the error distribution" "$tmp/f.json" 'd["summary"]["responses"] == 20 and d["summary"]["errors"] == 10 and sum(d["errors"].values()) == 10'
[ $rc -eq 0 ] && ok "a run with errors still exits 0" || bad "a run with errors still exits 0" "rc=$rc"
"$bin" load -n 4 -c 2 --json "$u/bad" > "$tmp/b.json" 2>&1
check "malformed response counted" "$tmp/b.json" 'd["summary"]["errors"] == 4 and any("malformed response" in k for k in d["errors"])'
start=$(date +%s%N)
"$bin" load -n 2 -c 2 -t 0.3 --json "$u/delay?ms=3000" > "$tmp/t.json" 2>&1
el=$(( ($(date +%s%N) - start) / 1000000 ))
check "timeouts counted" "$tmp/t.json" 'd["summary"]["errors"] == 2 and any("timeout" in k for k in d["errors"])'
[ "$el" -lt 1500 ] && ok "-t stops a slow request in time" || bad "-t stops a slow request in time" "${el} ms"
"$bin" load -n 4 -c 2 --json "$u/status?code=503" > "$tmp/st.json" 2>&1
check "status codes counted" "$tmp/st.json" 'd["status_codes"] == {"503": 4} and d["summary"]["errors"] == 0'

# 8. hey's text layout, and CSV.
"$bin" load -n 20 -c 2 "$u/health" > "$tmp/text" 2>&1
want=$(printf 'Summary:\n  Total:\t*\n  Slowest:\t*\n  Fastest:\t*\n  Average:\t*\n  Requests/sec:\t*\n  \n  Total data:\t60 bytes\n  Size/request:\t3 bytes\n\nResponse time histogram:')
got=$(sed -n '2,12p' "$tmp/text" | sed 's/\t[0-9.]* secs$/\t*/; s/Requests\/sec:\t[0-9.]*$/Requests\/sec:\t*/')
hist=$(sed -n '/^Response time histogram:/,/^$/p' "$tmp/text" | grep -c '^  [0-9]\.[0-9][0-9][0-9] \[[0-9]*\]	|')
if [ "$got" = "$want" ] && [ "$hist" = 11 ] && grep -q '^  99\.9% in [0-9.]* secs$' "$tmp/text" && grep -q '^  50% in [0-9.]* secs$' "$tmp/text" \
   && grep -qP '^  \[200\]\t20 responses$' "$tmp/text" && grep -q '^Details (average, fastest, slowest):$' "$tmp/text"; then
  ok "text report in hey's layout"
else
  bad "text report in hey's layout" "$(head -30 "$tmp/text")"
fi
"$bin" load -n 10 -c 2 -o csv "$u/health" > "$tmp/csv" 2>&1
[ "$(head -1 "$tmp/csv")" = "response-time,DNS+dialup,DNS,Request-write,Response-delay,Response-read,status-code,offset" ] \
  && [ "$(grep -cE '^[0-9.]+,[0-9.]+,[0-9.]+,[0-9.]+,[0-9.]+,[0-9.]+,200,[0-9.]+$' "$tmp/csv")" = 10 ] && ok "-o csv" || bad "-o csv" "$(head -3 "$tmp/csv")"

# 9. Poisson arrivals: 60 at 60/s take about a second.
"$bin" load --rate 60 --arrival poisson --seed 3 -n 60 -c 4 --json "$u/health" > "$tmp/p.json" 2>&1
check "poisson arrivals" "$tmp/p.json" 'd["summary"]["responses"] == 60 and 0.5 <= d["summary"]["total_s"] <= 2.0 and d["config"]["arrival"] == "poisson"'

# Ctrl-C ends the run early and still prints the report.
"$bin" load -z 20s -c 2 --rate 40 --json "$u/delay?ms=100" > "$tmp/int.json" 2>&1 &
lp=$!
sleep 0.8
kill -INT "$lp"
start=$(date +%s%N)
wait "$lp"; rc=$?
el=$(( ($(date +%s%N) - start) / 1000000 ))
check "SIGINT: report of what finished" "$tmp/int.json" 'd["summary"]["interrupted"] and 5 <= d["summary"]["responses"] <= 40 and d["summary"]["total_s"] < 2'
[ $rc -eq 0 ] && [ "$el" -lt 1000 ] && ok "SIGINT: exits at once with 0" || bad "SIGINT: exits at once with 0" "rc=$rc after ${el} ms"

# 10. Usage errors exit 2, unreachable targets exit 1 with one line.
expect_rc() { # NAME RC ARGS...
  local name=$1 want=$2; shift 2
  "$bin" load "$@" > /dev/null 2> "$tmp/err"; local rc=$?
  [ $rc -eq "$want" ] && ok "$name" || bad "$name" "rc=$rc $(cat "$tmp/err")"
}
expect_rc "no URL is a usage error" 2
expect_rc "unknown flag" 2 -bogus "$u/"
expect_rc "bad -n" 2 -n abc "$u/"
expect_rc "bad -z" 2 -z 10x "$u/"
expect_rc "-n less than -c" 2 -n 5 -c 10 "$u/"
expect_rc "bad header" 2 -H "NoColon" "$u/"
expect_rc "-q with --rate" 2 -q 5 --rate 5 "$u/"
expect_rc "a flag's missing value after the URL" 2 "$u/" -H
expect_rc "--arrival without a value" 2 "$u/" --rate 5 --arrival
expect_rc "bad --openai" 2 --openai foo "$u/"
"$bin" load https://127.0.0.1:1/ > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 2 ] && grep -q "only http://" "$tmp/err" && ok "https refused with a usage message" || bad "https refused with a usage message" "rc=$rc $(cat "$tmp/err")"
cport=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" load -n 4 -c 2 "http://127.0.0.1:$cport/" > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 1 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] && grep -q "cannot connect" "$tmp/err" && ok "unreachable target: one line, exit 1" || bad "unreachable target: one line, exit 1" "rc=$rc $(cat "$tmp/err")"
"$bin" load --prompts "$tmp/nonexistent" "$u/" > /dev/null 2> "$tmp/err"; rc=$?
[ $rc -eq 1 ] && [ "$(wc -l < "$tmp/err")" -eq 1 ] && ok "missing prompt file: one line, exit 1" || bad "missing prompt file: one line, exit 1" "rc=$rc $(cat "$tmp/err")"

echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
