"""TensorBoard event files next to metrics.jsonl: the same values at the same global steps, a
resumed run continuing them, and training without tensorboardX."""
import json
import struct
import sys

import pytest

from conftest import REPO, run
from test_end_to_end import head


def read_events(folder):
    """{tag: {step: value}} of the event files in `folder`, oldest first (TFRecords: length
    uint64, its CRC uint32, the Event, its CRC uint32; CRCs not checked)."""
    from tensorboardX.proto.event_pb2 import Event
    scalars = {}
    for path in sorted(folder.glob("events.out.tfevents.*")):
        data, pos = path.read_bytes(), 0
        while pos < len(data):
            (size,) = struct.unpack("<Q", data[pos:pos + 8])
            event = Event.FromString(data[pos + 12:pos + 12 + size])
            pos += 12 + size + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, {})[event.step] = value.simple_value
    return scalars


def test_events_hold_the_metrics_of_a_run_and_its_resumption(sample_data, tmp_path):
    train = head(sample_data / "libri_train_manifest.csv", tmp_path / "train.csv", 8)
    val = head(sample_data / "libri_val_manifest.csv", tmp_path / "val.csv", 4)
    cmd = [sys.executable, f"{REPO}/train.py", "--hidden_size=8", "--num_layers=1",
           "--batch_size=4", f"--train_manifest={train}", f"--val_manifest={val}",
           "--num_parallel_workers=1", "--speed_perturb=false", "--log_interval=1",
           "--checkpoint_dir=ck", "--log_dir=log"]
    run([*cmd, "--epochs=2"], cwd=tmp_path)
    run([*cmd, "--epochs=3", "--resume=auto"], cwd=tmp_path)
    assert len(list((tmp_path / "log").glob("events.out.tfevents.*"))) == 2  # one per start
    records = [json.loads(line) for line in (tmp_path / "log/metrics.jsonl").read_text().splitlines()]
    events = read_events(tmp_path / "log")
    expected = {"loss": "train/loss", "lr": "train/learning_rate", "skipped": "train/skipped_steps",
                "grad_norm": "train/gradient_norm", "utt_per_s": "train/utterances_per_s",
                "val_wer": "validation/wer", "val_cer": "validation/cer"}
    assert set(events) == set(expected.values())
    for key, tag in expected.items():
        want = {r["step"]: r[key] for r in records if r.get(key) is not None}
        assert sorted(events[tag]) == sorted(want), tag  # global steps 1..6, once each
        for step, value in want.items():
            assert events[tag][step] == pytest.approx(value, rel=1e-6, abs=1e-9)
    assert sorted(events["validation/cer"]) == [2, 4, 6]
    assert all(0 < v < 1e6 for v in events["train/gradient_norm"].values())


def test_without_tensorboardx_training_warns_once_and_goes_on(tmp_path, monkeypatch):
    from easydict import EasyDict

    from src.run_metrics import MetricsLog
    monkeypatch.setitem(sys.modules, "tensorboardX", None)  # import fails as if not installed
    cfg = EasyDict(train=EasyDict(log_dir=str(tmp_path), tensorboard=True))
    warned = []
    with MetricsLog.open(cfg, 0, 0, warned.append) as metrics:
        metrics.write({"step": 1, "loss": 2.5})
    assert len(warned) == 1 and "tensorboardX is not installed" in warned[0]
    assert json.loads((tmp_path / "metrics.jsonl").read_text()) == {"step": 1, "loss": 2.5}
    assert not list(tmp_path.glob("events.*"))
