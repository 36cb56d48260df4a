#!/usr/bin/env bash
# Train DeepSpeech2 on CPU (one process).
# Usage: bash scripts/run_standalone_train_cpu.sh [PRETRAINED_CKPT] [--key=value ...]
# With no argument at all this is the quick start: prepare the bundled sample corpus (if not
# done), train the quick-start model, then evaluate and export the last checkpoint.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
usage() { sed -n '2,5p' "${BASH_SOURCE[0]}" | sed 's/^# //'; exit 2; }
QUICK_START=$([ $# -eq 0 ] && echo 1 || echo 0)
ARGS=()
if [ $# -ge 1 ]; then
  case "$1" in
    -h|--help) usage ;;
    --*) ;;
    *) need_file "checkpoint" "$1"; ARGS+=("--pre_trained_model_path=$(abspath "$1")"); shift ;;
  esac
fi
ARGS+=("$@")
if [ "$QUICK_START" = 1 ] && [ ! -f "$ROOT/data/sample/libri_train_manifest.csv" ]; then
  bash "$ROOT/scripts/run_data_prep.sh" --sample "$ROOT/data/sample"
fi
run_logged train_cpu "$PYTHON" train.py --device_target CPU "${ARGS[@]}"
if [ "$QUICK_START" = 1 ]; then
  CKPT="$(newest_checkpoint "$ROOT/outputs/checkpoints")"
  [ -n "$CKPT" ] || die "training wrote no checkpoint in $ROOT/outputs/checkpoints"
  bash "$ROOT/scripts/run_eval_cpu.sh" "$CKPT"
  bash "$ROOT/scripts/run_export.sh" "$CKPT" --verify
fi
