"""A run owns its folders: refusals, the lock, rotation and resume limited to the run's files,
metrics lines cut by a kill."""
import json
import logging
import subprocess
import sys
import time

import pytest

from conftest import REPO, run
from test_end_to_end import head


def test_a_new_run_is_refused_where_another_run_left_checkpoints_or_metrics(tmp_path):
    from src.run_folder import RunFolder, RunFolderError
    ck, log = tmp_path / "ck", tmp_path / "log"
    first = RunFolder.claim(str(ck), str(log), continuing=False)
    (ck / "DeepSpeech-1_5.ckpt").write_bytes(b"x")
    first.add(str(ck / "DeepSpeech-1_5.ckpt"))
    del first  # the lock goes with the file handles
    with pytest.raises(RunFolderError, match="already holds another run .*--resume=auto"):
        RunFolder.claim(str(ck), str(log), continuing=False)
    fresh_ck = tmp_path / "ck2"
    (log / "metrics.jsonl").write_text('{"step": 1}\n')
    with pytest.raises(RunFolderError, match="metrics.jsonl"):
        RunFolder.claim(str(fresh_ck), str(log), continuing=False)
    again = RunFolder.claim(str(ck), str(log), continuing=True)
    assert again.checkpoints == [str(ck / "DeepSpeech-1_5.ckpt")]  # the same run, continued


def test_a_second_run_at_the_same_time_is_refused_naming_the_holder(tmp_path):
    from src.run_folder import RunFolder, RunFolderError
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]);"
         "from src.run_folder import RunFolder; f = RunFolder.claim(sys.argv[2], sys.argv[3], "
         "True); print('held', flush=True); time.sleep(60)", REPO, str(tmp_path / "ck"),
         str(tmp_path / "log")], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(RunFolderError, match=f"in use by another training run .PID {holder.pid}"):
            RunFolder.claim(str(tmp_path / "other"), str(tmp_path / "log"), continuing=True)
    finally:
        holder.kill()
        holder.wait()
    RunFolder.claim(str(tmp_path / "ck"), str(tmp_path / "log"), continuing=True)  # freed by kill


def test_rotation_removes_only_the_runs_own_checkpoints(tmp_path):
    from src.run_folder import RunFolder
    ck = tmp_path / "ck"
    ck.mkdir()
    foreign = ck / "DeepSpeech-9_99.ckpt"  # e.g. copied in by hand: not this run's
    foreign.write_bytes(b"keep me")
    folder = RunFolder.claim(str(ck), str(tmp_path / "log"), continuing=True)
    assert folder.checkpoints == []  # nothing adopted unless given as the run's
    names = [f"DeepSpeech-{e}_1.ckpt" for e in (1, 2, 3)]
    stale = []
    for name in names:
        folder.add(str(ck / name))
        stale += folder.stale(2)
    assert stale == [str(ck / names[0])]
    assert json.loads((ck / "run.json").read_text())["checkpoints"] == names[1:]
    assert foreign.read_bytes() == b"keep me"


def test_a_metrics_line_cut_by_a_kill_is_dropped_with_a_warning(tmp_path, caplog):
    from src.training import truncate_metrics
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.5}\n{"step": 3, "lo')
    with caplog.at_level(logging.WARNING):
        truncate_metrics(str(path), 5, logging.getLogger("t"))
    assert path.read_text() == '{"step": 1, "loss": 3.0}\n{"step": 2, "loss": 2.5}\n'
    assert "dropped 1 line(s)" in caplog.text
    truncate_metrics(str(path), 1, logging.getLogger("t"))
    assert path.read_text() == '{"step": 1, "loss": 3.0}\n'


def train_cmd(sample_data, tmp_path, *extra):
    """train.py of a tiny network on 8 sample utterances (2 steps per epoch), no validation."""
    train = head(sample_data / "libri_train_manifest.csv", tmp_path / "train.csv", 8)
    return [sys.executable, f"{REPO}/train.py", "--hidden_size=8", "--num_layers=1",
            "--batch_size=4", f"--train_manifest={train}", "--val_manifest=",
            "--num_parallel_workers=1", "--speed_perturb=false", *extra]


def test_a_second_training_run_never_touches_the_first_runs_checkpoints(sample_data, tmp_path):
    """The issue's case: 2 epochs with keep_checkpoint_max=2 into X, then another run into X."""
    cmd = train_cmd(sample_data, tmp_path, "--checkpoint_dir=X", "--log_dir=X/log",
                    "--keep_checkpoint_max=2")
    run([*cmd, "--epochs=3"], cwd=tmp_path)
    first = {p.name: p.read_bytes() for p in (tmp_path / "X").glob("DeepSpeech*")}
    assert sorted(first) == ["DeepSpeech-2_2.ckpt", "DeepSpeech-3_2.ckpt"]
    metrics = (tmp_path / "X/log/metrics.jsonl").read_text()

    proc = run([*cmd, "--epochs=1"], ok=False, cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("train.py: error: ")
    assert "already holds another run" in proc.stderr and "--resume=auto" in proc.stderr
    assert {p.name: p.read_bytes() for p in (tmp_path / "X").glob("DeepSpeech*")} == first
    assert (tmp_path / "X/log/metrics.jsonl").read_text() == metrics

    proc = run([*cmd, "--epochs=4", "--resume=auto"], cwd=tmp_path)
    assert "DeepSpeech-3_2.ckpt at step 6" in proc.stderr
    assert sorted(p.name for p in (tmp_path / "X").glob("DeepSpeech*")) == [
        "DeepSpeech-3_2.ckpt", "DeepSpeech-4_2.ckpt"]


def test_a_concurrent_training_run_on_the_same_folders_is_refused(sample_data, tmp_path):
    cmd = train_cmd(sample_data, tmp_path, "--checkpoint_dir=ck", "--log_dir=log", "--epochs=50")
    first = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "ck" / "run.json").exists():
            assert first.poll() is None and time.time() < deadline
            time.sleep(0.05)
        proc = run([*cmd, "--resume=auto"], ok=False, cwd=tmp_path)
        assert proc.returncode == 1 and "Traceback" not in proc.stderr
        assert f"in use by another training run (PID {first.pid})" in proc.stderr
    finally:
        first.kill()
        first.wait()
