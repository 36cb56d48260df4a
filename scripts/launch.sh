#!/usr/bin/env bash
# The one launcher behind every run_*.sh script (they only choose its first arguments).
# Usage: bash scripts/launch.sh train|eval DEVICE standalone|distribute SCRIPT_NAME [arguments...]
# Launcher options (all scripts): --device_id N, --config FILE, --background, --dry_run, -h.
# Distributed training also takes NUM_DEVICES (devices on this machine) first, and
# --first_device N, --master_addr A, --master_port P, --num_nodes N and --node_rank R (several
# machines: run the same command on each, node_rank 0 being the master at --master_addr),
# --rank_table FILE (Ascend; only when given: an exported RANK_TABLE_FILE is removed from the
# workers' environment, as a stale table would break another run), --mpirun (GPU, one machine).
# Everything else (--key=value) is passed to the python entry point unchanged; python runs in
# the caller's directory, so relative paths mean what they mean there.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

case "${1:-}" in -h|--help) show_usage 2,11 0 ;; esac
[ $# -ge 4 ] || show_usage 2,11
JOB="$1"; DEVICE="$2"; KIND="$3"; NAME="$4"; shift 4
# usage [STATUS]: asked-for help (0) on stdout, a usage error (2, the default) on stderr.
usage() {
  [ "${1:-2}" = 0 ] || exec >&2
  case "$JOB/$KIND" in
    train/standalone) echo "usage: bash scripts/$NAME [PRETRAINED_CKPT] [--device_id N] [--config FILE] [--background] [--dry_run] [--key=value ...]" ;;
    train/distribute) echo "usage: bash scripts/$NAME NUM_DEVICES [PRETRAINED_CKPT] [--first_device N] [--master_addr ADDR] [--master_port PORT] [--num_nodes N --node_rank R] [--config FILE]$([ "$DEVICE" = Ascend ] && echo ' [--rank_table FILE]')$([ "$DEVICE" = GPU ] && echo ' [--mpirun]') [--background] [--dry_run] [--key=value ...]" ;;
    eval/*) echo "usage: bash scripts/$NAME CHECKPOINT [--device_id N] [--config FILE] [--background] [--dry_run] [--key=value ...]" ;;
  esac
  echo "  e.g. bash scripts/$NAME $(example)"
  exit "${1:-2}"
}
example() {
  case "$JOB/$KIND" in
    train/standalone) echo "--epochs=10 --batch_size=16" ;;
    train/distribute) echo "2 --epochs=10" ;;
    eval/*) echo "outputs/checkpoints/DeepSpeech-30_42.ckpt --manifests=test_clean.csv,test_other.csv" ;;
  esac
}

NUM=1; CKPT=""; DEVICE_ID=0; FIRST=0; ADDR=127.0.0.1; PORT=""; CONFIG=""; BACKGROUND=0; DRY=0
NODES=1; NODE_RANK=0
MPIRUN=0; RANK_TABLE=""; PASS=()
if [ "$KIND" = distribute ]; then
  [ $# -ge 1 ] || usage
  case "$1" in -h|--help) usage 0 ;; esac
  [[ "$1" =~ ^[1-9][0-9]*$ ]] || die "NUM_DEVICES must be a positive integer, got '$1'"
  NUM="$1"; shift
fi
if [ "$JOB" = eval ]; then
  [ $# -ge 1 ] || usage
  case "$1" in -h|--help) usage 0 ;; --*) usage ;; esac
  need_file checkpoint "$1"; CKPT="$(abspath "$1")"; shift
elif [ $# -ge 1 ] && [[ "$1" != -* ]]; then
  need_file checkpoint "$1"; CKPT="$(abspath "$1")"; shift
fi
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage 0 ;;
    --device_id|--first_device|--master_addr|--master_port|--config|--rank_table|--num_nodes|--node_rank)
      [ $# -ge 2 ] || die "$1 needs a value"
      case "$1" in
        --device_id) DEVICE_ID="$2" ;; --first_device) FIRST="$2" ;; --master_addr) ADDR="$2" ;;
        --num_nodes) NODES="$2" ;; --node_rank) NODE_RANK="$2" ;;
        --master_port) PORT="$2" ;; --config) need_file config "$2"; CONFIG="$(abspath "$2")" ;;
        --rank_table) need_file "rank table" "$2"; RANK_TABLE="$(abspath "$2")" ;;
      esac
      shift 2 ;;
    --background) BACKGROUND=1; shift ;;
    --dry_run) DRY=1; shift ;;
    --mpirun) [ "$DEVICE" = GPU ] || die "--mpirun is for GPU"; MPIRUN=1; shift ;;
    --*) PASS+=("$1"); shift ;;
    *) die "unexpected argument '$1' (options look like --key=value; see --help)" ;;
  esac
done
[[ "$DEVICE_ID" =~ ^[0-9]+$ ]] || die "--device_id must be a number"
[[ "$FIRST" =~ ^[0-9]+$ ]] || die "--first_device must be a number"
[[ "$NODES" =~ ^[1-9][0-9]*$ ]] || die "--num_nodes must be a positive integer"
[[ "$NODE_RANK" =~ ^[0-9]+$ ]] && [ "$NODE_RANK" -lt "$NODES" ] ||
  die "--node_rank must be a number from 0 to num_nodes - 1 ($((NODES - 1)))"
[ "$KIND" = distribute ] || [ "$NODES" = 1 ] || die "--num_nodes is for distributed training"
[ "$NODES" = 1 ] || [ -n "$PORT" ] || die "--num_nodes needs --master_port (the same on every node)"
NODE_SUFFIX=""; [ "$NODES" = 1 ] || NODE_SUFFIX="_node$NODE_RANK"
[ "$MPIRUN" = 0 ] || [ "$NODES" = 1 ] || die "--mpirun runs on one machine here; use msrun (the default) with --num_nodes"

# msrun's workers run this same interpreter (scripts/msrun_node.py): check it once, up front.
if [ "$KIND" = distribute ]; then check_python; fi
ENTRY="$ROOT/train.py"; [ "$JOB" = eval ] && ENTRY="$ROOT/eval.py"
PY=("$PYTHON" "$ENTRY" --device_target "$DEVICE")
[ -n "$CONFIG" ] && PY+=("--config_path=$CONFIG")
if [ -n "$CKPT" ]; then
  if [ "$JOB" = eval ]; then PY+=("--checkpoint=$CKPT"); else PY+=("--pre_trained_model_path=$CKPT"); fi
fi
ENV=()
if [ "$KIND" = distribute ]; then
  PY+=(--distribute=true)
  [ -n "$PORT" ] || PORT="$("$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  [[ "$PORT" =~ ^[0-9]+$ ]] || die "--master_port must be a number"
  DEVICES="$(seq -s, "$FIRST" $((FIRST + NUM - 1)))"
  case "$DEVICE" in
    GPU) ENV=(CUDA_VISIBLE_DEVICES="$DEVICES") ;;
    Ascend) ENV=(ASCEND_RT_VISIBLE_DEVICES="$DEVICES") ;;
  esac
  WORKER_LOGS="$LOG_DIR/${NAME%.sh}_workers"
  WORKER_LOGS="$WORKER_LOGS$NODE_SUFFIX"
  if [ "$MPIRUN" = 1 ]; then
    # The zoo's route on GPU: OpenMPI starts the workers, init() reads the ranks from it.
    CMD=(mpirun -n "$NUM" --allow-run-as-root --output-filename "$WORKER_LOGS" --merge-stderr-to-stdout "${PY[@]}")
  else
    CMD=("$PYTHON" "$ROOT/scripts/msrun_node.py" --worker_num="$((NUM * NODES))" --local_worker_num="$NUM" --master_addr="$ADDR"
         --master_port="$PORT" --log_dir="$WORKER_LOGS" --join=True)
    [ "$NODES" = 1 ] || CMD+=(--node_rank="$NODE_RANK")
    [ "$DEVICE" = Ascend ] && [ -n "$RANK_TABLE" ] && CMD+=(--rank_table_file="$RANK_TABLE")
    CMD+=("${PY[@]:1}")
  fi
else
  [ "$DEVICE" = CPU ] || PY+=("--device_id=$DEVICE_ID")
  CMD=("${PY[@]}")
fi
CMD+=("${PASS[@]}")
# HCCL reads RANK_TABLE_FILE from the environment: only the table given here may reach it.
[ "$KIND" = distribute ] && [ -n "${RANK_TABLE_FILE:-}" ] && ENV=(-u RANK_TABLE_FILE "${ENV[@]}")
[ ${#ENV[@]} -gt 0 ] && CMD=(env "${ENV[@]}" "${CMD[@]}")

if [ "$DRY" = 1 ]; then
  printf 'dry run:'; printf ' %q' "${CMD[@]}"; printf '\n'
  exit 0
fi
need_venv
if [ "$KIND" = distribute ] && [ "$DEVICE" != CPU ]; then
  # One line naming the reason now, instead of it hiding in worker_0.log behind msrun's trace.
  GLOG_v=3 PYTHONPATH="$ROOT" "$PYTHON" -m src.context "$DEVICE" || exit 2
fi
if [ "$BACKGROUND" = 1 ]; then
  mkdir -p "$LOG_DIR"
  LOG="$LOG_DIR/${NAME%.sh}${NODE_SUFFIX:-}.log"
  # Started from this shell itself, so $! is the process that runs the job (python or msrun;
  # env and nohup exec it): killing that PID stops the run.
  nohup "${CMD[@]}" > "$LOG" 2>&1 < /dev/null &
  echo "started in the background: PID $!, log: $LOG (stop it with: kill $!)"
  exit 0
fi
# msrun copies the workers' logs to the console, with the cluster's "[INFO] DISTRIBUTED" lines,
# which the framework prints whatever GLOG_v says: they stay in the workers' own logs only.
[ "$KIND" = distribute ] && QUIET='^\[INFO\] DISTRIBUTED'
run_logged "${NAME%.sh}${NODE_SUFFIX:-}" "${CMD[@]}"
