#!/usr/bin/env bash
# Standalone training on CPU; arguments: see --help (scripts/launch.sh does the work).
# With no argument at all this is the quick start: prepare the bundled sample corpus (if not
# done), train the quick-start model, build a 3-gram LM of the training transcripts, tune its
# weights on sample-dev, evaluate the last checkpoint greedy and beam+LM side by side, and
# export (and verify) it, all in outputs/. With --config_path=FILE alone, the same for that
# config, in outputs/<FILE's name>/ (e.g. src/configs/streaming_sample.yaml). Training runs with
# --resume=auto: the quick start started again continues (or, finished, re-evaluates) its own
# run instead of starting over.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LAUNCH=(bash "$ROOT/scripts/launch.sh" train CPU standalone "$(basename "${BASH_SOURCE[0]}")")
CONFIG=(); OUT="$ROOT/outputs"
case "$#:${1:-}" in
  0:) ;;
  1:--config_path=*)
    CFG="$(abspath "${1#--config_path=}")"; need_file config "$CFG"
    CONFIG=("--config_path=$CFG"); OUT="$ROOT/outputs/$(basename "${CFG%.*}")" ;;
  *) exec "${LAUNCH[@]}" "$@" ;;
esac
echo "quick start: sample corpus -> train -> LM -> eval (greedy, beam+LM) -> export (outputs in $OUT)"
SECONDS=0
[ -f "$ROOT/data/sample/libri_train_manifest.csv" ] || bash "$ROOT/scripts/run_data_prep.sh" --sample
"${LAUNCH[@]}" "${CONFIG[@]}" --checkpoint_dir="$OUT/checkpoints" --log_dir="$OUT/train" --resume=auto
CKPT="$(newest_checkpoint "$OUT/checkpoints")"
[ -n "$CKPT" ] || die "training wrote no checkpoint in $OUT/checkpoints"
LM="$OUT/lm/sample_train_3gram.arpa"
run_logged build_lm "$PYTHON" "$ROOT/data_prep/build_lm.py" --out "$LM" \
  --manifests "$ROOT/data/sample/libri_train_manifest.csv"
run_logged tune_lm "$PYTHON" "$ROOT/tune_lm.py" "${CONFIG[@]}" --checkpoint "$CKPT" \
  --decode.lm_path="$LM" --manifest "$ROOT/data/sample/libri_val_manifest.csv" \
  --output_dir "$OUT/tune_lm"
bash "$ROOT/scripts/run_eval_cpu.sh" "$CKPT" "${CONFIG[@]}" --config "$OUT/tune_lm/decode.yaml" \
  --output_dir="$OUT/eval"
bash "$ROOT/scripts/run_export.sh" "$CKPT" "${CONFIG[@]}" --verify --file_name="$OUT/DeepSpeech2"
echo "quick start done in $((SECONDS / 60)) min $((SECONDS % 60)) s"
