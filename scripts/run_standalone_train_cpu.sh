#!/usr/bin/env bash
# Standalone training on CPU; arguments: see --help (scripts/launch.sh does the work).
# With no argument at all this is the quick start: prepare the bundled sample corpus (if not
# done), train the quick-start model, then evaluate and export (and verify) the last checkpoint.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LAUNCH=(bash "$ROOT/scripts/launch.sh" train CPU standalone "$(basename "${BASH_SOURCE[0]}")")
if [ $# -gt 0 ]; then
  exec "${LAUNCH[@]}" "$@"
fi
echo "quick start: sample corpus -> train -> eval -> export (outputs in $ROOT/outputs)"
SECONDS=0
[ -f "$ROOT/data/sample/libri_train_manifest.csv" ] || bash "$ROOT/scripts/run_data_prep.sh" --sample
"${LAUNCH[@]}"
CKPT="$(newest_checkpoint "$ROOT/outputs/checkpoints")"
[ -n "$CKPT" ] || die "training wrote no checkpoint in $ROOT/outputs/checkpoints"
bash "$ROOT/scripts/run_eval_cpu.sh" "$CKPT"
bash "$ROOT/scripts/run_export.sh" "$CKPT" --verify
echo "quick start done in $((SECONDS / 60)) min $((SECONDS % 60)) s"
