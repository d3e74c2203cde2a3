#!/usr/bin/env bash
# llmscope collect / report / diagnose against the lab (llm-server --inject):
# every case's top finding names its cause, a clean run has no high-confidence
# finding, the switch is hidden from what collect reads (see diagnose_lab.py).
here=$(cd "$(dirname "$0")" && pwd)
exec python3 "$here/diagnose_lab.py" test
