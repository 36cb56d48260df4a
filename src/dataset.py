"""Manifests -> utterances -> length-bucketed, padded batches -> a MindSpore dataset.

Batching: utterances sorted by length are cut into batches of `batch_size` (similar lengths
together); each batch is padded to one of `num_buckets` lengths (few compiled graph shapes); the
batch order is shuffled every epoch with a seeded generator. Nothing is cropped: training
utterances longer than `max_duration`, and those too long for CTC (more labels than output
steps), are skipped and counted.
"""
import re
from collections import Counter, namedtuple

import numpy as np

from src.augment import spec_augment
from src.conv_spec import output_lengths
from src.features import AudioError, audio_info, featurize, num_frames, stft_params
from src.manifest import ManifestError, read_manifest
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


def load_utterances(manifest, cfg, encoder, max_duration=None, ctc_filter=True, report=None):
    """Read a manifest into Utterances (with encoded labels and frame counts).

    Skips (and counts in `report`) utterances over `max_duration` seconds and, with `ctc_filter`
    (training), those whose label cannot fit the network's output length under CTC.
    """
    report = Report() if report is None else report
    _, hop = stft_params(cfg.features)
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
        frames = num_frames(int(round(duration * cfg.features.sample_rate)), hop)
        repeats = sum(1 for a, b in zip(label, label[1:]) if a == b)
        if ctc_filter and output_lengths(frames) < len(label) + repeats:
            report["transcript too long for the audio (CTC)"] += 1
            continue
        utts.append(Utterance(e.audio, e.transcript, encoder.decode(label), label, frames))
    if encoder.dropped:
        report["characters dropped (not in labels.json)"] += sum(encoder.dropped.values())
    if not utts:
        first = f"; first: {report.files[0]}" if report.files else ""
        raise ManifestError(f"{manifest}: no usable utterances (skipped: {report.text()}{first})")
    return utts, report


def make_batches(frames, batch_size, num_buckets, group_size=1):
    """Group utterance indices into batches of similar length and pick each batch's pad length.

    frames: per-utterance frame counts. Returns (batches, pad_lengths): batches are index arrays
    (sorted by length, cut every `batch_size`), pad_lengths the padded frame count of each batch,
    taken from at most `num_buckets` distinct values (bucket_bounds: least padding, +1 frame of
    slack for resampled audio, whose length is estimated from its header at the original rate).
    With `group_size` devices the number of batches is made a multiple of it without dropping or
    repeating anything: the r shortest batches left over are dealt into `group_size` smaller
    batches.
    """
    frames = np.asarray(frames)
    order = np.argsort(frames, kind="stable")
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    leftover = len(batches) % group_size
    if leftover and len(order) >= group_size:
        spare = np.sort(np.concatenate(batches[:leftover]))
        spare = spare[np.argsort(frames[spare], kind="stable")]
        batches = [spare[r::group_size] for r in range(group_size)] + batches[leftover:]
    maxima = np.array([frames[b].max() for b in batches])
    sizes = np.array([len(b) for b in batches])
    bounds = bucket_bounds(maxima, sizes, num_buckets) + 1
    pad = bounds[np.searchsorted(bounds, maxima + 1)]
    return batches, pad


def bucket_bounds(maxima, sizes, num_buckets):
    """At most `num_buckets` pad lengths minimising the padding added to the batches.

    Batch i (longest utterance maxima[i], sizes[i] utterances) is padded to the smallest bound
    >= maxima[i]; the bounds are chosen by dynamic programming over the distinct maxima (exact
    optimum of sum(sizes * (bound - maxima))).
    """
    values, inverse = np.unique(maxima, return_inverse=True)
    weight = np.bincount(inverse, weights=sizes).astype(float)
    m, k = len(values), min(num_buckets, len(values))
    cw = np.concatenate([[0.0], np.cumsum(weight)])
    cwv = np.concatenate([[0.0], np.cumsum(weight * values)])

    def cost(i, j):  # bucket of values[i..j] (i may be an array) padded to values[j]
        return values[j] * (cw[j + 1] - cw[i]) - (cwv[j + 1] - cwv[i])

    best = cost(0, np.arange(m))  # one bucket ending at j
    choice = [np.zeros(m, dtype=int)]
    for _ in range(1, k):
        new, arg = best.copy(), np.full(m, -1)  # -1: no better with one more bucket
        for j in range(1, m):
            starts = np.arange(1, j + 1)
            total = best[starts - 1] + cost(starts, j)
            pick = int(np.argmin(total))
            if total[pick] < new[j]:
                new[j], arg[j] = total[pick], starts[pick]
        best = new
        choice.append(arg)
    ends, j, level = [], m - 1, k - 1
    while True:
        start = choice[level][j]
        level -= 1
        if start < 0:
            continue
        ends.append(j)
        if start == 0:
            return values[ends[::-1]]
        j = start - 1


def padding_fraction(frames, batches, pad_lengths):
    """Fraction of the padded frames that are padding."""
    real = sum(int(np.asarray(frames)[b].sum()) for b in batches)
    total = sum(len(b) * int(p) for b, p in zip(batches, pad_lengths))
    return 1.0 - real / max(total, 1)


class BatchSource:
    """Random-access source of padded batches for ms.dataset.GeneratorDataset.

    Item i is global step i: epoch i // steps_per_epoch, the (seeded) shuffled batch order of that
    epoch (with `sortagrad`, the first epoch goes from the shortest batches to the longest, as in
    the DeepSpeech2 paper), restricted to this rank's shard. Item: inputs (B, 1, F, T) float32,
    input_lengths (B,) int32, targets (B, S) int32 (S fixed per pad length), target_lengths (B,)
    int32.
    """

    def __init__(self, utts, cfg, batch_size, num_buckets, epochs=1, shuffle=False, seed=0,
                 rank=0, group_size=1, sortagrad=False, augment=None):
        if not utts:
            raise ManifestError("no usable utterances")
        self.utts = utts
        self.n_fft, _ = stft_params(cfg.features)
        self.features = cfg.features
        frames = [u.frames for u in utts]
        self.batches, self.pad = make_batches(frames, batch_size, num_buckets, group_size)
        self.padding_fraction = padding_fraction(frames, self.batches, self.pad)
        # Label width per pad length: the longest label padded to it (fixed, so one graph each).
        self.label_width = {}
        for b, p in zip(self.batches, self.pad):
            longest = max(len(utts[i].label) for i in b)
            self.label_width[p] = max(self.label_width.get(p, 1), longest)
        self.epochs, self.shuffle, self.seed, self.sortagrad = epochs, shuffle, seed, sortagrad
        self.rank, self.group_size = rank, group_size
        self.augment = augment if augment is not None and augment.spec_augment else None
        self.steps_per_epoch = len(self.batches) // group_size
        if self.steps_per_epoch == 0:
            raise ManifestError(f"{len(utts)} utterances cannot feed {group_size} devices")

    def epoch_order(self, epoch):
        """Batch indices this rank visits in `epoch`."""
        order = np.argsort(self.pad, kind="stable")  # shortest first
        if self.shuffle and not (self.sortagrad and epoch == 0):
            order = np.random.default_rng([self.seed, epoch]).permutation(order)
        return order[self.rank::self.group_size]

    def batch_utterances(self, step):
        """Utterances of global step `step`."""
        epoch, k = divmod(step, self.steps_per_epoch)
        return [self.utts[i] for i in self.batches[self.epoch_order(epoch)[k]]]

    def __len__(self):
        return self.epochs * self.steps_per_epoch

    def __getitem__(self, step):
        epoch, k = divmod(int(step), self.steps_per_epoch)
        index = self.epoch_order(epoch)[k]
        utts = [self.utts[i] for i in self.batches[index]]
        pad = int(self.pad[index])
        width = self.label_width[self.pad[index]]
        n_freq = self.n_fft // 2 + 1
        inputs = np.zeros((len(utts), 1, n_freq, pad), np.float32)
        lengths = np.zeros(len(utts), np.int32)
        targets = np.zeros((len(utts), width), np.int32)
        target_lengths = np.zeros(len(utts), np.int32)
        for j, u in enumerate(utts):
            spec = featurize(u.audio, self.features)  # (F, T)
            if spec.shape[1] > pad:
                raise ManifestError(f"{u.audio}: audio is {spec.shape[1]} frames, longer than its "
                                    "manifest duration says; regenerate the manifest")
            if self.augment is not None:  # seeded by (seed, step, position): resume-exact
                rng = np.random.default_rng([self.seed, int(step), self.rank, j])
                spec = spec_augment(spec, rng, self.augment)
            inputs[j, 0, :, :spec.shape[1]] = spec
            lengths[j] = spec.shape[1]
            targets[j, :len(u.label)] = u.label
            target_lengths[j] = len(u.label)
        return inputs, lengths, targets, target_lengths


def training_source(utts, cfg, rank=0, group_size=1):
    """The BatchSource of a training run as configured (shuffled, sortagrad, this rank's shard)."""
    return BatchSource(utts, cfg, cfg.data.batch_size, cfg.data.num_buckets,
                       epochs=cfg.train.epochs, shuffle=True, seed=cfg.seed, rank=rank,
                       group_size=group_size, sortagrad=cfg.data.sortagrad, augment=cfg.augment)


def create_dataset(source, num_parallel_workers=1, start_step=0):
    """MindSpore dataset over `source` (BatchSource), from global step `start_step` on."""
    import mindspore.dataset as ds
    indices = list(range(start_step, len(source)))
    sampler = ds.SequentialSampler() if start_step == 0 else ds.SubsetSampler(indices)
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
            found = re.findall(r"(?:AudioError|ManifestError|TextError): (.+)", str(err))
            raise ManifestError(found[-1].strip() if found else str(err).splitlines()[0]) from None
        yield item
