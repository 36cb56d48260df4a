#!/usr/bin/env bash
# Helpers sourced by the launchers in scripts/: repo root, absolute paths, logging a python call.
# Paths: the scripts run python from the caller's directory, so every path a user types (a
# positional checkpoint or a --key=value) means the same as it would for the python entry points.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
LOG_DIR="${LOG_DIR:-$ROOT/outputs/logs}"

die() { echo "error: $*" >&2; exit 2; }

# abspath PATH: absolute form of PATH (relative to the caller's directory).
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }

# need_file WHAT PATH: fail with a clear message unless PATH is a readable file.
need_file() { [ -f "$2" ] && [ -r "$2" ] || die "$1 not found or unreadable: $2"; }

# run_logged NAME CMD...: run CMD, tee its output to $LOG_DIR/NAME.log and return its exit status.
run_logged() {
  local name="$1"; shift
  mkdir -p "$LOG_DIR" 2>/dev/null && [ -w "$LOG_DIR" ] || die "cannot write the log folder $LOG_DIR (set LOG_DIR)"
  local log="$LOG_DIR/$name.log"
  echo "log: $log"
  local status=0
  "$@" 2>&1 | tee "$log" || status=$?
  echo "log: $log (exit status $status)"
  return "$status"
}

# check_python: MindSpore 2.10 has wheels for CPython 3.10-3.12 only; say so in one line.
check_python() {
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set PYTHON=/path/to/python3.10-3.12)"
  "$PYTHON" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' ||
    die "Python $("$PYTHON" -c 'import platform; print(platform.python_version())') is not supported: MindSpore 2.10 needs Python 3.10, 3.11 or 3.12 (set PYTHON=/path/to/python3.11)"
}

# newest_checkpoint DIR: the most recent DeepSpeech-<epoch>_<step>.ckpt in DIR (the training's
# last one: not DeepSpeech-best.ckpt, DeepSpeech-avg.ckpt or a _weights copy).
newest_checkpoint() {
  ls -t "$1"/DeepSpeech-[0-9]*_[0-9]*.ckpt 2>/dev/null | grep -v '_weights\.ckpt$' | head -n 1 || true
}
