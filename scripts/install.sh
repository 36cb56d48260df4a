#!/usr/bin/env bash
# Install what the project needs: SoX from Debian (when apt-get is there and we are root), a
# virtual environment .venv in the repository (unless one is active or PYTHON is given) made
# from a Python 3.10-3.12 (MindSpore 2.10's wheels), then the pip requirements into it.
# Usage: bash scripts/install.sh   (PYTHON=/path/to/python to install into that interpreter)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
case "${1:-}" in -h|--help) show_usage 2,5 0 ;; esac
[ $# -eq 0 ] || die "unexpected argument '$1' (see --help)"

# base_python: the first of python3.12, python3.11, python3.10, python3 that MindSpore supports.
base_python() {
  local candidate
  for candidate in python3.12 python3.11 python3.10 python3; do
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))'; then
      echo "$candidate"; return 0
    fi
  done
  PYTHON=python3 check_python  # names the Python found and why it does not fit
}

# make_venv BASE: create $VENV with BASE; Debian/Ubuntu ship venv's pip separately (python3-venv).
make_venv() {
  local base="$1" version
  echo "creating the virtual environment $VENV ($("$base" --version 2>&1))"
  if ! "$base" -m venv "$VENV" >/dev/null 2>&1; then
    rm -rf "$VENV"  # a half-made environment (no pip) would be taken as ready next time
    version="$("$base" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
    as_root_apt || die "'$base -m venv' failed: install python3-venv (e.g. sudo apt-get install python$version-venv) and run this again"
    apt_install "python$version-venv"
    "$base" -m venv "$VENV" || { rm -rf "$VENV"; die "'$base -m venv $VENV' failed"; }
  fi
}

if ! command -v sox >/dev/null 2>&1 && as_root_apt; then apt_install sox; fi
if [ "$OWN_VENV" = 1 ] && [ ! -x "$PYTHON" ]; then
  BASE="$(base_python)"  # an assignment, so that set -e stops here when none fits
  make_venv "$BASE"
fi
check_python
"$PYTHON" -m pip install -q --disable-pip-version-check -r "$ROOT/requirements.txt"
echo "installed into $("$PYTHON" -c 'import sys; print(sys.prefix)')"
