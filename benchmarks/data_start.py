"""Seconds from the start of training to the first step's data, at the size of LibriSpeech's
960-hour training set.

    python benchmarks/data_start.py                        # 281,241 utterances
    python benchmarks/data_start.py --n 20000 --dir /tmp/ds_start --batch_size=8

Builds (once per --dir and --n) a zoo CSV manifest of --n rows with the duration column, sorted
by duration, as data_prep writes it: --wavs 16-kHz WAV files of 1-15 s of noise (shared by the
rows, with lengths drawn like train-clean-100's) and one transcript file per row (about 15
characters per second of audio, as LibriSpeech's). Then times what train.py does before its
first step, as it does it (the default config; any --key=value after the options overrides it,
e.g. --batch_size=8):
  utterances:   load_utterances (manifest, durations, transcripts, labels, filters)
  plan:         training_source (the epoch planner: batches, pad lengths, speed factors)
  first_batch:  create_dataset and its first batch (worker start, audio, augmentation, features)
and prints one JSON line: the CPU, --n, hours of audio, seconds per phase and their total.
MindSpore's dataset module is imported before the clock starts (train.py has imported it by then).
The page cache is warm (the files were just written or read): a first read from a cold disk or
network storage is slower, the more so the more files each start opens.
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from src.env import prepare_environment  # noqa: E402  (before numpy-heavy modules load)

WORDS = ("THE", "OF", "AND", "TO", "A", "IN", "HE", "WAS", "THAT", "HIS", "WITH", "HAD", "IT",
         "AS", "FOR", "SAID", "UPON", "LITTLE", "HOUSE", "BEFORE", "NEVER", "SHALL", "AGAIN",
         "MORNING", "CAPTAIN", "WHISPERED", "SUDDENLY", "YOUNG", "MOTHER", "WATER", "DON'T")


def write_wavs(folder, count, rng):
    """`count` WAV files of 1-15 s of noise-like audio; returns [(path, seconds)]."""
    import soundfile as sf
    os.makedirs(folder, exist_ok=True)
    wavs = []
    for k, seconds in enumerate(np.linspace(1.0, 15.0, count)):
        path = os.path.join(folder, f"w{k}.wav")
        samples = int(seconds * 16000)
        sf.write(path, (rng.standard_normal(samples) * 3000).astype(np.int16), 16000)
        wavs.append((path, samples / 16000))
    return wavs


def transcript(seconds, rng):
    """Words of about 15 characters per second of audio (LibriSpeech's rate)."""
    words, length = [], 0
    while length < 15 * seconds:
        words.append(WORDS[rng.integers(len(WORDS))])
        length += len(words[-1]) + 1
    return " ".join(words)


def build_corpus(folder, n, n_wavs, seed=0):
    """<folder>/manifest.csv of `n` rows (wav, txt, duration), built unless it is there."""
    from src.manifest import write_manifests
    manifest = os.path.join(folder, "manifest.csv")
    if os.path.isfile(manifest):
        return manifest
    rng = np.random.default_rng(seed)
    wavs = write_wavs(os.path.join(folder, "wav"), n_wavs, rng)
    # most rows long (11-16.5 s), a tail down to 1 s, as train-clean-100
    long = np.array([s >= 11.0 for _, s in wavs])
    weights = np.where(long, 0.8 / long.sum(), 0.2 / max((~long).sum(), 1))
    picks = rng.choice(len(wavs), n, p=weights / weights.sum())
    txt_dir = os.path.join(folder, "txt")
    os.makedirs(txt_dir, exist_ok=True)
    rows = []
    for i, k in enumerate(picks):
        path = os.path.join(txt_dir, f"u{i}.txt")
        with open(path, "w", encoding="utf-8") as f:
            f.write(transcript(wavs[k][1], rng))
        rows.append((wavs[k][0], path, wavs[k][1]))
    rows.sort(key=lambda row: row[2])  # data_prep sorts by duration
    write_manifests(rows, manifest + ".tmp", os.path.join(folder, "manifest.json"), folder)
    os.replace(manifest + ".tmp", manifest)
    return manifest


def time_start(manifest, overrides):
    """({phase: seconds}, utterances, hours) of the steps before train.py's first step."""
    import mindspore.dataset  # noqa: F401  (imported by train.py before the data is read)

    from src.config import load_config
    from src.dataset import create_dataset, iterate, load_utterances, training_source
    from src.text import make_encoder
    cfg = load_config([f"--train_manifest={manifest}", *overrides])
    t0 = time.perf_counter()
    utts, _ = load_utterances(cfg.data.train_manifest, cfg.features, make_encoder(cfg),
                              max_duration=cfg.data.max_duration,
                              threads=cfg.data.read_threads)
    t1 = time.perf_counter()
    source = training_source(utts, cfg)
    t2 = time.perf_counter()
    next(iter(iterate(create_dataset(source, cfg.data.num_parallel_workers))))
    t3 = time.perf_counter()
    seconds = {"utterances": t1 - t0, "plan": t2 - t1, "first_batch": t3 - t2}
    hours = sum(u.frames for u in utts) * cfg.features.window_stride / 3600
    return seconds, len(utts), hours


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=281241, help="manifest rows (960 h: 281241)")
    p.add_argument("--wavs", type=int, default=16, help="distinct audio files the rows share")
    p.add_argument("--dir", default="", help="corpus folder, kept for the next run "
                                             "(default: a temporary one, removed)")
    a, overrides = p.parse_known_args(argv)
    prepare_environment("CPU")
    from src.env import cpu_name
    with tempfile.TemporaryDirectory() as tmp:
        folder = a.dir or tmp
        t0 = time.perf_counter()
        manifest = build_corpus(os.path.join(folder, f"n{a.n}"), a.n, a.wavs)
        built = time.perf_counter() - t0
        seconds, usable, hours = time_start(manifest, overrides)
    print(json.dumps({"cpu": cpu_name(), "n": a.n, "usable": usable, "hours": round(hours, 1),
                      "overrides": overrides, "corpus_build_s": round(built, 2),
                      "seconds": {k: round(v, 3) for k, v in seconds.items()},
                      "total_s": round(sum(seconds.values()), 3)}))


if __name__ == "__main__":
    main()
