"""Shared test setup: framework environment before mindspore is imported, tiny fixtures."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from src.env import prepare_environment  # noqa: E402  (before numpy and mindspore are imported)

prepare_environment("CPU")


@pytest.fixture(scope="session")
def ms_context():
    import mindspore as ms
    ms.set_context(mode=ms.GRAPH_MODE)
    ms.set_device("CPU")
    return ms


@pytest.fixture(scope="session")
def sample_data(tmp_path_factory):
    """The committed sample archives prepared by data_prep (the quick start's own path)."""
    out = tmp_path_factory.mktemp("sample")
    run(prep_command(os.path.join(REPO, "data_prep", "sample"), out, "--train_subsets",
                     "sample-train", "--val_subsets", "sample-dev", "--test_clean_subsets",
                     "sample-test", "--test_other_subsets"))
    return out


def run(cmd, ok=True, cwd=REPO, **kw):
    """Run a command (from the repo root unless `cwd`); assert its exit status; return the
    CompletedProcess."""
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, **kw)
    if ok and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def prep_command(source_dir, target_dir, *extra):
    """The data_prep command line (python data_prep/librispeech.py ...)."""
    return [sys.executable, os.path.join(REPO, "data_prep", "librispeech.py"), "--source_dir",
            str(source_dir), "--target_dir", str(target_dir), *extra]


def tiny_batch(ms, seed=0, targets=((1, 2, 3), (4, 5, 0)), target_lengths=(3, 2)):
    """Two random spectrograms (2, 1, 161, 40) of 40 and 30 frames with their labels, as Tensors."""
    import numpy as np
    x = np.random.default_rng(seed).standard_normal((2, 1, 161, 40)).astype(np.float32)
    return (ms.Tensor(x), ms.Tensor(np.array([40, 30], np.int32)),
            ms.Tensor(np.array(targets, np.int32)), ms.Tensor(np.array(target_lengths, np.int32)))


def tiny_step(overrides=(), lr=(1e-3, 1e-3), fast_conv=None):
    """(cfg, network, train step in training mode) of a hidden 8 x 1 network."""
    from src.config import load_config
    from src.deepspeech2 import build_network
    from src.train_step import build_optimizer, build_train_step
    cfg = load_config(["--hidden_size=8", "--num_layers=1", *overrides])
    net = build_network(cfg, fast_conv=fast_conv)
    step = build_train_step(net, build_optimizer(net, cfg, list(lr)), cfg, blank=28)
    step.set_train(True)
    return cfg, net, step
