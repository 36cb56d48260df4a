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
    run([sys.executable, "data_prep/librispeech.py", "--source_dir", "data_prep/sample",
         "--target_dir", str(out), "--train_subsets", "sample-train", "--val_subsets",
         "sample-dev", "--test_clean_subsets", "sample-test", "--test_other_subsets"])
    return out


def run(cmd, ok=True, **kw):
    """Run a command from the repo root; assert its exit status; return the CompletedProcess."""
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, **kw)
    if ok and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc
