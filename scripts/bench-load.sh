#!/usr/bin/env bash
# Benchmarks `llmscope load` against hey on the same fast endpoint, in the
# same run: requests/s and CPU time (user+sys) of each load generator at
# -c 50 for a fixed duration. The target is build/bin/llm-server's GET
# /health when that binary exists, otherwise nginx serving a tiny file from
# a temporary configuration on a loopback port. Prints a Markdown table.
# Usage: scripts/bench-load.sh [SECONDS] [ROUNDS]   (defaults 10 and 3)
# BENCH_TARGET=nginx skips llm-server; LLMSCOPE_BIN and LLM_SERVER override
# where the binaries are taken from.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
secs=${1:-10}
rounds=${2:-3}
bin=${LLMSCOPE_BIN:-$here/build/bin}            # where llmscope is
server=${LLM_SERVER:-$here/build/bin/llm-server}
model=${MODEL:-$here/../shared/models/stories260K.gguf}
tmp=$(mktemp -d)
srv_pid=
cleanup() { [ -n "$srv_pid" ] && kill "$srv_pid" 2>/dev/null; wait 2>/dev/null; rm -rf "$tmp"; }
trap cleanup EXIT
command -v hey > /dev/null || { echo "bench-load: hey is not installed (apt-get install hey)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "bench-load: /usr/bin/time is not installed (apt-get install time)" >&2; exit 1; }
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')

up() { for _ in $(seq 50); do curl -fs "$url" > /dev/null 2>&1 && return 0; sleep 0.1; done; return 1; }
url="http://127.0.0.1:$port/health"
target=
if [ "${BENCH_TARGET:-auto}" != nginx ] && [ -x "$server" ] && [ -f "$model" ]; then
  "$server" --model "$model" --http-addr "127.0.0.1:$port" > "$tmp/server.log" 2>&1 &
  srv_pid=$!
  if up; then target="llm-server (GET /health, $(basename "$model"))"
  else
    echo "bench-load: llm-server did not answer GET /health; using nginx" >&2
    kill "$srv_pid" 2>/dev/null; wait "$srv_pid" 2>/dev/null || true; srv_pid=
  fi
fi
if [ -z "$target" ]; then
  ngx=$(command -v nginx || echo /usr/sbin/nginx)
  [ -x "$ngx" ] || { echo "bench-load: neither build/bin/llm-server nor nginx is available (apt-get install nginx-light)" >&2; exit 1; }
  target="nginx $("$ngx" -v 2>&1 | sed 's/.*nginx\///') (a 3-byte file, 1 worker)"
  mkdir -p "$tmp/www" "$tmp/logs"
  printf 'ok\n' > "$tmp/www/health"
  chmod a+rx "$tmp" "$tmp/www"; chmod a+r "$tmp/www/health"   # nginx's workers drop root
  cat > "$tmp/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $tmp/nginx.pid;
error_log $tmp/logs/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  keepalive_requests 1000000;
  client_body_temp_path $tmp/logs;
  proxy_temp_path $tmp/logs;
  fastcgi_temp_path $tmp/logs;
  uwsgi_temp_path $tmp/logs;
  scgi_temp_path $tmp/logs;
  server { listen 127.0.0.1:$port; root $tmp/www; location = /health { default_type text/plain; } }
}
CONF
  "$ngx" -c "$tmp/nginx.conf" -p "$tmp" > "$tmp/server.log" 2>&1 &
  srv_pid=$!
  up || { echo "bench-load: nginx did not come up:" >&2; cat "$tmp/server.log" "$tmp/logs/error.log" >&2; exit 1; }
fi

# One run: prints "req/s cpu_s" (cpu = user + sys of the load generator).
run() { # $1 = name, then the command
  local name=$1; shift
  /usr/bin/time -f '%U %S' -o "$tmp/time" "$@" > "$tmp/out" 2> "$tmp/err" || { cat "$tmp/err" >&2; return 1; }
  local rps
  rps=$(grep -m1 'Requests/sec' "$tmp/out" | awk '{printf "%.0f", $2}')
  echo "$rps $(awk '{printf "%.2f", $1 + $2}' "$tmp/time")"
}

echo "# llmscope load vs hey"
echo
echo "- target: $target, $url"
echo "- load: -c 50 -z ${secs}s, keep-alive, $rounds alternating rounds; $(nproc) CPUs shared by target and load generator"
echo "- hey $(dpkg-query -W -f='${Version}' hey 2>/dev/null || echo '?'); date $(date -u +%Y-%m-%dT%H:%MZ)"
echo
echo "| round | tool | requests/s | CPU s (user+sys) | CPU µs per request |"
echo "| --- | --- | ---: | ---: | ---: |"
for r in $(seq "$rounds"); do
  for tool in llmscope hey; do
    if [ "$tool" = llmscope ]; then res=$(run llmscope "$bin/llmscope" load -c 50 -z "${secs}s" "$url")
    else res=$(run hey hey -c 50 -z "${secs}s" "$url"); fi
    rps=${res% *}; cpu=${res#* }
    per=$(awk -v c="$cpu" -v r="$rps" -v s="$secs" 'BEGIN { printf "%.1f", (r > 0 ? c * 1e6 / (r * s) : 0) }')
    echo "| $r | $tool | $rps | $cpu | $per |"
  done
done
