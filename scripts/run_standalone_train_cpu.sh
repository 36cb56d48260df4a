#!/usr/bin/env bash
# Standalone training on CPU; arguments: see --help (scripts/launch.sh does the work).
# With no argument at all this is the quick start: prepare the bundled sample corpus (if not
# done), train the quick-start model, build a 3-gram LM of the training transcripts, tune its
# weights on sample-dev, evaluate the last checkpoint greedy and beam+LM side by side, and
# export (and verify) it. Training runs with --resume=auto: the quick start started again
# continues (or, finished, re-evaluates) its own run instead of starting over.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LAUNCH=(bash "$ROOT/scripts/launch.sh" train CPU standalone "$(basename "${BASH_SOURCE[0]}")")
if [ $# -gt 0 ]; then
  exec "${LAUNCH[@]}" "$@"
fi
echo "quick start: sample corpus -> train -> LM -> eval (greedy, beam+LM) -> export (outputs in $ROOT/outputs)"
SECONDS=0
[ -f "$ROOT/data/sample/libri_train_manifest.csv" ] || bash "$ROOT/scripts/run_data_prep.sh" --sample
"${LAUNCH[@]}" --resume=auto
CKPT="$(newest_checkpoint "$ROOT/outputs/checkpoints")"
[ -n "$CKPT" ] || die "training wrote no checkpoint in $ROOT/outputs/checkpoints"
LM="$ROOT/outputs/lm/sample_train_3gram.arpa"
run_logged build_lm "$PYTHON" "$ROOT/data_prep/build_lm.py" --out "$LM" \
  --manifests "$ROOT/data/sample/libri_train_manifest.csv"
run_logged tune_lm "$PYTHON" "$ROOT/tune_lm.py" --checkpoint "$CKPT" --decode.lm_path="$LM" \
  --manifest "$ROOT/data/sample/libri_val_manifest.csv" --output_dir "$ROOT/outputs/tune_lm"
bash "$ROOT/scripts/run_eval_cpu.sh" "$CKPT" --config "$ROOT/outputs/tune_lm/decode.yaml"
bash "$ROOT/scripts/run_export.sh" "$CKPT" --verify
echo "quick start done in $((SECONDS / 60)) min $((SECONDS % 60)) s"
