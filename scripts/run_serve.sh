#!/usr/bin/env bash
# Serve live recognition (serve.py): the web page and the API on http://127.0.0.1:8000/.
# Usage: bash scripts/run_serve.sh STREAMING.ckpt|STREAMING.onnx [--offline_checkpoint=CKPT] [--host=H] [--port=P] [--key=value ...]
#   e.g. bash scripts/run_serve.sh outputs/streaming_sample/checkpoints/DeepSpeech-best.ckpt --port=8080
# The model: a streaming checkpoint or its streaming ONNX export; Ctrl-C stops the server.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
usage() { show_usage 2,5 "$@"; }
case "${1:-}" in -h|--help) usage 0 ;; --*|"") usage ;; esac
need_file "model" "$1"
case "$1" in
  *.onnx) MODEL=(--onnx "$(abspath "$1")") ;;
  *) MODEL=(--checkpoint "$(abspath "$1")") ;;
esac
shift
need_venv
exec "$PYTHON" "$ROOT/serve.py" "${MODEL[@]}" "$@"
