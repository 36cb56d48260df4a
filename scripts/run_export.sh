#!/usr/bin/env bash
# Export a checkpoint to MindIR (dynamic batch and time axes).
# Usage: bash scripts/run_export.sh CHECKPOINT [--file_format=MINDIR|AIR|ONNX] [--frames=N] [--verify] [--key=value ...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
usage() { show_usage 2,3 "$@"; }
case "${1:-}" in -h|--help) usage 0 ;; --*|"") usage ;; esac
need_file "checkpoint" "$1"
CKPT="$(abspath "$1")"; shift
run_logged export "$PYTHON" "$ROOT/export.py" --checkpoint="$CKPT" "$@"
