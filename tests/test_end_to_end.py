"""Tiny manifest -> train a few steps -> checkpoint -> eval -> export -> verify, as a user runs it."""
import json
import sys

from conftest import run


def head(src, dst, n):
    dst.write_text("".join(src.read_text().splitlines(keepends=True)[:n]))
    return str(dst)


def test_train_eval_export_verify(sample_data, tmp_path):
    train = head(sample_data / "libri_train_manifest.csv", tmp_path / "train.csv", 12)
    test = head(sample_data / "libri_test_clean_manifest.csv", tmp_path / "test.csv", 6)
    common = ["--hidden_size=16", "--num_layers=1", "--batch_size=4", "--num_parallel_workers=1"]
    ckpt_dir = tmp_path / "ckpt"
    proc = run([sys.executable, "train.py", *common, f"--train_manifest={train}",
                f"--val_manifest={test}", "--epochs=2", "--log_interval=2",
                f"--checkpoint_dir={ckpt_dir}", f"--log_dir={tmp_path / 'log'}",
                "--keep_checkpoint_max=1"])
    assert "log file:" in proc.stderr and "validation: WER" in proc.stderr
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["DeepSpeech-2_3.ckpt"]  # keep_max 1
    records = [json.loads(line) for line in (tmp_path / "log/metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [2, 3, 4, 6]
    assert all({"epoch", "loss", "lr", "utt_per_s"} <= set(r) for r in steps)
    assert [r["epoch"] for r in records if "val_wer" in r] == [1, 2]

    ckpt = str(ckpt_dir / "DeepSpeech-2_3.ckpt")
    proc = run([sys.executable, "eval.py", f"--pretrain_ckpt={ckpt}", f"--manifests={test},{train}",
                f"--output_dir={tmp_path / 'eval'}", "--model.hidden_size=1024"])
    assert "hidden_size=16, num_layers=1" in proc.stdout  # size read from the checkpoint
    summary = json.loads((tmp_path / "eval/summary.json").read_text())
    assert set(summary) == {"test", "train"}
    assert summary["test"]["utterances"] == 6 and summary["train"]["utterances"] == 12
    assert 0 <= summary["test"]["cer"] and summary["test"]["wer"] >= 0
    pairs = (tmp_path / "eval/test.txt").read_text()
    assert pairs.count("REF: ") == 6 and pairs.count("HYP: ") == 6

    proc = run([sys.executable, "export.py", f"--pre_trained_model_path={ckpt}", "--verify",
                f"--file_name={tmp_path / 'ds2'}", f"--eval.manifests={test}"])
    assert (tmp_path / "ds2.mindir").is_file()
    assert "verify OK" in proc.stdout
