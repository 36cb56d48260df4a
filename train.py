"""Train DeepSpeech2.

usage: python train.py [--config_path FILE] [--key=value ...]
  e.g. python train.py --device_target CPU --train.epochs=10 --batch_size=16
       python train.py --pre_trained_model_path outputs/checkpoints/DeepSpeech-5_88.ckpt
Every key of src/default_config.yaml can be overridden; see docs/training.md. Paths you type
are relative to the current directory.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src.cli import check_output_dir, main  # noqa: E402  (after the path fix above)


def run(cfg):
    check_output_dir(cfg.train.checkpoint_dir, "train.checkpoint_dir")
    check_output_dir(cfg.train.log_dir, "train.log_dir")
    from src.context import setup_context
    from src.training import run_training
    rank, group_size = setup_context(cfg)
    run_training(cfg, rank, group_size)


if __name__ == "__main__":
    sys.exit(main("train", __doc__, run))
