#!/usr/bin/env bash
# Helpers sourced by the launchers in scripts/: repo root, the Python to run, absolute paths,
# logging a python call.
# Paths: the scripts run python from the caller's directory, so every path a user types (a
# positional checkpoint or a --key=value) means the same as it would for the python entry points.
# Python: $PYTHON when given, else the active virtual environment ($VIRTUAL_ENV), else the
# repository's own .venv, which scripts/install.sh creates: a Debian/Ubuntu system Python that
# refuses pip installs (PEP 668, "externally-managed-environment") is never asked to install.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
if [ -n "${PYTHON:-}" ]; then
  OWN_VENV=0
elif [ -n "${VIRTUAL_ENV:-}" ]; then
  OWN_VENV=0; PYTHON="$VIRTUAL_ENV/bin/python"
else
  OWN_VENV=1; PYTHON="$VENV/bin/python"
fi
LOG_DIR="${LOG_DIR:-$ROOT/outputs/logs}"

die() { echo "error: $*" >&2; exit 2; }

# show_usage LINES [STATUS]: print those lines (sed range, e.g. 2,4) of the calling script's header
# comment and exit: asked-for help (STATUS 0) on stdout, a usage error (default 2) on stderr.
show_usage() {
  local text
  text="$(sed -n "$1p" "${BASH_SOURCE[1]}" | sed 's/^# \{0,1\}//')"
  if [ "${2:-2}" = 0 ]; then echo "$text"; else echo "$text" >&2; fi
  exit "${2:-2}"
}

# abspath PATH: absolute form of PATH (relative to the caller's directory).
abspath() { case "$1" in /*) printf '%s\n' "$1" ;; *) printf '%s/%s\n' "$PWD" "$1" ;; esac; }

# need_file WHAT PATH: fail with a clear message unless PATH is a readable file.
need_file() { [ -f "$2" ] && [ -r "$2" ] || die "$1 not found or unreadable: $2"; }

# quiet_filter: stdin to stdout without the lines matching $QUIET (an extended regex), if set.
quiet_filter() {
  if [ -n "${QUIET:-}" ]; then grep --line-buffered -v -E "$QUIET" || true; else cat; fi
}

# run_logged NAME CMD...: run CMD, tee its output to $LOG_DIR/NAME.log and return its exit status.
# Lines matching the extended regex $QUIET (when set) are left out of the console and that log.
run_logged() {
  local name="$1"; shift
  need_venv
  mkdir -p "$LOG_DIR" 2>/dev/null && [ -w "$LOG_DIR" ] || die "cannot write the log folder $LOG_DIR (set LOG_DIR)"
  local log="$LOG_DIR/$name.log"
  echo "log: $log"
  local status=0
  "$@" 2>&1 | quiet_filter | tee "$log" || status=$?
  echo "log: $log (exit status $status)"
  return "$status"
}

# need_venv: the repository's .venv must exist before a script runs python from it.
need_venv() {
  [ "$OWN_VENV" = 0 ] || [ -x "$PYTHON" ] ||
    die "no Python environment yet ($VENV): run 'bash scripts/install.sh' first (or activate a virtual environment, or set PYTHON)"
}

# check_python: MindSpore 2.10 has wheels for CPython 3.10-3.12 only; say so in one line.
check_python() {
  command -v "$PYTHON" >/dev/null 2>&1 || die "$PYTHON not found (set PYTHON=/path/to/python3.10-3.12)"
  "$PYTHON" -c 'import sys; sys.exit(not (3, 10) <= sys.version_info[:2] <= (3, 12))' ||
    die "Python $("$PYTHON" -c 'import platform; print(platform.python_version())') is not supported: MindSpore 2.10 needs Python 3.10, 3.11 or 3.12 (set PYTHON=/path/to/python3.11)"
}

# as_root_apt: true when Debian's apt-get can install system packages here (as root).
as_root_apt() { command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; }

# apt_install PACKAGE...: install Debian packages (as_root_apt must hold).
apt_install() {
  echo "installing $* (apt-get)"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# newest_checkpoint DIR: the most recent DeepSpeech-<epoch>_<step>.ckpt in DIR (the training's
# last one: not DeepSpeech-best.ckpt, DeepSpeech-avg.ckpt or a _weights copy).
newest_checkpoint() {
  ls -t "$1"/DeepSpeech-[0-9]*_[0-9]*.ckpt 2>/dev/null | grep -v '_weights\.ckpt$' | head -n 1 || true
}
