"""export.py's file name, mode and frame checks; feature settings recorded in checkpoints."""
import os
import sys

import pytest

from conftest import REPO, run


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory, ms_context):
    """A hidden-8 network saved as training saves it (with its feature settings)."""
    from src.checkpoints import save_network
    from src.config import load_config
    from src.deepspeech2 import build_network
    cfg = load_config(["--hidden_size=8", "--num_layers=1"])
    path = tmp_path_factory.mktemp("ck") / "DeepSpeech-1_1.ckpt"
    save_network(build_network(cfg), str(path), cfg.features)
    return path


def usual_mode():
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def test_export_keeps_a_given_extension_and_writes_the_usual_mode(tiny_ckpt, tmp_path):
    assert os.stat(tiny_ckpt).st_mode & 0o777 == usual_mode()  # not MindSpore's 0400
    run([sys.executable, f"{REPO}/export.py", f"--checkpoint={tiny_ckpt}",
         f"--file_name={tmp_path}/model.mindir"])
    assert os.listdir(tmp_path) == ["model.mindir"]  # not model.mindir.mindir, no leftovers
    assert os.stat(tmp_path / "model.mindir").st_mode & 0o777 == usual_mode()


@pytest.mark.parametrize("args, said", [
    (["--file_format=ONNX", "--frames=1"], "shorter than one output step of the convolution "
                                           "front-end (31 frames"),
    (["--file_name=/proc/x"], "cannot write to /proc: files cannot be created in this folder"),
    (["--features.window=hann"], "trained on other features than this run's (window=hann): run "
                                 "with the checkpoint's settings: --features.window=hamming"),
    (["--features.sample_rate=8000"], "--features.sample_rate=16000"),
])
def test_export_refusals_are_one_line(tiny_ckpt, tmp_path, args, said):
    proc = run([sys.executable, f"{REPO}/export.py", f"--checkpoint={tiny_ckpt}",
                f"--file_name={tmp_path}/m", *args], ok=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("export.py: error: ") and said in last, last
    assert not any(p.name.startswith("m") for p in tmp_path.iterdir())


def test_eval_refuses_a_checkpoint_trained_on_other_features(tiny_ckpt, tmp_path):
    proc = run([sys.executable, f"{REPO}/eval.py", f"--checkpoint={tiny_ckpt}",
                "--features.window_stride=0.02", f"--output_dir={tmp_path}"], ok=False)
    assert proc.returncode == 1 and "--features.window_stride=0.01" in proc.stderr
    assert "Traceback" not in proc.stderr
