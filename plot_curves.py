"""Draw the learning curves of a training run: loss per step, validation WER/CER per epoch.

usage: python plot_curves.py [METRICS.jsonl] [--out FILE.png]
  default: outputs/train/metrics.jsonl -> learning_curves.png next to it (train.py draws the
  same picture when it finishes; this redraws it, e.g. during a run).
"""
import argparse
import os
import sys

REPO = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, REPO)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("metrics", nargs="?",
                   default=os.path.join(REPO, "outputs", "train", "metrics.jsonl"))
    p.add_argument("--out", default="")
    a = p.parse_args(argv)
    from src.curves import plot_curves
    if not os.path.isfile(a.metrics):
        sys.exit(f"plot_curves.py: error: metrics file not found: {a.metrics}")
    out = a.out or os.path.join(os.path.dirname(os.path.abspath(a.metrics)),
                                "learning_curves.png")
    try:
        print(f"learning curves: {plot_curves(a.metrics, out)}")
    except ValueError as err:
        sys.exit(f"plot_curves.py: error: {err}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
