"""benchmarks/data_start.py: the seconds from a training start to its first batch, at a small N."""
import csv
import json
import sys

import pytest
import soundfile as sf

from conftest import run


def test_data_start_benchmark_reports_each_phase_of_a_manifest_it_builds(tmp_path):
    proc = run([sys.executable, "benchmarks/data_start.py", "--n", "300", "--wavs", "4",
                "--dir", str(tmp_path), "--batch_size=8"])
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["n"] == out["usable"] == 300 and out["cpu"] and out["overrides"] == ["--batch_size=8"]
    assert set(out["seconds"]) == {"utterances", "plan", "first_batch"}
    assert out["total_s"] == pytest.approx(sum(out["seconds"].values()), abs=0.002)
    with open(tmp_path / "n300" / "manifest.csv", newline="") as f:
        rows = list(csv.reader(f))
    durations = [float(d) for _, _, d in rows]
    assert len(rows) == 300 and durations == sorted(durations)  # as data_prep writes it
    assert len({t for _, t, _ in rows}) == 300  # one transcript file per row
    for wav, _, duration in rows[::50]:
        assert sf.info(wav).duration == pytest.approx(float(duration), abs=1e-6)
    assert out["hours"] == pytest.approx(sum(durations) / 3600, abs=0.06)
