#!/usr/bin/env bash
# Export a checkpoint to MindIR (dynamic batch and time axes).
# Usage: bash scripts/run_export.sh CHECKPOINT [--file_format=MINDIR|AIR|ONNX] [--frames=N] [--verify] [--key=value ...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
usage() { sed -n '2,3p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2; }
[ $# -ge 1 ] || usage
case "$1" in -h|--help|--*) usage ;; esac
need_file "checkpoint" "$1"
CKPT="$(abspath "$1")"; shift
run_logged export "$PYTHON" "$ROOT/export.py" --checkpoint="$CKPT" "$@"
