#!/usr/bin/env bash
# Evaluate a checkpoint on CPU: greedy WER/CER for every manifest in eval.manifests.
# Usage: bash scripts/run_eval_cpu.sh CHECKPOINT [--key=value ...]
#   e.g. bash scripts/run_eval_cpu.sh DeepSpeech.ckpt --manifests=test_clean.csv,test_other.csv
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
usage() { sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# //'; exit 2; }
[ $# -ge 1 ] || usage
case "$1" in -h|--help|--*) usage ;; esac
need_file "checkpoint" "$1"
CKPT="$(abspath "$1")"; shift
run_logged eval_cpu "$PYTHON" eval.py --device_target CPU --checkpoint="$CKPT" "$@"
