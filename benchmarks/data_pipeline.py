"""Throughput of the input pipeline alone (audio decode + spectrogram + padding + batching).

    python benchmarks/data_pipeline.py --manifest data/sample/libri_train_manifest.csv \
        --workers 2 --batch 8

Prints one JSON line: utterances/s and spectrogram frames/s delivered by the MindSpore dataset
with --workers worker processes, the fraction of padded frames and the number of distinct
padded lengths (compiled graph shapes) on that manifest and on a LibriSpeech-like length
distribution (train-clean-100: 1-17 s, mean ~12.7 s, sampled), and the figure to compare with
training: frames/s a training step consumes (see benchmarks/train_step.py).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)


def librispeech_like_frames(n, seed=0):
    """Frame counts shaped like train-clean-100 (most utterances 11-16 s, a tail down to 1 s)."""
    rng = np.random.default_rng(seed)
    seconds = np.where(rng.random(n) < 0.8, rng.uniform(11.0, 16.5, n), rng.uniform(1.0, 11.0, n))
    return (seconds * 100).astype(int) + 1


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest",
                   default=os.path.join(REPO, "data/sample/libri_train_manifest.csv"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--buckets", type=int, default=6)
    p.add_argument("--max_batches", type=int, default=40)
    a = p.parse_args(argv)

    from src.config import load_config
    from src.dataset import (
        BatchSource,
        create_dataset,
        load_utterances,
        make_batches,
        padding_fraction,
    )
    from src.text import make_encoder
    cfg = load_config([])
    utts, _ = load_utterances(a.manifest, cfg, make_encoder(cfg))
    source = BatchSource(utts, cfg, a.batch, a.buckets, shuffle=True, seed=0)
    data = create_dataset(source, a.workers)
    n_batches = min(a.max_batches, len(source))
    utt = frames = 0
    t0 = None
    for k, (_, lengths, _, _) in enumerate(data.create_tuple_iterator(num_epochs=1,
                                                                          output_numpy=True)):
        if k == 0:
            t0 = time.perf_counter()  # the first batch pays for starting the workers
            continue
        utt += len(lengths)
        frames += int(lengths.sum())
        if k + 1 >= n_batches:
            break
    elapsed = time.perf_counter() - t0
    libri = librispeech_like_frames(28539)
    batches, pad = make_batches(libri, a.batch, a.buckets)
    print(json.dumps({
        "manifest": a.manifest, "workers": a.workers, "batch": a.batch,
        "utt_per_s": utt / elapsed, "frames_per_s": frames / elapsed,
        "padding_fraction": source.padding_fraction,
        "padded_lengths": len(set(source.pad.tolist())),
        "librispeech_like_padding_fraction": padding_fraction(libri, batches, pad),
        "librispeech_like_padded_lengths": len(set(pad.tolist()))}))


if __name__ == "__main__":
    from src.errors import UserError
    try:
        main()
    except UserError as err:  # e.g. the sample corpus not prepared yet
        sys.exit(f"data_pipeline.py: error: {err} (prepare it: bash scripts/run_data_prep.sh --sample)")
