#!/usr/bin/env bash
# Evaluation on Ascend: greedy WER/CER of a checkpoint; arguments: see --help.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/launch.sh" eval Ascend standalone "$(basename "${BASH_SOURCE[0]}")" "$@"
