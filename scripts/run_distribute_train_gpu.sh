#!/usr/bin/env bash
# Distribute training on GPU; arguments: see --help (scripts/launch.sh does the work).
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/launch.sh" train GPU distribute "$(basename "${BASH_SOURCE[0]}")" "$@"
