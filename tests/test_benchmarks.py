"""The training-step benchmark runs the repo's own step and reports consistent figures."""
import json
import os
import sys

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, run


def test_train_step_benchmark_prints_one_consistent_json_line():
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}  # as a user's shell
    proc = run([sys.executable, "benchmarks/train_step.py", "--hidden", "16", "--layers", "2",
                "--batch", "2", "--frames", "120", "--steps", "2", "--parts"], env=env)
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["framework"] == "mindspore" and out["fast_conv"] is True
    assert (out["hidden"], out["layers"], out["batch"], out["frames"]) == (16, 2, 2, 120)
    assert len(out["step_s_all"]) == 2
    assert abs(out["frames_per_s"] - 2 * 120 / out["step_s_median"]) < 1e-6 * out["frames_per_s"]
    assert set(out["parts_fwd_bwd_s"]) == {"conv_front_end", "lstm_layer_0", "lstm_layer_1"}
    assert out["onednn_max_cpu_isa"] != "AVX2"  # the fast path leaves oneDNN uncapped
    assert out["peak_rss_mb"] > 100 and out["loss"] > 0 and out["mode"] == "train"


def test_inference_benchmark_times_the_eval_pass_with_the_references_fields():
    proc = run([sys.executable, "benchmarks/train_step.py", "--infer", "--hidden", "16",
                "--layers", "1", "--batch", "1", "--frames", "300", "--steps", "2"])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    reference_fields = {"framework", "version", "hidden", "layers", "batch", "frames", "threads",
                        "mode", "params", "first_step_s", "step_s_median", "step_s_all",
                        "frames_per_s", "loss"}
    assert reference_fields <= set(out) and out["mode"] == "infer"
    assert out["loss"] < 0  # the mean of log-probabilities, as the reference's --infer reports
    assert abs(out["frames_per_s"] - 300 / out["step_s_median"]) < 1e-6 * out["frames_per_s"]


def test_data_prep_benchmark_reports_consistent_medians_of_both_routes():
    proc = run([sys.executable, "benchmarks/data_prep_speed.py", "--files", "12", "--concat", "1",
                "--workers", "2", "--rounds", "2"])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["files"] == 12 and out["rounds"] == 2
    rounds = out["rounds_s"]
    assert all(len(v) == 2 for v in rounds.values())
    # the whole field route includes its conversion, round by round
    assert all(f >= c for f, c in zip(rounds["field"], rounds["field_convert"]))
    med = {k: sorted(v)[0] / 2 + sorted(v)[1] / 2 for k, v in rounds.items()}
    assert abs(out["ours_s"] - med["ours"]) <= 0.01
    # the speedup comes from unrounded times, the rounds are printed to 0.01 s: the true ratio
    # lies within what that rounding allows (wide for the field route's ~0.1 s here)
    low = (med["field"] - 0.005) / (med["ours"] + 0.005)
    high = (med["field"] + 0.005) / (med["ours"] - 0.005)
    assert low - 0.005 <= out["speedup"] <= high + 0.005
    hours = out["audio_hours"]
    assert 11 * 2.0 / 3600 < hours < 12 * 4.0 / 3600  # 12 sample utterances of 2-4 s
    rate = hours / med["ours"] * 60  # from rounded seconds: a few % off
    assert abs(out["ours_hours_per_min"] - rate) <= 0.05 * rate + 0.01


def test_torch_comparison_takes_ratios_within_rounds_and_reads_each_peak_rss(tmp_path):
    """A stand-in reference (no torch here) with known throughput and memory: 2 rounds."""
    fake = tmp_path / "reference.py"
    fake.write_text(
        "import json, sys\n"
        "block = bytearray(300 * 2**20)  # touched: ~300 MiB of peak RSS\n"
        "for i in range(0, len(block), 4096):\n"
        "    block[i] = 1\n"
        "a = dict(zip(sys.argv[1::2], sys.argv[2::2]))\n"
        "print(json.dumps({'framework': 'fake', 'step_s_median': 2.0,\n"
        "                  'frames_per_s': int(a['--batch']) * int(a['--frames']) / 2.0}))\n")
    proc = run([sys.executable, "benchmarks/compare_torch.py", "--torch_python", sys.executable,
                "--reference", str(fake), "--hidden", "16", "--layers", "2", "--batch", "2",
                "--frames", "120", "--steps", "2", "--rounds", "2"])
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    rounds, summary = lines[:-1], lines[-1]
    assert len(rounds) == 2 and summary["summary"] is True
    for row in rounds:
        assert row["ref_step_s"] == 2.0
        assert abs(row["ratio"] - 2.0 / row["ours_step_s"]) < 1e-9 * row["ratio"]
        assert 300 < row["ref_peak_rss_mb"] < 400  # the stand-in's own peak, not ours
        assert row["ours_peak_rss_mb"] > 100
        assert abs(row["memory_ratio"] - row["ours_peak_rss_mb"] / row["ref_peak_rss_mb"]) < 1e-9
    ratios = sorted(row["ratio"] for row in rounds)
    assert abs(summary["median_ratio"] - (ratios[0] + ratios[1]) / 2) < 1e-3


def test_transcribe_speed_benchmark_reports_a_consistent_rtf():
    proc = run([sys.executable, "benchmarks/transcribe_speed.py", "--minutes", "0.5",
                "--sizes", "16x1", "--chunk_seconds", "10", "--batch", "2"])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (out["hidden"], out["layers"], out["decoder"]) == (16, 1, "greedy")
    assert abs(out["audio_s"] - 30.0) < 1e-3
    assert abs(out["rtf"] - out["processing_s"] / out["audio_s"]) < 1e-3
    assert set(out["seconds"]) == {"audio+features", "network", "decoding"}
    assert sum(out["seconds"].values()) <= out["processing_s"] * 1.05 + 0.01


def test_train_step_benchmark_with_accumulation_counts_every_micro_batch():
    proc = run([sys.executable, "benchmarks/train_step.py", "--hidden", "16", "--layers", "1",
                "--batch", "2", "--frames", "120", "--steps", "1", "--accumulate", "3"])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["accumulate"] == 3 and out["mode"] == "train" and out["loss"] > 0
    assert abs(out["frames_per_s"] - 3 * 2 * 120 / out["step_s_median"]) < 1e-6 * out["frames_per_s"]


def test_data_pipeline_benchmark_reports_plain_and_augmented_with_headroom(sample_data, tmp_path):
    (tmp_path / "noise").mkdir()
    sf.write(tmp_path / "noise/n.wav", np.random.default_rng(0).standard_normal(8000) * 0.1, 16000)
    proc = run([sys.executable, "benchmarks/data_pipeline.py", "--manifest",
                str(sample_data / "libri_train_manifest.csv"), "--workers", "1", "--batch", "4",
                "--max_batches", "4", "--train_frames_per_s", "500",
                "--noise_dir", str(tmp_path / "noise")])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["augment"] == "speed,gain,spec,noise"
    for name in ("plain", "augmented"):
        res = out[name]
        assert res["frames_per_s"] > res["utt_per_s"] > 0
        assert res["headroom"] == pytest.approx(res["frames_per_s"] / 500)
        assert 0 <= res["padding_fraction"] < 0.5 and 1 <= res["padded_lengths"] <= 6
    # the augmented source pads for its slowest (0.9x) version of every utterance
    assert out["augmented"]["padding_fraction"] > out["plain"]["padding_fraction"]


def test_heldout_voice_split_keeps_the_voices_apart(sample_data, tmp_path):
    sys.path.insert(0, os.path.join(REPO, "benchmarks"))
    from heldout_voices import speaker, split_manifests

    from src.manifest import read_manifest
    paths, held = split_manifests(str(sample_data), str(tmp_path), 4)
    got = {k: read_manifest(v) for k, v in paths.items()}
    assert held == list(range(103, 136, 4))
    assert all(speaker(e) in held for e in got["heldout_voices"])
    assert not any(speaker(e) in held for e in got["seen_train"] + got["seen_voices_test"])
    everything = sum(len(read_manifest(str(sample_data / f"libri_{n}_manifest.csv")))
                     for n in ("train", "val", "test_clean"))
    train_and_test = len(got["seen_train"]) + len(got["seen_voices_test"])
    seen_dev = everything - train_and_test - len(got["heldout_voices"])
    assert 0 < seen_dev < 24  # only the seen voices' dev utterances are left out


def test_mindir_benchmark_times_both_models_on_the_same_files(sample_data):
    manifest = sample_data / "libri_test_clean_manifest.csv"
    proc = run([sys.executable, "benchmarks/mindir_speed.py", "--size", "16x1", "--files", "2",
                "--rounds", "2", f"--manifest={manifest}"])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["files"] == 2 and len(out["seconds"]["checkpoint"]) == 2
    assert out["checkpoint_s"] == float(np.median(out["seconds"]["checkpoint"]))
    assert abs(out["ratio"] - out["checkpoint_s"] / out["mindir_s"]) < 1e-3
    assert out["same_texts"] is True  # one network, two routes: the same words


def test_streaming_latency_benchmark_reports_its_fields_consistently(sample_data):
    proc = run([sys.executable, "benchmarks/streaming_latency.py", "--sizes", "16x1",
                "--backends", "mindspore", "--seconds", "2", "--max_streams", "1",
                "--stream_seconds", "1", "--chunk_ms", "160",
                f"--manifest={sample_data / 'libri_test_clean_manifest.csv'}"])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert (out["size"], out["backend"], out["chunk_ms"]) == ("16x1", "mindspore", 160)
    # 10 ms (half a window) + 150 ms (convolutions) + 2 x 20 ms (lookahead) + 140 ms (chunk)
    assert out["algorithmic_latency_ms"] == 340
    assert 0 < out["step_ms"]["median"] <= out["step_ms"]["p95"]
    assert out["rtf"] > 0 and out["streams"] in (0, 1)


def test_serve_load_benchmark_reports_each_client_count_and_the_sustained_one(sample_data):
    proc = run([sys.executable, "benchmarks/serve_load.py", "--sizes", "16x1", "--streams",
                "1,2", "--seconds", "1", "--max_batch", "2", "--max_latency", "30",
                f"--manifest={sample_data / 'libri_test_clean_manifest.csv'}"])
    lines = [json.loads(line) for line in proc.stdout.strip().splitlines()]
    assert [line.get("streams") for line in lines[:2]] == [1, 2]
    assert all(line["kept_up"] and line["close_latency_s"]["max"] >= 0 for line in lines[:2])
    assert 1 <= lines[1]["mean_batch"] <= 2
    assert lines[2]["sustained_streams"] == 2 and lines[2]["chunk_ms"] == 120


def test_time_to_accuracy_reports_runs_consistently_with_their_files(sample_data, tmp_path):
    """One tiny configuration, one epoch, target 100 % (reached at the first validation): its
    JSON line agrees with the run's metrics.jsonl and eval summary, and an earlier row at the
    same target stays in results.jsonl, table.md and the picture (another target's is dropped)."""
    config = tmp_path / "tiny.yaml"
    config.write_text("model:\n  hidden_size: 16\n  num_layers: 1\ndata:\n  batch_size: 16\n"
                      "augment:\n  speed_perturb: false\n")
    out = tmp_path / "tta"
    out.mkdir()
    earlier = {"config": "no_speed", "seed": 1, "epochs": 1, "what": "kept", "target_cer": 100.0,
               "machine": "m",
               "minutes_to_target": 1.5, "epochs_to_target": 1, "ms_per_step": 10.0,
               "peak_memory_mib": 1, "val_cer": [90.0], "val_minutes": [1.5],
               "final": {"seen_voices_test": {"cer": 80.0}, "heldout_voices": {"cer": 85.0}}}
    other_target = {**earlier, "config": "cosine", "target_cer": 35.0}
    (out / "results.jsonl").write_text(json.dumps(earlier) + "\n" + json.dumps(other_target) + "\n")
    proc = run([sys.executable, os.path.join(REPO, "benchmarks", "time_to_accuracy.py"),
                "--config_path", str(config),
                "--configs", "blank_bias_4", "--epochs", "1", "--target", "100",
                "--data_dir", str(sample_data), "--out", str(out)], cwd=tmp_path)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["config"] == "blank_bias_4" and got["flags"] == ["--blank_bias=4"]
    where = out / "blank_bias_4_seed1"
    with open(where / "log" / "metrics.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    validation = [r for r in records if "val_cer" in r]
    assert got["val_cer"] == [round(r["val_cer"], 2) for r in validation] and len(validation) == 1
    assert got["steps"] == got["steps_to_target"] == validation[0]["step"]
    assert got["minutes_to_target"] == got["val_minutes"][0] <= got["train_minutes"]
    assert got["epochs_to_target"] == 1 and got["peak_memory_mib"] > 100
    with open(where / "eval" / "summary.json", encoding="utf-8") as f:
        summary = json.load(f)["results"]
    for name in ("seen_voices_test", "heldout_voices"):
        assert got["final"][name]["cer"] == round(summary[name]["cer"], 2)
    from src.checkpoints import read_checkpoint  # the blank_bias flag reached the network
    ckpt = sorted((where / "ckpt").glob("DeepSpeech-1_*.ckpt"))[0]
    assert "fc.module.bias" in read_checkpoint(str(ckpt))
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    assert [r["config"] for r in rows] == ["no_speed", "blank_bias_4"]
    table = (out / "table.md").read_text()
    assert "| no_speed | kept | 1 | 1 | 1.5 | 1.0 | 90.0 % | 80.0 / 85.0 % |" in table
    assert "cosine" not in table
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
