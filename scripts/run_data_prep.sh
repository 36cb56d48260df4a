#!/usr/bin/env bash
# Prepare LibriSpeech (archives or an extracted tree) into split folders + json/csv manifests.
# Usage: bash scripts/run_data_prep.sh SOURCE_DIR TARGET_DIR [data_prep options...]
#        bash scripts/run_data_prep.sh --sample [TARGET_DIR]   (the bundled sample corpus)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
usage() { show_usage 2,4 "$@"; }
case "${1:-}" in -h|--help) usage 0 ;; "") usage ;; esac
if [ "$1" = "--sample" ]; then
  TARGET="$(abspath "${2:-$ROOT/data/sample}")"
  set -- "$ROOT/data_prep/sample" "$TARGET" --train_subsets sample-train \
    --val_subsets sample-dev --test_clean_subsets sample-test --test_other_subsets
else
  [ $# -ge 2 ] || usage
  [ -d "$1" ] || die "source dir not found: $1"
  SRC="$(abspath "$1")"; TARGET="$(abspath "$2")"; shift 2
  set -- "$SRC" "$TARGET" "$@"
fi
SRC="$1"; TARGET="$2"; shift 2
run_logged data_prep "$PYTHON" "$ROOT/data_prep/librispeech.py" --source_dir "$SRC" --target_dir "$TARGET" "$@"
