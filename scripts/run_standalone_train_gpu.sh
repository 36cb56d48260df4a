#!/usr/bin/env bash
# Standalone training on GPU; arguments: see --help (scripts/launch.sh does the work).
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/launch.sh" train GPU standalone "$(basename "${BASH_SOURCE[0]}")" "$@"
