#!/usr/bin/env bash
# The main job: generate text with the default model. The model is
# $MODEL, else $MODELS/stories260K.gguf (MODELS defaults to ../shared/models).
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
exec "$here/build/bin/llmscope" run -m "$model" -p "${PROMPT:-Once upon a time}" -n "${N:-200}" --temp "${TEMP:-0}"
