"""train.py --check_data: every problem counted with examples, the plan, an estimate, the exit
status, and nothing written."""
import os
import sys

import numpy as np
import soundfile as sf

from conftest import run

TINY = ["--hidden_size=8", "--num_layers=1", "--val_manifest=", "--max_duration=3"]


def corpus(root, rows):
    """Audio and transcripts of `rows` [(name, seconds or bytes, text, manifest duration or
    None)]; returns the CSV manifest (wav, txt[, duration]) with them in order."""
    rng = np.random.default_rng(0)
    lines = []
    for name, audio, text, duration in rows:
        wav, txt = root / f"{name}.wav", root / f"{name}.txt"
        if isinstance(audio, bytes):
            wav.write_bytes(audio)
        elif not wav.exists():
            sf.write(wav, (rng.standard_normal(int(audio * 16000)) * 3000).astype(np.int16), 16000)
        txt.write_text(text, encoding="utf-8")
        lines.append(f"{wav},{txt}" + ("" if duration is None else f",{duration}"))
    manifest = root / "m.csv"
    manifest.write_text("\n".join(lines) + "\n")
    return manifest


def check(tmp_path, manifest, ok=True, *extra):
    proc = run([sys.executable, "train.py", "--check_data", f"--train_manifest={manifest}",
                f"--checkpoint_dir={tmp_path}/ck", f"--log_dir={tmp_path}/log", *TINY, *extra],
               ok=ok)
    assert not (tmp_path / "ck").exists() and not (tmp_path / "log").exists()  # nothing written
    return proc


def test_every_problem_is_counted_with_its_first_example(tmp_path):
    good = [(f"g{i}", 1.0 + 0.1 * i, "HELLO WORLD", 1.0 + 0.1 * i) for i in range(6)]
    manifest = corpus(tmp_path, good + [
        ("garbage", b"RIFF garbage", "HELLO", 1.0),
        ("silent", 0.0, "HELLO", 0.0),
        ("long", 4.0, "HELLO", 4.0),
        ("ctc", 0.3, "A TRANSCRIPT FAR TOO LONG FOR A THIRD OF A SECOND OF AUDIO", 0.3),
        ("accent", 1.0, "CAFÉ", 1.0),
        ("blank", 1.0, "  ", 1.0),
        ("wrong", 2.0, "HELLO", 1.0),  # the manifest says 1 s: 2 s would not fit its batch
    ] + [good[0]])  # a duplicate row
    proc = check(tmp_path, manifest, False)
    out = proc.stdout
    for line in ("unreadable audio: 1", "empty audio: 1", "longer than max_duration: 1",
                 "transcript too long for the audio (CTC): 1", "empty transcript: 1",
                 "characters outside labels.json: 1 (training stops at the first)",
                 "audio longer than its manifest duration: 1", "duplicate audio path: 1"):
        assert line in out, line
    assert "garbage.wav" in out and "accent.txt" in out and "m.csv:14" in out  # examples
    assert "14 rows, 8 usable" in out and "batch plan: " in out
    assert "epoch time estimate: " in out
    assert "training would stop at: characters outside labels.json (exit status 1)" in out
    assert proc.returncode == 1
    dropped = check(tmp_path, manifest, True, "--unknown_chars=drop")  # the same, usable
    assert "characters dropped (not in labels.json): 1 (removed from their transcripts)" \
        in dropped.stdout
    assert "training can start with 9 utterances" in dropped.stdout


def test_a_manifest_with_nothing_usable_exits_1(tmp_path):
    manifest = corpus(tmp_path, [("garbage", b"RIFF garbage", "HELLO", 1.0),
                                 ("long", 4.0, "HELLO", None)])
    proc = check(tmp_path, manifest, False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "2 rows, 0 usable" in proc.stdout and "batch plan" not in proc.stdout
    assert "nothing in the train manifest is usable (exit status 1)" in proc.stdout


def test_a_good_manifest_prints_the_plan_and_an_estimate_and_exits_0(tmp_path):
    manifest = corpus(tmp_path, [(f"g{i}", 0.5 + 0.2 * i, "HELLO WORLD", None) for i in range(9)])
    proc = check(tmp_path, manifest, True, "--batch_size=2", "--num_buckets=2",
                 "--speed_perturb=false")
    out = proc.stdout
    assert "9 rows, 9 usable" in out and "no problem found" in out
    assert "batch plan: 5 batches of 2 per epoch (5 optimizer steps), padded lengths" in out
    assert "one training step (hidden 8 x 1, batch 2 x " in out
    assert "training can start with 9 utterances (problems: none) (exit status 0)" in out


def test_the_train_scripts_pass_it_through_with_its_exit_status(tmp_path):
    from test_scripts import dry, script
    words = dry("run_distribute_train_cpu.sh", "2", "--check_data")
    assert words[-2:] == ["--distribute=true", "--check_data"]
    manifest = corpus(tmp_path, [("garbage", b"RIFF garbage", "HELLO", 1.0)])
    proc = script("run_standalone_train_cpu.sh", "--check_data", f"--train_manifest={manifest}",
                  *TINY, env=dict(os.environ, LOG_DIR=str(tmp_path / "logs")))
    assert proc.returncode == 1
    assert "nothing in the train manifest is usable (exit status 1)" in proc.stdout
