#!/usr/bin/env bash
# Install what the tests need (scripts/install.sh), check the style (ruff, settings in
# pyproject.toml) and run the test suite. Usage: bash scripts/run_tests.sh [pytest args...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
case "${1:-}" in -h|--help) show_usage 2,3 0 ;; esac
bash "$ROOT/scripts/install.sh"
cd "$ROOT"
"$PYTHON" -m ruff check --no-cache .
"$PYTHON" -m pytest -q tests "$@"
