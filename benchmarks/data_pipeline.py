"""Throughput of the input pipeline alone (audio decode + augmentation + spectrogram + padding +
batching), without and with training augmentation.

    python benchmarks/data_pipeline.py --manifest data/sample/libri_train_manifest.csv \
        --workers 2 --batch 8 --train_frames_per_s 470

Prints one JSON line: for "plain" and "augmented" (--augment: SoX speed 0.9/1.0/1.1, gain,
SpecAugment, and noise mixing when --noise_dir is given) the utterances/s and spectrogram
frames/s delivered by the MindSpore dataset with --workers worker processes and, with
--train_frames_per_s (the frames/s a training step consumes, from benchmarks/train_step.py),
"headroom": how many times that the pipeline supplies. Also the fraction of padded frames and
the number of distinct padded lengths (compiled graph shapes) on that manifest and on a
LibriSpeech-like length distribution (train-clean-100: 1-17 s, mean ~12.7 s, sampled).
"""
import argparse
import json
import os
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

# each from the first epoch: the pipeline is timed on the epochs that run it
AUGMENTATIONS = {"speed": ["--speed_perturb=true", "--speed_perturb_from_epoch=1"],
                 "gain": ["--gain_perturb=true"], "spec": ["--spec_augment=true"]}


def librispeech_like_frames(n, seed=0):
    """Frame counts shaped like train-clean-100 (most utterances 11-16 s, a tail down to 1 s)."""
    rng = np.random.default_rng(seed)
    seconds = np.where(rng.random(n) < 0.8, rng.uniform(11.0, 16.5, n), rng.uniform(1.0, 11.0, n))
    return (seconds * 100).astype(int) + 1


def throughput(source, workers, max_batches):
    """(utterances/s, frames/s) of the first `max_batches` batches, after the first one (which
    pays for starting the workers)."""
    from src.dataset import create_dataset
    data = create_dataset(source, workers)
    n_batches = min(max_batches, len(source))
    utt = frames = 0
    t0 = None
    for k, (_, lengths, _, _) in enumerate(data.create_tuple_iterator(num_epochs=1,
                                                                          output_numpy=True)):
        if k == 0:
            t0 = time.perf_counter()
            continue
        utt += len(lengths)
        frames += int(lengths.sum())
        if k + 1 >= n_batches:
            break
    elapsed = time.perf_counter() - t0
    return utt / elapsed, frames / elapsed


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--manifest",
                   default=os.path.join(REPO, "data/sample/libri_train_manifest.csv"))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--buckets", type=int, default=6)
    p.add_argument("--max_batches", type=int, default=40)
    p.add_argument("--augment", default="speed,gain,spec",
                   help=f"comma-separated, of {', '.join(AUGMENTATIONS)}")
    p.add_argument("--noise_dir", default="", help="also mix noise from this folder")
    p.add_argument("--train_frames_per_s", type=float, default=0.0,
                   help="frames/s the training step consumes (benchmarks/train_step.py)")
    a = p.parse_args(argv)
    unknown = set(a.augment.split(",")) - set(AUGMENTATIONS) - {""}
    if unknown:
        p.error(f"--augment: unknown {', '.join(sorted(unknown))}")

    from src.augment import ALL_OFF, Augmenter
    from src.config import load_config
    from src.dataset import BatchSource, load_utterances
    from src.planner import Batching, make_batches, padding_fraction
    from src.text import make_encoder
    flags = [flag for k in a.augment.split(",") if k for flag in AUGMENTATIONS[k]]
    flags += [f"--noise_dir={a.noise_dir}"] if a.noise_dir else []
    result = {"manifest": a.manifest, "workers": a.workers, "batch": a.batch,
              "augment": a.augment + (",noise" if a.noise_dir else "")}
    for name, overrides in (("plain", ALL_OFF), ("augmented", ALL_OFF + flags)):
        cfg = load_config(overrides)
        utts, _ = load_utterances(a.manifest, cfg.features, make_encoder(cfg))
        source = BatchSource(utts, cfg.features, Batching(a.batch, a.buckets, shuffle=True),
                             augmenter=Augmenter(cfg.augment, cfg.features.sample_rate))
        utt_s, frames_s = throughput(source, a.workers, a.max_batches)
        result[name] = {"utt_per_s": utt_s, "frames_per_s": frames_s,
                        "padding_fraction": source.padding_fraction,
                        "padded_lengths": len(source.bounds)}
        if a.train_frames_per_s:
            result[name]["headroom"] = frames_s / a.train_frames_per_s
    libri = librispeech_like_frames(28539)
    batches, pad = make_batches(libri, a.batch, a.buckets)
    result["librispeech_like_padding_fraction"] = padding_fraction(libri, batches, pad)
    result["librispeech_like_padded_lengths"] = len(set(pad.tolist()))
    print(json.dumps(result))


if __name__ == "__main__":
    from src.errors import UserError
    try:
        main()
    except UserError as err:  # e.g. the sample corpus not prepared yet
        sys.exit(f"data_pipeline.py: error: {err} (prepare it: bash scripts/run_data_prep.sh --sample)")
