#!/usr/bin/env bash
# The LibriSpeech recipe, download to RESULTS.md, in numbered stages (docs/librispeech.md).
# Usage: bash scripts/run_librispeech.sh [--stage N] [--stop_stage M] [--subset=100|460|960]
#            [--device_target=CPU|GPU|Ascend] [--num_devices N] [--num_nodes N --node_rank R
#            --master_addr ADDR --master_port PORT] [--pretrained=CKPT [--finetune=true]]
#            [recipe options] [--section.key=value | --key=value ...]
# Stages (each skipped once done, resumed when cut short, e.g. by kill -9):
#   0 download   LibriSpeech archives + the SLR11 LM into DATA/download, DATA/lm (resumable)
#   1 data_prep  the subsets -> DATA/<split>/ and manifests (copied to EXP/data/)
#   2 lm         the LM as ARPA: SLR11's 3-gram.pruned.3e-7, or a 3-gram of librispeech-lm-norm
#   3 train      EXP/checkpoints, EXP/train (--resume=auto); skipped for --pretrained alone
#   4 average    EXP/final.ckpt: mean of the last --average checkpoints (or --pretrained)
#   5 tune_lm    alpha/beta on dev-clean: EXP/tune_lm/best.json, decode.yaml
#   6 eval       test-clean and test-other, greedy and beam+LM: EXP/eval/summary.json
#   7 results    a dated section and index row in --results (EXP/results.md keeps a copy)
# Recipe options (defaults): --config_path (src/configs/librispeech_zoo.yaml)
#   --data_dir DATA (data/librispeech)  --exp_dir EXP (outputs/librispeech_<subset>h, or _<CKPT>)
#   --mirror FOLDER|URL: a local or institutional mirror holding the files under their
#     published names (train-clean-100.tar.gz, 3-gram.pruned.3e-7.arpa.gz, ...; file:// too)
#   --verify_md5=true|false (true: the archives' published MD5)  --lm=3-gram.pruned.3e-7|lm-norm
#   --average N (5)  --results FILE (RESULTS.md)  --pretrained=CKPT (a zoo checkpoint loads as it
#   is: stages 0-2 fetch dev/test only, 3 is skipped)  --finetune=true (train from it; e.g. with
#   --freeze='[conv, RNN.lstms.0]')
# Any other --key=value is a config override, given to every stage that reads the config (3, 5, 6).
#   e.g. bash scripts/run_librispeech.sh --device_target=GPU --num_devices 8 --subset=960
#        bash scripts/run_librispeech.sh --pretrained=DeepSpeech.ckpt
#        bash scripts/run_librispeech.sh --stage 5 --stop_stage 7 --beam_width=64
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
for arg in "$@"; do
  case "$arg" in -h|--help) show_usage 2,27 0 ;; esac
done
need_venv
# one python process runs the stages: it is the job (Ctrl-C, or kill -9 of its process group)
exec "$PYTHON" "$ROOT/data_prep/recipe.py" "$@"
