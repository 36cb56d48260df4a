"""Average the weights of several checkpoints into one (as icefall and PaddleSpeech do).

usage: python average_checkpoints.py CKPT CKPT... [--out FILE]
       python average_checkpoints.py --checkpoint_dir DIR (--last N | --best N) [--out FILE]
  e.g. python average_checkpoints.py --checkpoint_dir outputs/checkpoints --last 3
       python average_checkpoints.py --checkpoint_dir outputs/checkpoints --best 3 \
           --metrics outputs/train/metrics.jsonl --metric cer
Every network parameter is the mean over the checkpoints, BatchNorm moving statistics included
(optimizer state is dropped). --last N takes the N newest DeepSpeech-<epoch>_<step>.ckpt of the
run in the folder; --best N the N epoch-end checkpoints with the lowest validation CER (or WER)
in the run's metrics.jsonl (recorded in the folder's run.json; --metrics for another). Writes
a weights-only checkpoint (default: <checkpoint_dir or the first checkpoint's
folder>/DeepSpeech-avg.ckpt) that eval.py, export.py and transcribe.py take like any.
"""
import argparse
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src.cli import tool_main  # noqa: E402  (after the path fix above)
from src.errors import UserError  # noqa: E402


def positive(text):
    """argparse type: an integer >= 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number >= 1, got {text}")
    return value


def metrics_of(ckpt_dir, metrics_path):
    """--metrics, else the metrics.jsonl the run in ckpt_dir recorded (src/run_folder.py)."""
    from src.run_folder import RunFolder
    if not metrics_path:
        recorded = RunFolder.read(ckpt_dir)
        if recorded is None or "metrics" not in recorded.record:
            raise UserError(f"--best: {ckpt_dir} records no run's metrics (written before runs "
                            "were recorded?): give --metrics PATH/metrics.jsonl")
        metrics_path = recorded.record["metrics"]
    if not os.path.isfile(metrics_path):
        raise UserError(f"metrics file not found: {metrics_path} (give --metrics)")
    return metrics_path


def validation_values(metrics_path, metric):
    """{(epoch, global step): val_<metric>} of a metrics.jsonl (lines cut by a kill skipped)."""
    values = {}
    with open(metrics_path, encoding="utf-8", errors="replace") as f:
        for line in f:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if f"val_{metric}" in record:
                values[(record["epoch"], record["step"])] = record[f"val_{metric}"]
    return values


def best_checkpoints(ckpt_dir, metrics_path, metric, n):
    """The n existing epoch-end checkpoints of ckpt_dir's run with the lowest val_<metric>."""
    from src.checkpoints import run_checkpoints
    metrics_path = metrics_of(ckpt_dir, metrics_path)
    values = validation_values(metrics_path, metric)
    scored = []
    for path in run_checkpoints(ckpt_dir):
        epoch, step_in_epoch = map(int, re.search(r"-(\d+)_(\d+)\.ckpt$", path).groups())
        # an epoch-end checkpoint's global step is epoch x steps per epoch = that validation's
        value = values.get((epoch, epoch * step_in_epoch))
        if value is not None:
            scored.append((value, path))
    if len(scored) < n:
        raise UserError(f"--best {n}: only {len(scored)} checkpoints in {ckpt_dir} have a "
                        f"validation {metric.upper()} in {metrics_path}")
    return [path for _, path in sorted(scored)[:n]]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoints", nargs="*", help="checkpoint files to average")
    p.add_argument("--checkpoint_dir", default="", help="folder of DeepSpeech-<e>_<s>.ckpt")
    p.add_argument("--last", type=positive, default=0, help="average the N newest checkpoints")
    p.add_argument("--best", type=positive, default=0, help="average the N best by validation")
    p.add_argument("--metrics", default="",
                   help="metrics.jsonl of the run (--best; default: the one run.json records)")
    p.add_argument("--metric", choices=["cer", "wer"], default="cer")
    p.add_argument("--out", default="", help="output checkpoint")
    a = p.parse_args(argv)
    from src.checkpoints import average_checkpoints, run_checkpoints
    if a.checkpoints and (a.last or a.best):
        raise UserError("give checkpoint files or --checkpoint_dir with --last/--best, not both")
    if a.checkpoints:
        paths = [os.path.abspath(c) for c in a.checkpoints]
    else:
        if not a.checkpoint_dir or bool(a.last) == bool(a.best):
            raise UserError("give checkpoint files, or --checkpoint_dir with one of --last N "
                            "or --best N")
        folder = os.path.abspath(a.checkpoint_dir)
        if not os.path.isdir(folder):
            raise UserError(f"checkpoint folder not found: {folder}")
        if a.last:
            paths = run_checkpoints(folder)[-a.last:]
            if len(paths) < a.last:
                raise UserError(f"--last {a.last}: only {len(paths)} checkpoints in {folder}")
        else:
            paths = best_checkpoints(folder, a.metrics and os.path.abspath(a.metrics), a.metric,
                                     a.best)
    if len(paths) < 2:
        raise UserError("averaging needs at least two checkpoints")
    out = os.path.abspath(a.out) if a.out else os.path.join(
        os.path.abspath(a.checkpoint_dir) if a.checkpoint_dir else os.path.dirname(paths[0]),
        "DeepSpeech-avg.ckpt")
    if any(os.path.realpath(out) == os.path.realpath(path) for path in paths):
        raise UserError(f"--out {out} is one of the checkpoints being averaged: choose another name")
    average_checkpoints(paths, out)
    print("averaged:\n" + "".join(f"  {path}\n" for path in paths) + f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(tool_main("average_checkpoints.py", main))
