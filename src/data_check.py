"""train.py --check_data: what would fail after hours of training, found in a minute.

The manifests are read as training reads them, and every audio header too (training trusts the
duration column and opens audio only where it first uses it). Every problem is counted with its
first examples; then the batch plan, and an epoch time estimated from one timed training step
at the configured size on the longest padded length. Nothing is trained or written: no
checkpoint, log, metrics or run folder.

    status = check_data(cfg, rank, group_size)   # 0: training can start; 1: it cannot
"""
import logging
import time

import numpy as np

from src.dataset import load_utterances, training_source
from src.features import freq_bins
from src.manifest import read_manifest
from src.text import make_encoder

# What training does with the problems that are not skipped utterances.
EFFECTS = {"duplicate audio path": "trained once per row",
           "audio longer than its manifest duration": "skipped where training first reads it",
           "characters dropped (not in labels.json)": "removed from their transcripts"}


def check_manifest(cfg, manifest, encoder, train, out):
    """Utterances of `manifest` as training (`train`) or validation reads it; its problems
    printed with `out`. Returns (utterances, report)."""
    utts, report = load_utterances(
        manifest, cfg.features, encoder, max_duration=cfg.data.max_duration if train else None,
        ctc_filter=train, check=True, threads=cfg.data.read_threads,
        desc=f"checking {'train' if train else 'validation'} manifest")
    rows = duplicates(manifest, report)
    hours = sum(u.frames for u in utts) * cfg.features.window_stride / 3600
    out(f"{'train' if train else 'validation'} manifest {manifest}: {rows} rows, "
        f"{len(utts)} usable ({hours:.2f} h)")
    for reason, count in sorted(report.items()):
        effect = "training stops at the first" if reason in report.fatal else \
            EFFECTS.get(reason, "skipped")
        out(f"  {reason}: {count} ({effect}); first:")
        for example in report.examples.get(reason, []):
            out(f"      {example}")
    if not report:
        out("  no problem found")
    return utts, report


def duplicates(manifest, report):
    """Count rows naming an audio file an earlier row names (trained twice per epoch) in
    `report`; returns the number of rows."""
    entries = read_manifest(manifest, check_files=False)
    first = {}
    for e in entries:
        if e.audio in first:
            report.skip("duplicate audio path", f"{e.where}: {e.audio} (also {first[e.audio]})")
        else:
            first[e.audio] = e.where
    return len(entries)


def epoch_frames(source):
    """(real, padded) spectrogram frames of this device's first epoch of `source`."""
    batches, pads, _, frames = source.plan(0)
    order = source.epoch_order(0)
    real = sum(int(frames[batches[i]].sum()) for i in order)
    padded = sum(len(batches[i]) * int(pads[i]) for i in order)
    return real, padded


def print_plan(source, cfg, group_size, out):
    """The batch plan of the run (this device's share with several devices)."""
    real, padded = epoch_frames(source)
    device = f" per device ({group_size} devices)" if group_size > 1 else ""
    out(f"batch plan{device}: {source.micro_per_epoch} batches of {cfg.data.batch_size} per epoch "
        f"({source.steps_per_epoch} optimizer steps), padded lengths {source.bounds.tolist()} "
        f"frames, padding {100 * source.padding_fraction:.1f}% of frames, {real} frames per "
        f"epoch ({padded} padded)")


def timed_step(cfg, group_size, source, blank):
    """(first step s (graph compile), step s) of one training step on a batch of batch_size
    random utterances at the longest padded length, with a label as long as any there."""
    from src.training import build_model
    pad = int(source.bounds.max())
    batch, width = cfg.data.batch_size, source.label_width[pad]
    _, _, step = build_model(cfg, group_size, source.steps_per_epoch, blank,
                             logging.getLogger("deepspeech2.check"))
    import mindspore as ms
    rng = np.random.default_rng(cfg.seed)
    inputs = rng.standard_normal((batch, 1, freq_bins(cfg.features), pad)).astype(np.float32)
    args = (ms.Tensor(inputs), ms.Tensor(np.full(batch, pad, np.int32)),
            ms.Tensor(np.tile(np.arange(width) % 2 + 1, (batch, 1)).astype(np.int32)),
            ms.Tensor(np.full(batch, width, np.int32)))  # labels 1 2 1 2 ...: no repeats
    seconds = []
    for _ in range(2):
        t0 = time.perf_counter()
        step(*args)[0].asnumpy()
        seconds.append(time.perf_counter() - t0)
    return seconds


def duration(seconds):
    """'2 h 05 min', '7.5 min' or '42 s'."""
    if seconds >= 3600:
        return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.0f} s"


def print_estimate(cfg, group_size, source, blank, out):
    """The epoch time estimated from one timed step."""
    first, step = timed_step(cfg, group_size, source, blank)
    pad, batch = int(source.bounds.max()), cfg.data.batch_size
    _, padded = epoch_frames(source)
    seconds = step * padded / (batch * pad)
    out(f"one training step (hidden {cfg.model.hidden_size} x {cfg.model.num_layers}, batch "
        f"{batch} x {pad} frames, the longest padded length): {step:.2f} s ({first:.1f} s with "
        f"its graph compile)")
    out(f"epoch time estimate: {duration(seconds)} (that step's time per padded frame x {padded} "
        f"padded frames; the first epoch adds a graph compile per padded length, and the input "
        "pipeline is assumed to keep up)")


def check_data(cfg, rank=0, group_size=1):
    """Check the manifests, print the plan and the estimate (rank 0 prints); returns the exit
    status: 1 when nothing in the train manifest is usable or a problem would stop training."""
    out = print if rank == 0 else (lambda *_: None)
    encoder = make_encoder(cfg)
    utts, report = check_manifest(cfg, cfg.data.train_manifest, encoder, True, out)
    fatal = set(report.fatal)
    if cfg.data.val_manifest:
        fatal |= check_manifest(cfg, cfg.data.val_manifest, make_encoder(cfg), False, out)[1].fatal
    if utts:
        source = training_source(utts, cfg, rank, group_size)
        print_plan(source, cfg, group_size, out)
        print_estimate(cfg, group_size, source, encoder.blank_id, out)
    if not utts or fatal:
        why = "nothing in the train manifest is usable" if not utts else \
            f"training would stop at: {', '.join(sorted(fatal))}"
        out(f"data check: {why} (exit status 1)")
        return 1
    out(f"data check: training can start with {len(utts)} utterances (problems: "
        f"{report.text()}) (exit status 0)")
    return 0
