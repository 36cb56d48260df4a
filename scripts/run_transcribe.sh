#!/usr/bin/env bash
# Transcribe recordings with a checkpoint (.ckpt) or an exported MindIR (.mindir).
# Usage: bash scripts/run_transcribe.sh MODEL.ckpt|MODEL.mindir AUDIO... [--format=json] [--output=FILE] [--key=value ...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
usage() { sed -n '2,3p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2; }
[ $# -ge 2 ] || usage
case "$1" in -h|--help|--*) usage ;; esac
need_file "model" "$1"
case "$1" in
  *.mindir) MODEL=(--mindir "$(abspath "$1")") ;;
  *) MODEL=(--checkpoint "$(abspath "$1")") ;;
esac
shift
run_logged transcribe "$PYTHON" "$ROOT/transcribe.py" "${MODEL[@]}" "$@"
