#!/usr/bin/env bash
# Installs what llmscope needs to build and test on Debian 12 (only what is
# missing, so a second run is quick). Run as root, or with sudo available.
set -euo pipefail
pkgs=(
  build-essential   # gcc, make
  clang             # fuzz targets (libFuzzer)
  libclang-rt-14-dev
  libpcre2-dev      # Unicode-aware regexes for the BPE pre-tokenizers
  libjansson-dev    # JSON
  libmicrohttpd-dev # the server's HTTP layer
  zlib1g-dev        # gzip'd profile.proto
  libdw-dev         # in-process symbolization (ELF/DWARF) for the profiler
  golang-go         # go tool pprof: the tests check it reads our profiles
  python3
  hey               # the reference load generator scripts/bench-load.sh compares llmscope load with
  curl              # tests: streaming with curl -N
  prometheus        # tests: promtool check metrics reads /metrics
  linux-perf        # perf: tests record our binaries (symbols, frame pointers, build ID)
)
# Node.js for the official openai client in the tests (any recent node will
# do; Debian's is used when none is installed).
command -v node >/dev/null 2>&1 && command -v npm >/dev/null 2>&1 || pkgs+=(nodejs npm)
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=; [ "$(id -u)" -eq 0 ] || SUDO=sudo
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
# The openai npm client the integration tests drive the server with.
here=$(cd "$(dirname "$0")/.." && pwd)
if [ ! -d "$here/tests/node_modules/openai" ]; then
  (cd "$here/tests" && npm install --no-audit --no-fund --loglevel=error)
fi
echo "setup: all build dependencies present"
