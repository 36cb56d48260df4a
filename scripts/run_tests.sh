#!/usr/bin/env bash
# Install what the tests need (pip requirements; SoX from Debian when apt is available) and run
# the test suite. Usage: bash scripts/run_tests.sh [pytest args...]
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if ! command -v sox >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing sox (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sox >/dev/null
fi
python3 -m pip install -q -r requirements.txt
python3 -m pytest -q tests "$@"
