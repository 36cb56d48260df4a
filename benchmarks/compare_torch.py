"""This repo's training step (or inference pass) vs the PyTorch reference, in alternating rounds.

    python benchmarks/compare_torch.py --torch_python ../torch-venv/bin/python \
        --hidden 256 --layers 3 --rounds 3
    python benchmarks/compare_torch.py --torch_python ../torch-venv/bin/python --infer \
        --batch 1 --frames 3000

Each round runs benchmarks/train_step.py, then the reference (../shared/bench/
torch_ds2_reference.py by default, in the interpreter given by --torch_python, which must have
torch; the project itself never imports it) with the same flags, one after the other, and reads
each process's peak RSS from the kernel (wait4). The machine may be shared and noisy, so the ratio
is taken within each round and the median over rounds is reported:
  ratio = this repo's frames/s / the reference's frames/s   (>= 1.0: at least as fast)
  memory_ratio = this repo's peak RSS / the reference's
Prints one JSON line per round and a final summary line.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
REFERENCE = os.path.join(os.path.dirname(REPO), "shared", "bench", "torch_ds2_reference.py")


def run_json(cmd, env=None):
    """Run cmd; return (its last JSON stdout line, its peak RSS in MiB as the kernel counted it)."""
    with tempfile.TemporaryFile(mode="w+") as err:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True,
                                env=env)
        out = proc.stdout.read()
        proc.stdout.close()
        _, status, usage = os.wait4(proc.pid, 0)  # reaped here, so its rusage is its own
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode:
            err.seek(0)
            sys.exit(f"compare_torch.py: {cmd[1]} failed ({proc.returncode}):\n"
                     f"{err.read()[-2000:]}")
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        sys.exit(f"compare_torch.py: no JSON line from {cmd[1]}:\n{out[-2000:]}")
    return json.loads(lines[-1]), usage.ru_maxrss / 1024


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--torch_python", required=True, help="a Python interpreter that has torch")
    p.add_argument("--reference", default=REFERENCE, help="the PyTorch reference script")
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--layers", type=int, default=5)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--frames", type=int, default=1000)
    p.add_argument("--steps", type=int, default=3, help="timed steps after one warm-up step")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--infer", action="store_true", help="compare the inference pass (both --infer)")
    a = p.parse_args(argv)
    for path, what in ((a.torch_python, "--torch_python"), (a.reference, "--reference")):
        if not os.path.isfile(path):
            p.error(f"{what} not found: {path}")
    shape = ["--hidden", str(a.hidden), "--layers", str(a.layers), "--batch", str(a.batch),
             "--frames", str(a.frames), "--steps", str(a.steps)] + (["--infer"] if a.infer else [])
    # each framework at its own best setting: neither gets oneDNN capped at AVX2
    env = {k: v for k, v in os.environ.items() if k != "ONEDNN_MAX_CPU_ISA"}
    rounds = []
    for r in range(a.rounds):
        ours, ours_peak = run_json([sys.executable, os.path.join(REPO, "benchmarks", "train_step.py")]
                                   + shape, env)
        ref, ref_peak = run_json([a.torch_python, a.reference] + shape, env)
        row = {"round": r, "ours_step_s": ours["step_s_median"], "ref_step_s": ref["step_s_median"],
               "ratio": ours["frames_per_s"] / ref["frames_per_s"],
               "ours_peak_rss_mb": ours_peak, "ref_peak_rss_mb": ref_peak,
               "memory_ratio": ours_peak / ref_peak}
        print(json.dumps(row), flush=True)
        rounds.append(row)
    summary = {key: statistics.median(row[key] for row in rounds) for key in rounds[0]
               if key != "round"}
    mode = "infer" if a.infer else "train"
    print(json.dumps({"summary": True, "mode": mode, "hidden": a.hidden, "layers": a.layers, "batch": a.batch,
                      "frames": a.frames, "rounds": a.rounds,
                      "ratios": [round(row["ratio"], 3) for row in rounds],
                      **{f"median_{k}": round(v, 3) for k, v in summary.items()}}))


if __name__ == "__main__":
    main()
