#!/usr/bin/env bash
# Distribute training on Ascend; arguments: see --help (scripts/launch.sh does the work).
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/launch.sh" train Ascend distribute "$(basename "${BASH_SOURCE[0]}")" "$@"
