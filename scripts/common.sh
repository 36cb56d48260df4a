#!/usr/bin/env bash
# Helpers sourced by the launchers in scripts/: repo root, absolute paths, logging a python call.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
LOG_DIR="${LOG_DIR:-$ROOT/outputs/logs}"

die() { echo "error: $*" >&2; exit 2; }

# abspath PATH: absolute form of PATH (relative to the caller's directory).
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }

# need_file WHAT PATH: fail with a clear message unless PATH is a readable file.
need_file() { [ -f "$2" ] && [ -r "$2" ] || die "$1 not found or unreadable: $2"; }

# run_logged NAME CMD...: run CMD from the repo root, tee its output to $LOG_DIR/NAME.log and
# return its exit status.
run_logged() {
  local name="$1"; shift
  mkdir -p "$LOG_DIR"
  local log="$LOG_DIR/$name.log"
  echo "log: $log"
  local status=0
  (cd "$ROOT" && "$@") 2>&1 | tee "$log" || status=$?
  echo "log: $log (exit status $status)"
  return "$status"
}

# newest_checkpoint DIR: the most recent DeepSpeech-*.ckpt in DIR.
newest_checkpoint() { ls -t "$1"/DeepSpeech-*.ckpt 2>/dev/null | head -n 1; }
