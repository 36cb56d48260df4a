#!/usr/bin/env bash
# Transcribe recordings with a checkpoint (.ckpt) or an exported MindIR (.mindir).
# Usage: bash scripts/run_transcribe.sh MODEL.ckpt|MODEL.mindir AUDIO... [--format=text|json|srt|vtt] [--output=FILE|FOLDER] [--key=value ...] [-- AUDIO...]
#        bash scripts/run_transcribe.sh STREAMING.ckpt --normalize=global (--stream [--realtime] AUDIO... | --microphone) [--format=text|json [--partials]] [--key=value ...]
#        (streaming: on a terminal the output is not logged, so that the partial text updates in place)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
usage() { show_usage 2,5 "$@"; }
case "${1:-}" in -h|--help) usage 0 ;; --*) usage ;; esac
[ $# -ge 2 ] || usage
need_file "model" "$1"
case "$1" in
  *.mindir) MODEL=(--mindir "$(abspath "$1")") ;;
  *) MODEL=(--checkpoint "$(abspath "$1")") ;;
esac
shift
LIVE=false  # --stream or --microphone (before a `--`) with stdout on a terminal
for arg in "$@"; do
  [ "$arg" = -- ] && break
  case "$arg" in
    --stream|--stream=true|--transcribe.stream|--transcribe.stream=true) LIVE=true ;;
    --microphone|--microphone=true|--transcribe.microphone|--transcribe.microphone=true) LIVE=true ;;
  esac
done
if $LIVE && [ -t 1 ]; then
  need_venv
  exec "$PYTHON" "$ROOT/transcribe.py" "${MODEL[@]}" "$@"  # a log's pipe would hide the live text
fi
run_logged transcribe "$PYTHON" "$ROOT/transcribe.py" "${MODEL[@]}" "$@"
