"""Beam search + LM through the entry points: build_lm.py -> tune_lm.py (grid, cache, best) ->
eval.py with the tuned decode.yaml (beam+LM and greedy side by side) -> transcribe.py."""
import csv
import json
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, run
from test_end_to_end import edit_distance, head

pytest.importorskip("pyctcdecode")


@pytest.fixture(scope="module")
def setup(ms_context, sample_data, tmp_path_factory):
    """A tiny random checkpoint, a 3-gram LM of the sample's training transcripts, a dev set of
    4 utterances and 2 unreadable ones (no header; a header but broken frames)."""
    from src.config import load_config
    from src.deepspeech2 import build_network
    root = tmp_path_factory.mktemp("decoding")
    ms_context.set_seed(3)
    cfg = load_config(["--hidden_size=16", "--num_layers=1"])
    ms_context.save_checkpoint(build_network(cfg), str(root / "net.ckpt"))
    head(sample_data / "libri_val_manifest.csv", root / "dev.csv", 4)
    noise = (np.random.default_rng(0).standard_normal(32000) * 3000).astype(np.int16)
    sf.write(root / "broken.flac", noise, 16000)
    data = bytearray((root / "broken.flac").read_bytes())
    data[len(data) // 2:] = b"\xff" * (len(data) - len(data) // 2)
    (root / "broken.flac").write_bytes(bytes(data))
    (root / "garbage.wav").write_bytes(b"not audio at all")
    transcript = (root / "dev.csv").read_text().split(",")[1]
    with open(root / "dev.csv", "a") as f:
        f.write(f"{root / 'broken.flac'},{transcript}\n{root / 'garbage.wav'},{transcript}\n")
    head(sample_data / "libri_test_clean_manifest.csv", root / "test.csv", 5)
    run([sys.executable, f"{REPO}/data_prep/build_lm.py", "--manifests",
         str(sample_data / "libri_train_manifest.csv"), "--out", "lm.arpa"], cwd=root)
    return root


def test_tune_lm_grid_is_cached_and_its_best_pair_drives_eval(setup):
    root = setup
    tune = [sys.executable, f"{REPO}/tune_lm.py", "--checkpoint=net.ckpt", "--manifest=dev.csv",
            "--decode.lm_path=lm.arpa", "--decode.beam_width=8", "--alpha_from=0",
            "--alpha_to=2", "--alpha_steps=2", "--beta_from=0", "--beta_to=1", "--beta_steps=2",
            "--output_dir=tuned", "--num_parallel_workers=2", "--decode.hotwords=[mister]"]
    first = run(tune, cwd=root)
    assert "network outputs of 4 utterances cached" in first.stdout
    assert "skipped: 2 unreadable audio" in first.stderr  # counted, and each file named
    assert f"{root}/broken.flac" in first.stderr and f"{root}/garbage.wav" in first.stderr
    with open(root / "tuned" / "grid.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(float(r["alpha"]), float(r["beta"])) for r in rows] == [
        (0, 0), (0, 1), (2, 0), (2, 1)]
    best = json.loads((root / "tuned" / "best.json").read_text())
    lowest = min(rows, key=lambda r: (float(r["wer"]), float(r["cer"])))
    assert best["wer"] == pytest.approx(float(lowest["wer"]), abs=1e-3)
    assert best["utterances"] == 4 and best["beam_width"] == 8
    # a 2 x 2 grid: the best pair is on its edge, said with the range to widen (alpha >= 0)
    wider = [{2.0: "--alpha_to=4"}.get(best["alpha"]),
             {0.0: "--beta_from=-1", 1.0: "--beta_to=2"}[best["beta"]]]
    assert f"try a wider range, e.g. {' '.join(w for w in wider if w)}\n" in first.stdout

    second = run(tune, cwd=root)  # the network does not run again: same figures
    assert "(cached)" in second.stdout and "network outputs of" not in second.stdout
    with open(root / "tuned" / "grid.csv") as f:
        assert list(csv.DictReader(f)) == rows

    run([sys.executable, f"{REPO}/eval.py", "--checkpoint=net.ckpt", "--manifests=test.csv",
         "--config_path=tuned/decode.yaml", "--output_dir=ev"], cwd=root)
    summary = json.loads((root / "ev" / "summary.json").read_text())
    assert summary["decoder"] == {"method": "beam", "beam_width": 8,
                                  "lm_path": str(root / "lm.arpa"), "alpha": best["alpha"],
                                  "beta": best["beta"], "hotwords": ["MISTER"],
                                  "hotword_weight": 10.0}
    result = summary["results"]["test"]
    assert list(result["decoders"]) == ["beam+lm", "greedy"]
    blocks = [b.splitlines() for b in (root / "ev" / "test.txt").read_text().strip().split("\n\n")]
    assert len(blocks) == 5
    refs = [b[1][len("REF: "):] for b in blocks]
    for name, hyps in (("beam+lm", [b[2][len("HYP: "):] for b in blocks]),
                       ("greedy", [b[3][len("HYP (greedy): "):] for b in blocks])):
        words = sum(edit_distance(r.split(), h.split()) for r, h in zip(refs, hyps))
        assert np.isclose(result["decoders"][name]["wer"],
                          100 * words / sum(len(r.split()) for r in refs)), name
    assert result["wer"] == result["decoders"]["beam+lm"]["wer"]


def test_transcribe_with_beam_and_lm_gives_words_with_times(setup, sample_data):
    root = setup
    wav = sorted((sample_data / "test_clean" / "wav").iterdir())[0]
    common = [sys.executable, f"{REPO}/transcribe.py", "--checkpoint=net.ckpt", str(wav),
              "--format=json", "--decode.beam_width=8"]
    beam = json.loads(run([*common, "--decode.method=beam", "--decode.lm_path=lm.arpa",
                           "--decode.alpha=2", "--decode.beta=1"], cwd=root).stdout)
    assert beam["text"] == " ".join(w["word"] for w in beam["words"])
    times = [t for w in beam["words"] for t in (w["start"], w["end"])]
    assert times == sorted(times) and all(0 <= t <= beam["duration"] + 0.02 for t in times)
    assert all(0 < w["confidence"] <= 1 for w in beam["words"])
    greedy = json.loads(run(common, cwd=root).stdout)
    plain_beam = json.loads(run([*common, "--decode.method=beam", "--decode.beam_width=1"],
                                cwd=root).stdout)
    assert plain_beam["text"] == greedy["text"]
