"""Transcription from an exported MindIR against the same checkpoint, on the same files.

    python benchmarks/mindir_speed.py --size 256x3 --files 20 --rounds 3
    python benchmarks/mindir_speed.py --checkpoint outputs/checkpoints/DeepSpeech-10_83.ckpt

Runs transcribe.py as a user does, once with --checkpoint and once with --mindir (exported by
export.py from that checkpoint), on the first --files utterances of the sample-test manifest,
alternating the two in each of --rounds rounds; each process sets the oneDNN cap from what it
runs (src/env.py), which is what this measures. Without --checkpoint, one with random weights
of --size is made (the network costs the same whatever its weights). Prints one JSON line:
median wall seconds of each (process start included), "ratio" = checkpoint seconds / MindIR
seconds (>= 0.9: the MindIR is at most ~10 % slower), the texts' agreement and the CPU.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from src.env import cpu_name  # noqa: E402  (after the path fix above)

SAMPLE_TEST = os.path.join(REPO, "data", "sample", "libri_test_clean_manifest.csv")


def random_checkpoint(path, size):
    """Save a network of `size` ("HIDDENxLAYERS") with random weights as training saves it."""
    code = ("import sys; sys.path.insert(0, sys.argv[1]); from src.env import prepare_environment;"
            "prepare_environment('CPU');"
            "from src.config import load_config; from src.deepspeech2 import build_network;"
            "from src.checkpoints import save_network; h, n = sys.argv[3].split('x');"
            "cfg = load_config([f'--hidden_size={h}', f'--num_layers={n}']);"
            "save_network(build_network(cfg, fast_conv=False), sys.argv[2], cfg.features)")
    subprocess.run([sys.executable, "-c", code, REPO, path, size], check=True)


def timed(cmd):
    """(wall seconds, stdout) of a command that must succeed."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"mindir_speed.py: error: {' '.join(cmd[:3])} failed: {proc.stderr.strip()[-500:]}")
    return time.perf_counter() - start, proc.stdout


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--checkpoint", default="", help="a trained checkpoint (default: random)")
    p.add_argument("--size", default="256x3", help="HIDDENxLAYERS of the random checkpoint")
    p.add_argument("--files", type=int, default=20)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--manifest", default=SAMPLE_TEST)
    a = p.parse_args(argv)
    if not os.path.isfile(a.manifest):
        p.error(f"manifest not found: {a.manifest} (bash scripts/run_data_prep.sh --sample)")
    from src.manifest import read_manifest
    files = [e.audio for e in read_manifest(a.manifest)][:a.files]
    with tempfile.TemporaryDirectory() as tmp:
        ckpt = a.checkpoint or os.path.join(tmp, "random.ckpt")
        if not a.checkpoint:
            random_checkpoint(ckpt, a.size)
        mindir = os.path.join(tmp, "model.mindir")
        timed([sys.executable, os.path.join(REPO, "export.py"), f"--checkpoint={ckpt}",
               f"--file_name={mindir}"])
        transcribe = [sys.executable, os.path.join(REPO, "transcribe.py"), "--format=json"]
        runs = {"checkpoint": [], "mindir": []}
        texts = {}
        for _ in range(a.rounds):
            for kind, model in (("checkpoint", f"--checkpoint={ckpt}"), ("mindir", f"--mindir={mindir}")):
                seconds, out = timed([*transcribe, model, *files])
                runs[kind].append(round(seconds, 3))
                texts[kind] = [json.loads(line)["text"] for line in out.splitlines() if line]
    median = {k: statistics.median(v) for k, v in runs.items()}
    print(json.dumps({"cpu": cpu_name(), "checkpoint": a.checkpoint or f"random {a.size}",
                      "files": len(files), "rounds": a.rounds, "seconds": runs,
                      "checkpoint_s": median["checkpoint"], "mindir_s": median["mindir"],
                      "ratio": round(median["checkpoint"] / median["mindir"], 3),
                      "same_texts": texts["checkpoint"] == texts["mindir"]}))


if __name__ == "__main__":
    main()
