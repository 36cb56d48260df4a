"""The training-step benchmark runs the repo's own step and reports consistent figures."""
import json
import os
import sys

from conftest import run


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
    assert out["peak_rss_mb"] > 100 and out["loss"] > 0
