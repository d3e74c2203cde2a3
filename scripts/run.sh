#!/usr/bin/env bash
# The main job: serve the default model with llm-server on ADDR (default
# 127.0.0.1:8080); it prints the URLs to try and runs until Ctrl-C. The model
# is $MODEL, else $MODELS/stories260K.gguf (MODELS defaults to ../shared/models).
# Extra server flags go in SERVER_FLAGS (e.g. SERVER_FLAGS="--parallel 16").
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
models=${MODELS:-$here/../shared/models}
model=${MODEL:-$models/stories260K.gguf}
if [ ! -f "$model" ]; then
  echo "no model at $model" >&2
  echo "download one, e.g. https://huggingface.co/ggml-org/models/resolve/main/tinyllamas/stories260K.gguf," >&2
  echo "and run: MODEL=/path/to/stories260K.gguf make run" >&2
  exit 1
fi
# shellcheck disable=SC2086
exec "$here/build/bin/llm-server" --model "$model" --http-addr "${ADDR:-127.0.0.1:8080}" ${SERVER_FLAGS:-}
