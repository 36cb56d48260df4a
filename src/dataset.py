"""Manifests -> utterances -> the planned, padded batches -> a MindSpore dataset.

load_utterances reads a manifest; BatchSource builds the batches an EpochPlanner (src.planner:
which utterances, padded to which length, in which order) plans for them: features,
augmentation, padding. Nothing is cropped: training utterances longer than `max_duration`, and
those too long for CTC (more labels than output steps), are skipped and counted.
"""
import re
from collections import Counter, namedtuple

import numpy as np

from src.augment import Augmenter, AugmentError
from src.features import (
    AudioError,
    audio_info,
    features_of,
    featurize,
    freq_bins,
    load_audio,
    num_frames,
    stft_params,
)
from src.manifest import ManifestError, read_manifest
from src.planner import Batching, EpochPlanner, fits_ctc
from src.text import read_transcript

Utterance = namedtuple("Utterance", "audio transcript text label frames")

COLUMNS = ["inputs", "input_lengths", "targets", "target_lengths"]


class Report(Counter):
    """Counts of skipped utterances by reason (and the files behind unreadable ones)."""

    def __init__(self):
        super().__init__()
        self.files = []

    def text(self):
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.items())) or "none"


def load_utterances(manifest, features, encoder, max_duration=None, ctc_filter=True,
                    report=None):
    """Read a manifest into Utterances (with encoded labels and frame counts).

    Skips (and counts in `report`) utterances over `max_duration` seconds and, with `ctc_filter`
    (training), those whose label cannot fit the network's output length under CTC.
    """
    report = Report() if report is None else report
    _, hop = stft_params(features)
    utts = []
    for e in read_manifest(manifest):
        try:  # the header only: cheap, and catches unreadable files before any worker does
            samples, rate = audio_info(e.audio)
        except AudioError as err:
            report["unreadable audio"] += 1
            report.files.append(f"{e.where}: {err}")
            continue
        if samples == 0:
            report["empty audio"] += 1
            report.files.append(f"{e.where}: {e.audio}: empty")
            continue
        duration = samples / rate
        if max_duration and duration > max_duration:
            report["longer than max_duration"] += 1
            continue
        text = read_transcript(e.transcript, e.where)
        label = encoder.encode(text, source=f"{e.where} ({e.transcript})")
        if not label:  # nothing to learn from, and no reference to score against
            report["empty transcript"] += 1
            report.files.append(f"{e.where}: {e.transcript}: empty transcript")
            continue
        frames = num_frames(int(round(duration * features.sample_rate)), hop)
        if ctc_filter and not fits_ctc(frames, label):
            report["transcript too long for the audio (CTC)"] += 1
            continue
        utts.append(Utterance(e.audio, e.transcript, encoder.decode(label), label, frames))
    if encoder.dropped:
        report["characters dropped (not in labels.json)"] += sum(encoder.dropped.values())
    if not utts:
        first = f"; first: {report.files[0]}" if report.files else ""
        raise ManifestError(f"{manifest}: no usable utterances (skipped: {report.text()}{first})")
    return utts, report


class BatchSource(EpochPlanner):
    """Random-access source of padded batches for ms.dataset.GeneratorDataset: the micro-batches
    its EpochPlanner plans for `utts`, built from their (augmented) features. It is the planner
    too, so the training loop reads the plan (steps_per_epoch, bounds, micro_batches...) from
    the source it iterates.

    Item: inputs (B, 1, F, T) float32, input_lengths (B,) int32, targets (B, S) int32 (S fixed
    per pad length T), target_lengths (B,) int32.
    """

    def __init__(self, utts, features, batching, augmenter=None):
        """utts: Utterances; features: the feature settings (features); batching: a
        Batching; augmenter: an Augmenter (its speed factors are planned) or None."""
        factors = augmenter.factors if augmenter else [1.0]
        super().__init__([u.frames for u in utts], [u.label for u in utts],
                         stft_params(features)[1], batching, factors)
        self.utts, self.features, self.augmenter = utts, features, augmenter

    def batch_utterances(self, step):
        """Utterances of optimizer step `step`."""
        return [self.utts[i] for item in self.micro_batches(step)
                for i in self.item_batch(item)[0]]

    def __getitem__(self, item):
        chosen, pad, factors = self.item_batch(item)
        seed = [self.batching.seed, int(item), self.batching.rank]
        specs, labels = [], []
        for j, (n, factor) in enumerate(zip(chosen, factors)):
            utt = self.utts[n]
            spec = self.utterance_features(utt, factor, seed + [j])  # (F, T_j)
            if spec.shape[1] > pad:
                raise ManifestError(f"{utt.audio}: audio is {spec.shape[1]} frames, longer than "
                                    "its manifest duration says; regenerate the manifest")
            specs.append(spec)
            labels.append(utt.label)
        return self.padded(specs, labels, pad)

    def padded(self, specs, labels, pad):
        """Spectrograms [(F, T_j)] and labels [(S_j,)] zero-padded into an item of pad length
        `pad` (T) and its label width (S)."""
        inputs = np.zeros((len(specs), 1, freq_bins(self.features), pad), np.float32)
        targets = np.zeros((len(specs), self.label_width[pad]), np.int32)
        for j, (spec, label) in enumerate(zip(specs, labels)):
            inputs[j, 0, :, :spec.shape[1]] = spec
            targets[j, :len(label)] = label
        lengths = np.array([spec.shape[1] for spec in specs], np.int32)
        target_lengths = np.array([len(label) for label in labels], np.int32)
        return inputs, lengths, targets, target_lengths

    def utterance_features(self, utt, factor, seed):
        """The (augmented) spectrogram (F, T) of `utt` at speed `factor`; the augmentations draw
        from a generator seeded by `seed` (seed, item, rank, position), so a resumed run repeats
        them."""
        aug = self.augmenter
        if aug is None or not (aug.on_wave or aug.on_spec):
            return featurize(utt.audio, self.features)
        rng = np.random.default_rng(seed)
        if aug.on_wave:
            wave = load_audio(utt.audio, self.features.sample_rate)
            try:
                wave = aug.wave(wave, float(factor), rng)
            except AugmentError as err:
                raise AugmentError(f"{utt.audio}: {err}") from None  # which file it was
            spec = features_of(wave, self.features)
        else:
            spec = featurize(utt.audio, self.features)
        return aug.spec(spec, rng)


def training_source(utts, cfg, rank=0, group_size=1):
    """The BatchSource of a training run as configured (shuffled, sortagrad, augmentation,
    gradient accumulation, this rank's shard)."""
    batching = Batching(cfg.data.batch_size, cfg.data.num_buckets, cfg.train.epochs,
                        shuffle=True, seed=cfg.seed, sortagrad=cfg.data.sortagrad,
                        accumulate=cfg.train.accumulate_steps, rank=rank, group_size=group_size)
    augmenter = Augmenter(cfg.augment, cfg.features.sample_rate)
    return BatchSource(utts, cfg.features, batching, augmenter)


def create_dataset(source, num_parallel_workers=1, start_step=0):
    """MindSpore dataset over `source` (BatchSource), from optimizer step `start_step` on."""
    import mindspore.dataset as ds
    first = source.micro_batches(start_step).start if start_step else 0
    indices = list(range(first, len(source)))
    sampler = ds.SequentialSampler() if first == 0 else ds.SubsetSampler(indices)
    workers = max(1, int(num_parallel_workers))
    return ds.GeneratorDataset(source, column_names=COLUMNS, sampler=sampler,
                               num_parallel_workers=workers, python_multiprocessing=workers > 1,
                               max_rowsize=-1)


def iterate(data):
    """The tuples of a MindSpore dataset. An error raised inside a worker (audio that turned out
    unreadable, ...) is re-raised as one ManifestError line instead of the framework's trace."""
    iterator = data.create_tuple_iterator(num_epochs=1)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except RuntimeError as err:
            found = re.findall(r"(AudioError|ManifestError|TextError|AugmentError): (.+)", str(err))
            if found and found[-1][0] == "AugmentError":
                raise AugmentError(found[-1][1].strip()) from None
            raise ManifestError(found[-1][1].strip() if found else str(err).splitlines()[0]) \
                from None
        yield item
