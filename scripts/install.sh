#!/usr/bin/env bash
# Install what the project needs: a Python check (MindSpore 2.10: Python 3.10-3.12), SoX from
# Debian when apt is there and we are root, then the pip requirements.
# Usage: bash scripts/install.sh   (PYTHON=/path/to/python3.11 to choose the interpreter)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
case "${1:-}" in -h|--help) sed -n '2,4p' "${BASH_SOURCE[0]}" | sed 's/^# //' >&2; exit 2 ;; esac
check_python
if ! command -v sox >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  echo "installing sox (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq sox >/dev/null
fi
"$PYTHON" -m pip install -q -r "$ROOT/requirements.txt"
