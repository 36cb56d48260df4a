"""Fault tolerance: kill -9 mid-run and resume; kill during a checkpoint save."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import soundfile as sf

from conftest import REPO, run, tiny_batch, tiny_step
from test_end_to_end import head


def train_cmd(train, out, *extra):
    return [sys.executable, "train.py", "--hidden_size=48", "--num_layers=1", "--batch_size=2",
            "--epochs=3", "--num_parallel_workers=1", f"--train_manifest={train}",
            "--val_manifest=", "--save_checkpoint_steps=2", "--log_interval=1",
            "--keep_checkpoint_max=3", f"--checkpoint_dir={out}/ckpt", f"--log_dir={out}/log",
            *extra]


def steps(out):
    lines = (out / "log/metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["step"] for line in lines]


def test_kill_9_and_resume_matches_uninterrupted_run(ms_context, sample_data, tmp_path):
    """With every augmentation on (SoX speed from epoch 2, the one the kill falls in; gain,
    noise, SpecAugment) and 2 batches per optimizer step: the resumed run must draw the
    uninterrupted run's augmentations, and the steps and lr schedule count optimizer steps."""
    from src.lr_generator import get_lr
    train = head(sample_data / "libri_train_manifest.csv", tmp_path / "train.csv", 10)
    (tmp_path / "noise").mkdir()
    hum = np.sin(np.arange(6000) * 0.05) * 8000
    sf.write(tmp_path / "noise/hum.wav", hum.astype(np.int16), 16000)
    ref, crash = tmp_path / "ref", tmp_path / "crash"
    augmented = ["--spec_augment=true", "--speed_perturb=true", "--speed_perturb_from_epoch=2",
                 "--gain_perturb=true", f"--noise_dir={tmp_path / 'noise'}", "--accumulate_steps=2"]
    run(train_cmd(train, ref, *augmented))
    final = "DeepSpeech-3_3.ckpt"  # 10 utterances / 2 = 5 batches = 3 optimizer steps per epoch
    assert (ref / "ckpt" / final).is_file()

    proc = subprocess.Popen(train_cmd(train, crash, *augmented), cwd=REPO,
                            stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not (crash / "ckpt/DeepSpeech-2_1.ckpt").exists():  # step 4 of 9 is saved
        assert proc.poll() is None and time.time() < deadline, "run ended before the kill"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (crash / "ckpt" / final).exists(), "killed too late to test anything"
    proc = run(train_cmd(train, crash, "--resume=auto", *augmented))
    assert "resumed from" in proc.stderr

    assert steps(crash) == steps(ref) == list(range(1, 10))  # nothing lost, nothing twice
    lr = get_lr(1e-3, 3, 3, warmup_steps=50, hold_epochs=8)
    logged = [json.loads(line)["lr"] for line in (crash / "log/metrics.jsonl").read_text()
              .splitlines()]
    np.testing.assert_allclose(logged, lr, rtol=1e-6)
    a = ms_context.load_checkpoint(str(ref / "ckpt" / final))
    b = ms_context.load_checkpoint(str(crash / "ckpt" / final))
    for name in a:
        if name.startswith(("moment", "conv.", "RNN.", "fc.")):
            np.testing.assert_allclose(b[name].asnumpy(), a[name].asnumpy(), rtol=1e-4,
                                       atol=1e-6, err_msg=name)
    assert int(b["global_step"].asnumpy().reshape(-1)[0]) == 9


SAVER = """
import os, sys, time
sys.path.insert(0, {repo!r})
os.environ.setdefault("ONEDNN_MAX_CPU_ISA", "AVX2")
import mindspore as ms
from src.config import load_config
from src.deepspeech2 import build_network
from src.checkpoints import save_checkpoint
from src.train_step import build_optimizer, build_train_step
import numpy as np
cfg = load_config(["--hidden_size=1024", "--num_layers=5"])
net = build_network(cfg)
step = build_train_step(net, build_optimizer(net, cfg, np.full(10, 1e-4, np.float32)), cfg, 28)
save_checkpoint(step, net, {ckpt!r}, 1, 1, 1, False)
print("first saved", flush=True)
save_checkpoint(step, net, {ckpt!r}, 1, 2, 2, False)
"""


def test_kill_during_save_keeps_the_previous_checkpoint(ms_context, tmp_path):
    from src.checkpoints import find_resume_checkpoint
    ckpt = tmp_path / "ckpt"
    proc = subprocess.Popen([sys.executable, "-c", SAVER.format(repo=REPO, ckpt=str(ckpt))],
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "first saved"
    deadline = time.time() + 120
    while not any(p.name.startswith(".DeepSpeech-1_2") for p in ckpt.iterdir()):
        assert proc.poll() is None and time.time() < deadline, "second save ended too soon"
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (ckpt / "DeepSpeech-1_2.ckpt").exists()
    chosen = find_resume_checkpoint("auto", str(ckpt), print)
    assert chosen == str(ckpt / "DeepSpeech-1_1.ckpt")
    params = ms_context.load_checkpoint(chosen)
    assert int(params["step_num"].asnumpy()) == 1 and params["fc.module.weight"].shape == (29, 1024)
    assert os.path.getsize(chosen) > 3 * 330 * 2**20 * 0.9  # weights + two Adam moments


def test_non_finite_step_is_skipped_and_repeated_ones_stop_the_run(ms_context):
    ms = ms_context
    import logging

    import pytest

    from src.lr_generator import get_lr
    from src.training import BadStepGuard

    _, _, step = tiny_step(lr=get_lr(1e-3, 1, 10))
    x, *batch = tiny_batch(ms, targets=((1, 2), (3, 0)), target_lengths=(2, 1))
    x = x.asnumpy()

    def snapshot():
        return {p.name: p.asnumpy().copy() for p in step.get_parameters()}

    before = snapshot()
    bad = x.copy()
    bad[1, 0, 5, 7] = np.nan
    loss, ok, _ = step(ms.Tensor(bad), *batch)
    assert not bool(ok.asnumpy()) and not np.isfinite(float(loss.asnumpy()))
    after = snapshot()
    assert all(np.array_equal(before[k], after[k], equal_nan=True) for k in before if
               "moving" not in k)  # no weight, moment or step counter moved
    loss, ok, norm = step(ms.Tensor(x), *batch)
    assert bool(ok.asnumpy()) and float(norm.asnumpy()) > 0
    assert not np.array_equal(snapshot()["fc.module.weight"], before["fc.module.weight"])

    guard = BadStepGuard(3, logging.getLogger("test"))
    guard.update(False, 1, list)
    guard.update(True, 2, list)
    guard.update(False, 3, list)
    guard.update(False, 4, list)
    from src.training import TrainingDiverged
    with pytest.raises(TrainingDiverged, match="3 consecutive steps.*learning rate"):
        guard.update(False, 5, list)
    assert guard.total == 4


def test_a_cpu_checkpoint_resumes_into_the_loss_scaled_step_with_fresh_scale_state(ms_context,
                                                                                 tmp_path):
    ms = ms_context
    from src.checkpoints import restore, save_checkpoint
    from src.train_step import INIT_LOSS_SCALE

    cfg, net, step = tiny_step()  # CPU default: unscaled
    step(*tiny_batch(ms))
    path = save_checkpoint(step, net, str(tmp_path), 1, 1, 1, False)
    _, net2, scaled = tiny_step(["--loss_scale=dynamic"])  # what GPU/Ascend build by default
    said = []
    assert restore(scaled, path, said.append) == 1
    assert len(said) == 1 and "loss scale starts fresh (loss_scale, loss_scale_counter)" in said[0]
    assert float(scaled.loss_scale.asnumpy()) == INIT_LOSS_SCALE
    saved = ms.load_checkpoint(path)
    for p in net2.trainable_params():
        np.testing.assert_array_equal(p.asnumpy(), saved[p.name].asnumpy(), err_msg=p.name)
    moments = [p for p in scaled.get_parameters() if p.name.startswith("moment1.")]
    assert moments and all(np.array_equal(p.asnumpy(), saved[p.name].asnumpy()) for p in moments)
    # and a scaled step's own checkpoint keeps its scale state
    scaled(*tiny_batch(ms))
    again = save_checkpoint(scaled, net2, str(tmp_path / "scaled"), 1, 2, 2, False)
    assert {"loss_scale", "loss_scale_counter"} <= set(ms.load_checkpoint(again))
