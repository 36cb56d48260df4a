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

from src.augment import Augmenter, speed_frames
from src.conv_spec import output_lengths
from src.features import (
    AudioError,
    audio_info,
    features_of,
    featurize,
    load_audio,
    num_frames,
    stft_params,
)
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


def cut_batches(frames, batch_size, group_size=1):
    """Utterance indices sorted by `frames` and cut every `batch_size` (index arrays).

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
    return batches


def batch_bounds(frames, batches, num_buckets):
    """(bounds, maxima): at most `num_buckets` pad lengths for `batches` (bucket_bounds, +1 frame
    of slack for resampled audio, whose length is estimated from its header at the original
    rate) and each batch's longest utterance."""
    frames = np.asarray(frames)
    maxima = np.array([frames[b].max() for b in batches])
    sizes = np.array([len(b) for b in batches])
    return bucket_bounds(maxima, sizes, num_buckets) + 1, maxima


def make_batches(frames, batch_size, num_buckets, group_size=1):
    """Group utterance indices into batches of similar length and pick each batch's pad length.

    frames: per-utterance frame counts. Returns (batches, pad_lengths): batches from
    cut_batches, pad_lengths the padded frame count of each batch, taken from at most
    `num_buckets` distinct values (batch_bounds: least padding).
    """
    batches = cut_batches(frames, batch_size, group_size)
    bounds, maxima = batch_bounds(frames, batches, num_buckets)
    return batches, bounds[np.searchsorted(bounds, maxima + 1)]


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

    Items are micro-batches; with `accumulate` > 1 an optimizer step takes `accumulate`
    consecutive ones of its epoch (micro_batches), the last step of an epoch the rest. Each
    epoch has a plan: batches of similar length (cut_batches), each padded to one of at most
    `num_buckets` lengths fixed for the whole run (few compiled graph shapes), visited in a
    seeded shuffled order (with `sortagrad`, the first epoch goes from the shortest batches to
    the longest, as in the DeepSpeech2 paper), restricted to this rank's shard.

    Speed perturbation (augmenter.speed) draws a factor per utterance per epoch, seeded by
    (seed, epoch); the epoch's batches are cut by the perturbed lengths (speed_frames, an upper
    bound) and padded to the run's bounds, which are those of every utterance at the slowest
    factor: the k-th longest batch of any epoch is no longer than the k-th of that worst case,
    so nothing is cropped. An utterance whose transcript would not fit CTC at a faster factor
    keeps 1.0 when that factor is drawn (counted: speed_kept). Without speed perturbation every
    epoch has the same batches (only their order changes).

    Item: inputs (B, 1, F, T) float32, input_lengths (B,) int32, targets (B, S) int32 (S fixed
    per pad length), target_lengths (B,) int32.
    """

    def __init__(self, utts, cfg, batch_size, num_buckets, epochs=1, shuffle=False, seed=0,
                 rank=0, group_size=1, sortagrad=False, augmenter=None, accumulate=1):
        if not utts:
            raise ManifestError("no usable utterances")
        self.utts, self.batch_size = utts, batch_size
        self.n_fft, self.hop = stft_params(cfg.features)
        self.features = cfg.features
        self.epochs, self.shuffle, self.seed, self.sortagrad = epochs, shuffle, seed, sortagrad
        self.rank, self.group_size, self.accumulate = rank, group_size, accumulate
        self.augmenter = augmenter
        self.factors = np.array(augmenter.factors if augmenter else [1.0])
        self.frames = np.array([u.frames for u in utts])
        self._fits = self._ctc_fits()  # (N, K): factor k keeps utterance n trainable under CTC
        self.speed_kept = int((~self._fits).any(axis=1).sum())
        self.bounds, self.label_width = self._shapes(num_buckets)
        self.micro_per_epoch = len(cut_batches(self.frames, batch_size, group_size)) // group_size
        self.steps_per_epoch = -(-self.micro_per_epoch // accumulate)
        if self.micro_per_epoch == 0:
            raise ManifestError(f"{len(utts)} utterances cannot feed {group_size} devices")
        self._plans = {}
        batches, pad, _, frames = self.plan(0)
        self.padding_fraction = padding_fraction(frames, batches, pad)

    def _shapes(self, num_buckets):
        """(pad lengths, {pad length: label width}), fixed for the run (one graph shape each).

        The pad lengths are those of every utterance at the slowest factor, 1.0 included (an
        utterance kept at 1.0 for CTC is longer than at any faster factor); a label width is the
        longest label that can land in a batch padded to that length.
        """
        slowest = min(self.factors.min(), 1.0)
        fastest = max(self.factors.max(), 1.0)
        worst = np.array([speed_frames(f, slowest, self.hop) for f in self.frames])
        bounds, _ = batch_bounds(worst, cut_batches(worst, self.batch_size, self.group_size),
                                 num_buckets)
        lows = np.array([speed_frames(f, fastest, self.hop) - 1 for f in self.frames])
        widths = {int(p): max([len(u.label) for u, low in zip(self.utts, lows) if low < p],
                              default=1) for p in bounds}
        return bounds, widths

    def _ctc_fits(self):
        fits = np.ones((len(self.utts), len(self.factors)), bool)
        for n, u in enumerate(self.utts):
            need = len(u.label) + sum(1 for a, b in zip(u.label, u.label[1:]) if a == b)
            for k, factor in enumerate(self.factors):
                if factor > 1.0:  # shorter: lower bound of its frames
                    shortest = speed_frames(u.frames, factor, self.hop) - 3
                    fits[n, k] = output_lengths(shortest) >= need
        return fits

    def epoch_factors(self, epoch):
        """Speed factor of every utterance in `epoch` (1.0 without speed perturbation)."""
        if len(self.factors) == 1 and self.factors[0] == 1.0:
            return np.ones(len(self.utts))
        pick = np.random.default_rng([self.seed, epoch, 1]).integers(0, len(self.factors),
                                                                      len(self.utts))
        ok = self._fits[np.arange(len(self.utts)), pick]
        return np.where(ok, self.factors[pick], 1.0)

    def plan(self, epoch):
        """(batches, pad lengths, speed factors, frames) of `epoch`: every batch of every rank;
        frames are the utterances' frame counts (upper bounds) as the epoch presents them."""
        if epoch not in self._plans:
            if len(self._plans) >= 4:  # a few epochs around the current one
                self._plans.pop(next(iter(self._plans)))
            self._plans[epoch] = self._make_plan(epoch)
        return self._plans[epoch]

    def _make_plan(self, epoch):
        factors = self.epoch_factors(epoch)
        frames = np.array([speed_frames(f, s, self.hop) for f, s in zip(self.frames, factors)])
        batches = cut_batches(frames, self.batch_size, self.group_size)
        maxima = np.array([frames[b].max() for b in batches])
        return batches, self.bounds[np.searchsorted(self.bounds, maxima + 1)], factors, frames

    def epoch_order(self, epoch):
        """Batch indices (into plan(epoch)) this rank visits in `epoch`."""
        order = np.argsort(self.plan(epoch)[1], kind="stable")  # shortest first
        if self.shuffle and not (self.sortagrad and epoch == 0):
            order = np.random.default_rng([self.seed, epoch]).permutation(order)
        return order[self.rank::self.group_size]

    def micro_batches(self, step):
        """Item indices (micro-batches) of optimizer step `step`."""
        epoch, k = divmod(step, self.steps_per_epoch)
        first = epoch * self.micro_per_epoch + k * self.accumulate
        return range(first, min(first + self.accumulate, (epoch + 1) * self.micro_per_epoch))

    def _item(self, item):
        """(utterances, pad length, speed factors) of item (micro-batch) `item`."""
        epoch, k = divmod(int(item), self.micro_per_epoch)
        batches, pad, factors, _ = self.plan(epoch)
        index = self.epoch_order(epoch)[k]
        chosen = batches[index]
        return [self.utts[i] for i in chosen], int(pad[index]), factors[chosen]

    def batch_utterances(self, step):
        """Utterances of optimizer step `step`."""
        return [u for item in self.micro_batches(step) for u in self._item(item)[0]]

    def __len__(self):
        return self.epochs * self.micro_per_epoch

    def __getitem__(self, item):
        utts, pad, factors = self._item(item)
        width = self.label_width[pad]
        n_freq = self.n_fft // 2 + 1
        inputs = np.zeros((len(utts), 1, n_freq, pad), np.float32)
        lengths = np.zeros(len(utts), np.int32)
        targets = np.zeros((len(utts), width), np.int32)
        target_lengths = np.zeros(len(utts), np.int32)
        for j, (u, factor) in enumerate(zip(utts, factors)):
            spec = self.utterance_features(u, factor, [self.seed, int(item), self.rank, j])
            if spec.shape[1] > pad:
                raise ManifestError(f"{u.audio}: audio is {spec.shape[1]} frames, longer than its "
                                    "manifest duration says; regenerate the manifest")
            inputs[j, 0, :, :spec.shape[1]] = spec
            lengths[j] = spec.shape[1]
            targets[j, :len(u.label)] = u.label
            target_lengths[j] = len(u.label)
        return inputs, lengths, targets, target_lengths

    def utterance_features(self, utt, factor, seed):
        """The (augmented) spectrogram (F, T) of `utt`; the augmentations draw from a generator
        seeded by `seed` (seed, item, rank, position), so a resumed run repeats them."""
        aug = self.augmenter
        if aug is None or not (aug.on_wave or aug.on_spec):
            return featurize(utt.audio, self.features)
        rng = np.random.default_rng(seed)
        if aug.on_wave:
            wave = load_audio(utt.audio, self.features.sample_rate)
            spec = features_of(aug.wave(wave, float(factor), rng), self.features)
        else:
            spec = featurize(utt.audio, self.features)
        return aug.spec(spec, rng)


def training_source(utts, cfg, rank=0, group_size=1):
    """The BatchSource of a training run as configured (shuffled, sortagrad, augmentation,
    gradient accumulation, this rank's shard)."""
    augmenter = Augmenter(cfg.augment, cfg.features.sample_rate)
    return BatchSource(utts, cfg, cfg.data.batch_size, cfg.data.num_buckets,
                       epochs=cfg.train.epochs, shuffle=True, seed=cfg.seed, rank=rank,
                       group_size=group_size, sortagrad=cfg.data.sortagrad, augmenter=augmenter,
                       accumulate=cfg.train.accumulate_steps)


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
            found = re.findall(r"(?:AudioError|ManifestError|TextError): (.+)", str(err))
            raise ManifestError(found[-1].strip() if found else str(err).splitlines()[0]) from None
        yield item
