#!/usr/bin/env bash
# The lab's figures (part of `make bench`): for each `llm-server --inject NAME`
# case, the load that exposes it runs against the plain server and against the
# injected one in interleaved rounds; the medians of P50, P99, requests/s and
# output tokens/s go to bench/lab/NAME.md and bench/lab/summary.md (for
# alloc-churn, the P99 improvement pooled buffers buy). The cases and their
# loads are defined once, in tests/diagnose_lab.py.
#   LAB_BENCH_SECONDS (default 6)  length of each load run
#   LAB_BENCH_ROUNDS  (default 3)  interleaved rounds per case
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
export LLMSCOPE_BIN=${LLMSCOPE_BIN:-$here/build/bin}
export MODELS=${MODELS:-$here/../shared/models}
export LAB_BENCH_SECONDS=${LAB_BENCH_SECONDS:-6}
export LAB_BENCH_ROUNDS=${LAB_BENCH_ROUNDS:-3}
python3 "$here/tests/diagnose_lab.py" bench "$here/bench/lab"
echo "wrote bench/lab/*.md"
