"""Train DeepSpeech2.

usage: python train.py [--config_path FILE] [--key=value ...]
  e.g. python train.py --device_target CPU --train.epochs=10 --batch_size=16
       python train.py --pre_trained_model_path outputs/checkpoints/DeepSpeech-5_88.ckpt
       python train.py --check_data      # check the data, print the plan and an epoch estimate
Every key of src/default_config.yaml can be overridden; see docs/training.md. Paths you type
are relative to the current directory.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src.cli import check_output_dir, main  # noqa: E402  (after the path fix above)


def run(cfg):
    from src.context import setup_context
    if cfg.train.check_data:  # reads and times only: no folder is made or written
        from src.data_check import check_data
        return check_data(cfg, *setup_context(cfg))
    check_output_dir(cfg.train.checkpoint_dir, "train.checkpoint_dir")
    check_output_dir(cfg.train.log_dir, "train.log_dir")
    from src.training import run_training
    rank, group_size = setup_context(cfg)
    run_training(cfg, rank, group_size)


if __name__ == "__main__":
    sys.exit(main("train", __doc__, run))
