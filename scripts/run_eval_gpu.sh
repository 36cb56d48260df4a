#!/usr/bin/env bash
# Evaluation on GPU: greedy WER/CER of a checkpoint; arguments: see --help.
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/launch.sh" eval GPU standalone "$(basename "${BASH_SOURCE[0]}")" "$@"
