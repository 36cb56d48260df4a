#!/usr/bin/env bash
# Distribute training on CPU; arguments: see --help (scripts/launch.sh does the work).
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/launch.sh" train CPU distribute "$(basename "${BASH_SOURCE[0]}")" "$@"
