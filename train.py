"""Train DeepSpeech2.

usage: python train.py [--config_path FILE] [--key=value ...]
  e.g. python train.py --device_target CPU --train.epochs=10 --batch_size=16
       python train.py --pre_trained_model_path outputs/checkpoints/DeepSpeech-5_88.ckpt
Every key of src/default_config.yaml can be overridden; see README.md "Training".
"""
import sys

from src.cli import fail, start


def main():
    cfg = start("train")
    if cfg is None:
        print(__doc__)
        return
    from src.builders import CheckpointError, setup_context
    from src.dataset import ManifestError
    from src.features import AudioError
    from src.training import run_training
    try:
        rank, group_size = setup_context(cfg)
        run_training(cfg, rank, group_size)
    except (CheckpointError, ManifestError, AudioError, FloatingPointError, ValueError) as err:
        fail("train", err)


if __name__ == "__main__":
    sys.exit(main())
