"""Tiny manifest -> train a few steps -> checkpoint -> eval -> export -> verify, as a user runs
it, from a directory outside the repository with relative paths."""
import json
import os
import sys

import numpy as np

from conftest import REPO, run


def head(src, dst, n):
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    dst.write_text("".join(src.read_text().splitlines(keepends=True)[:n]))
    return str(dst)


def edit_distance(a, b):
    """Plain dynamic-programming Levenshtein distance of two sequences (the reference)."""
    d = np.arange(len(b) + 1)
    for i, x in enumerate(a, 1):
        prev, d[0] = d.copy(), i
        for j, y in enumerate(b, 1):
            d[j] = min(prev[j] + 1, d[j - 1] + 1, prev[j - 1] + (x != y))
    return int(d[-1])


def read_pairs(path):
    blocks = [b.splitlines() for b in path.read_text().strip().split("\n\n")]
    return [(b[0], b[1][len("REF: "):], b[2][len("HYP: "):]) for b in blocks]


def test_train_eval_export_verify(sample_data, tmp_path):
    work = tmp_path / "work dir"  # not the repo, and a space in it
    head(sample_data / "libri_train_manifest.csv", work / "a" / "train.csv", 12)
    head(sample_data / "libri_test_clean_manifest.csv", work / "a" / "test.csv", 6)
    head(sample_data / "libri_test_clean_manifest.csv", work / "b" / "test.csv", 3)
    common = ["--hidden_size=16", "--num_layers=1", "--batch_size=4", "--num_parallel_workers=1"]
    proc = run([sys.executable, f"{REPO}/train.py", *common, "--train_manifest=a/train.csv",
                "--val_manifest=a/test.csv", "--epochs=2", "--log_interval=2",
                "--checkpoint_dir=ckpt", "--log_dir=log", "--keep_checkpoint_max=1"], cwd=work)
    assert "log file:" in proc.stderr and "validation: WER" in proc.stderr
    assert sorted(p.name for p in (work / "ckpt").glob("DeepSpeech*")) == [  # rotation spares the best
        "DeepSpeech-2_3.ckpt", "DeepSpeech-best.ckpt", "DeepSpeech-best.json"]
    assert (work / "log" / "learning_curves.png").is_file()
    records = [json.loads(line) for line in (work / "log/metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "loss" in r]
    assert [r["step"] for r in steps] == [2, 3, 4, 6]
    assert all({"epoch", "loss", "lr", "utt_per_s"} <= set(r) for r in steps)
    assert [r["epoch"] for r in records if "val_wer" in r] == [1, 2]
    assert "\r" not in (work / "log/train.log").read_text()

    evaluate = [sys.executable, f"{REPO}/eval.py", "--pretrain_ckpt=ckpt/DeepSpeech-2_3.ckpt",
                "--manifests=a/test.csv,b/test.csv,a/train.csv", "--output_dir=eval",
                "--model.hidden_size=1024"]
    proc = run(evaluate, cwd=work)
    assert "hidden_size=16, num_layers=1" in proc.stdout  # size read from the checkpoint
    summary = json.loads((work / "eval/summary.json").read_text())
    results = summary["results"]
    assert set(results) == {"a/test", "b/test", "train"}  # equal file names kept apart
    assert [results[k]["utterances"] for k in ("a/test", "b/test", "train")] == [6, 3, 12]
    for name, entry in results.items():
        pairs = read_pairs(work / "eval" / entry["pairs_file"])
        assert len(pairs) == entry["utterances"], name
        transcripts = {}
        for line in open(entry["manifest"], encoding="utf-8"):
            audio, txt, _ = line.strip().split(",")
            transcripts[audio] = open(txt, encoding="utf-8").read()
        assert all(transcripts[audio] == ref for audio, ref, _ in pairs)
        words = sum(edit_distance(r.split(), h.split()) for _, r, h in pairs)
        chars = sum(edit_distance(r, h) for _, r, h in pairs)
        assert np.isclose(entry["wer"], 100 * words / sum(len(r.split()) for _, r, _ in pairs))
        assert np.isclose(entry["cer"], 100 * chars / sum(len(r) for _, r, _ in pairs))

    proc = run(evaluate, cwd=work)  # a second eval into the same folder keeps the first one
    moved = [line for line in proc.stdout.splitlines() if "earlier results" in line]
    assert moved, proc.stdout
    previous = moved[0].rsplit(" moved to ", 1)[1]
    assert json.loads(open(os.path.join(previous, "summary.json")).read()) == summary
    assert os.path.isfile(os.path.join(previous, results["b/test"]["pairs_file"]))

    proc = run([sys.executable, f"{REPO}/export.py", "--pre_trained_model_path",
                "ckpt/DeepSpeech-2_3.ckpt", "--verify", "--file_name=out dir/ds2 model",
                "--eval.manifests=a/test.csv"], cwd=work)
    assert (work / "out dir" / "ds2 model.mindir").is_file()
    assert "verify OK" in proc.stdout


def test_onnx_export_loads_in_onnxruntime_and_matches_the_network(ms_context, sample_data,
                                                                  tmp_path):
    ms = ms_context
    import onnxruntime

    from src.config import load_config
    from src.deepspeech2 import InferenceNet, build_network
    from src.features import featurize
    from src.inference import pad_batch

    ms.set_seed(4)
    cfg = load_config(["--hidden_size=32", "--num_layers=2"])
    ms.save_checkpoint(build_network(cfg), str(tmp_path / "net.ckpt"))
    test = head(sample_data / "libri_test_clean_manifest.csv", tmp_path / "test.csv", 2)
    proc = run([sys.executable, f"{REPO}/export.py", f"--checkpoint={tmp_path}/net.ckpt",
                "--file_format=ONNX", "--frames=300", f"--file_name={tmp_path}/ds2 onnx",
                "--verify", f"--eval.manifests={test}"])
    assert "verify OK" in proc.stdout, proc.stdout
    # independently of export.py: another utterance, the plain network of this test
    net = InferenceNet(build_network(cfg, fast_conv=False))
    ms.load_param_into_net(net, ms.load_checkpoint(str(tmp_path / "net.ckpt")))
    net.set_train(False)
    audio = open(test).read().splitlines()[1].split(",")[0]
    spec = featurize(audio, cfg.features)[:, :300]
    x, lengths = pad_batch([spec], 300)
    session = onnxruntime.InferenceSession(str(tmp_path / "ds2 onnx.onnx"))
    got, got_lengths = session.run(None, dict(zip([i.name for i in session.get_inputs()],
                                                  (x, lengths))))
    want, want_lengths = net(ms.Tensor(x), ms.Tensor(lengths))
    np.testing.assert_array_equal(got_lengths, want_lengths.asnumpy())
    np.testing.assert_allclose(got, want.asnumpy(), atol=1e-4)
