"""Average the weights of several checkpoints into one (as icefall and PaddleSpeech do).

usage: python average_checkpoints.py CKPT CKPT... [--out FILE]
       python average_checkpoints.py --checkpoint_dir DIR (--last N | --best N) [--out FILE]
  e.g. python average_checkpoints.py --checkpoint_dir outputs/checkpoints --last 3
       python average_checkpoints.py --checkpoint_dir outputs/checkpoints --best 3 \
           --metrics outputs/train/metrics.jsonl --metric cer
Every network parameter is the mean over the checkpoints, BatchNorm moving statistics included
(optimizer state is dropped). --last N takes the N newest DeepSpeech-<epoch>_<step>.ckpt of the
folder; --best N the N epoch-end checkpoints with the lowest validation CER (or WER) in
metrics.jsonl. Writes a weights-only checkpoint (default: <checkpoint_dir or the first
checkpoint's folder>/DeepSpeech-avg.ckpt) that eval.py, export.py and transcribe.py take like any.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src.cli import tool_main  # noqa: E402  (after the path fix above)
from src.errors import UserError  # noqa: E402


def best_checkpoints(ckpt_dir, metrics_path, metric, n):
    """The n existing epoch-end checkpoints of ckpt_dir with the lowest val_<metric>."""
    from src.checkpoints import list_checkpoints
    if not os.path.isfile(metrics_path):
        raise UserError(f"metrics file not found: {metrics_path} (give --metrics)")
    values = {}  # (epoch, global step) of each validation -> its value
    with open(metrics_path, encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if f"val_{metric}" in record:
                values[(record["epoch"], record["step"])] = record[f"val_{metric}"]
    scored = []
    for (epoch, step_in_epoch), path in list_checkpoints(ckpt_dir):
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
    p.add_argument("--last", type=int, default=0, help="average the N newest checkpoints")
    p.add_argument("--best", type=int, default=0, help="average the N best by validation")
    p.add_argument("--metrics", default="", help="metrics.jsonl of the run (--best)")
    p.add_argument("--metric", choices=["cer", "wer"], default="cer")
    p.add_argument("--out", default="", help="output checkpoint")
    a = p.parse_args(argv)
    from src.checkpoints import average_checkpoints, list_checkpoints
    if a.checkpoints and (a.last or a.best):
        raise UserError("give checkpoint files or --checkpoint_dir with --last/--best, not both")
    if a.checkpoints:
        paths = [os.path.abspath(c) for c in a.checkpoints]
    else:
        if not a.checkpoint_dir or bool(a.last) == bool(a.best):
            raise UserError("give checkpoint files, or --checkpoint_dir with one of --last N "
                            "or --best N")
        folder = os.path.abspath(a.checkpoint_dir)
        if a.last:
            paths = [path for _, path in list_checkpoints(folder)][-a.last:]
            if len(paths) < a.last:
                raise UserError(f"--last {a.last}: only {len(paths)} checkpoints in {folder}")
        else:
            paths = best_checkpoints(folder, os.path.abspath(a.metrics), a.metric, a.best)
    if len(paths) < 2:
        raise UserError("averaging needs at least two checkpoints")
    out = os.path.abspath(a.out) if a.out else os.path.join(
        os.path.abspath(a.checkpoint_dir) if a.checkpoint_dir else os.path.dirname(paths[0]),
        "DeepSpeech-avg.ckpt")
    average_checkpoints(paths, out)
    print("averaged:\n" + "".join(f"  {path}\n" for path in paths) + f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(tool_main("average_checkpoints.py", main))
