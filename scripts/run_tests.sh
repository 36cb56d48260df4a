#!/usr/bin/env bash
# Install what the tests need (scripts/install.sh; as root also chromium), check the style (ruff,
# pyproject.toml) and run the test suite. Usage: bash scripts/run_tests.sh [pytest args...]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
case "${1:-}" in -h|--help) show_usage 2,3 0 ;; esac
bash "$ROOT/scripts/install.sh"
# The page's test drives a real browser: Debian's chromium and its WebDriver (skipped, with the
# reason printed, where they cannot be installed).
if ! command -v chromedriver >/dev/null 2>&1 && as_root_apt; then
  apt_install chromium chromium-driver || echo "chromium could not be installed: the browser test will be skipped"
fi
cd "$ROOT"
"$PYTHON" -m ruff check --no-cache .
"$PYTHON" -m pytest -q -rs tests "$@"
