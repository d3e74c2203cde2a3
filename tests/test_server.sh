#!/usr/bin/env bash
# Integration tests of llm-server over real loopback sockets (see server_test.py).
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/server_test.py"
