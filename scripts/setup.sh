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
)
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
echo "setup: all build dependencies present"
