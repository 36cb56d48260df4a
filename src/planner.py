"""Epoch plans of a run: which utterances form each batch, padded to which length, visited in
which order on which device (pure NumPy: no framework, no audio, no config).

    planner = EpochPlanner(frames, labels, hop, Batching(batch_size=8, num_buckets=6))
    batches, pads, factors, frames = planner.plan(epoch)   # every batch of every device
    planner.epoch_order(epoch)                             # this device's batches, in order
    planner.micro_batches(step)                            # items of optimizer step `step`

Utterances sorted by length are cut into batches of `batch_size` (similar lengths together);
each batch is padded to one of at most `num_buckets` lengths fixed for the run (few compiled
graph shapes); the batch order is shuffled every epoch with a seeded generator, so a resumed
run repeats the plan of an uninterrupted one. Nothing is cropped or dropped. Everything is
computed over arrays of all the utterances at once: a plan of LibriSpeech's 281k training
utterances takes about a second (benchmarks/data_start.py).
"""
from collections import namedtuple

import numpy as np

from src.conv_spec import output_lengths
from src.errors import UserError
from src.features import speed_frames
from src.manifest import ManifestError

# How a run batches its utterances (cfg.data, cfg.train, cfg.seed; the device's rank in a group
# of `group_size`). `accumulate` micro-batches make one optimizer step.
Batching = namedtuple("Batching", "batch_size num_buckets epochs shuffle seed sortagrad "
                                  "accumulate rank group_size",
                      defaults=(1, False, 0, False, 1, 0, 1))

# One epoch: batches (index arrays into the utterances), pads (one pad length per batch), factors
# (N,) speed factor per utterance, frames (N,) frame counts (upper bounds) at those factors.
EpochPlan = namedtuple("EpochPlan", "batches pads factors frames")


def ctc_steps(labels):
    """(N,) network output steps each of the N label sequences needs under CTC: one per label
    plus a blank between two equal consecutive labels. One pass over all labels concatenated."""
    lengths = np.fromiter(map(len, labels), np.int64, len(labels))
    if not lengths.sum():
        return lengths
    flat = np.concatenate([np.asarray(label) for label in labels])
    ends = np.cumsum(lengths)
    starts = ends - lengths
    same = flat[1:] == flat[:-1]  # pair (p, p + 1)
    inner = starts[(starts > 0) & (starts < len(flat))]
    same[inner - 1] = False  # pairs that cross from one label to the next
    pairs = np.flatnonzero(same)  # a label's pairs are those from its start to its end - 2
    repeats = np.searchsorted(pairs, ends - 1) - np.searchsorted(pairs, starts)
    return lengths + np.where(lengths >= 2, repeats, 0)


def fits_ctc(frames, label):
    """True when `label` fits the network output of `frames` spectrogram frames under CTC."""
    return bool(output_lengths(frames) >= ctc_steps([label])[0])


def batch_maxima(frames, batches):
    """(len(batches),) longest of `frames` in each batch (index arrays, none empty)."""
    sizes = np.fromiter(map(len, batches), np.int64, len(batches))
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
    return np.maximum.reduceat(np.asarray(frames)[np.concatenate(batches)], starts)


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
    maxima = batch_maxima(frames, batches)
    sizes = np.fromiter(map(len, batches), np.int64, len(batches))
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
    real = int(np.asarray(frames)[np.concatenate(batches)].sum())
    sizes = np.fromiter(map(len, batches), np.int64, len(batches))
    total = int((sizes * np.asarray(pad_lengths, np.int64)).sum())
    return 1.0 - real / max(total, 1)


class EpochPlanner:
    """The plan of every epoch of a run over N utterances, from their frame counts and labels.

    Items are micro-batches; with `accumulate` > 1 an optimizer step takes `accumulate`
    consecutive ones of its epoch (micro_batches), the last step of an epoch the rest. Each
    epoch's batches (cut_batches) are padded to the run's `bounds` and visited in a seeded
    shuffled order (with `sortagrad`, the first epoch goes from the shortest batches to the
    longest, as in the DeepSpeech2 paper), restricted to this rank's shard.

    Speed perturbation (`factors` other than 1.0) draws a factor per utterance per epoch, seeded
    by (seed, epoch); the epoch's batches are cut by the perturbed lengths (speed_frames, an upper
    bound) and padded to the run's bounds, which are those of every utterance at the slowest
    factor: the k-th longest batch of any epoch is no longer than the k-th of that worst case,
    so nothing is cropped. An utterance whose transcript would not fit CTC at a faster factor
    keeps 1.0 when that factor is drawn (counted: speed_kept). Epochs before `speed_from`
    (0-based) play every utterance at 1.0. Without speed perturbation every epoch has the same
    batches (only their order changes).
    """

    def __init__(self, frames, labels, hop, batching, factors=(1.0,), speed_from=0):
        """frames (N,) spectrogram frames per utterance, labels N label sequences, hop the STFT
        hop in samples, batching a Batching, factors the speed factors drawn from from epoch
        `speed_from` on."""
        if not len(frames):
            raise ManifestError("no usable utterances")
        self.frames, self.hop, self.batching = np.asarray(frames), hop, batching
        self.factors = np.array(factors, float)  # (K,)
        self.speed_from = speed_from
        self._fits = self._ctc_fits(ctc_steps(labels))  # (N, K): factor k keeps n trainable
        self.speed_kept = int((~self._fits).any(axis=1).sum())
        self.bounds, self.label_width = self._shapes(
            np.fromiter(map(len, labels), np.int64, len(labels)))
        self.micro_per_epoch = self._micro_per_epoch()
        self.steps_per_epoch = -(-self.micro_per_epoch // batching.accumulate)
        self._plans = {}
        batches, pads, _, frames = self.plan(0)
        self.padding_fraction = padding_fraction(frames, batches, pads)

    @property
    def accumulate(self):
        """Micro-batches per optimizer step."""
        return self.batching.accumulate

    def _micro_per_epoch(self):
        """Micro-batches of one device per epoch; a UserError when there are too few for the
        devices or for one optimizer step of `accumulate` micro-batches."""
        b = self.batching
        count = len(cut_batches(self.frames, b.batch_size, b.group_size)) // b.group_size
        if count == 0:
            raise ManifestError(f"{len(self.frames)} utterances cannot feed {b.group_size} devices")
        if b.accumulate > count:  # else every epoch would silently make one optimizer step
            raise UserError(f"train.accumulate_steps ({b.accumulate}) is more than the {count} "
                            f"batches of an epoch (per device): set --accumulate_steps to at "
                            f"most {count} or lower --batch_size")
        return count

    def _frames_at(self, factors):
        """(N,) frame counts (upper bounds) of the utterances at speed `factors` (one or (N,)):
        speed_frames once per distinct (frames, factor) pair."""
        speeds, code = np.unique(np.broadcast_to(factors, self.frames.shape), return_inverse=True)
        k = len(speeds)
        pairs, inverse = np.unique(self.frames * k + code, return_inverse=True)  # (frames, speed)
        counts = [speed_frames(int(p // k), float(speeds[p % k]), self.hop) for p in pairs]
        return np.array(counts, np.int64)[inverse]

    def _ctc_fits(self, steps):
        """(N, K) bool: utterance n (needing steps[n] CTC output steps) fits CTC at factor k.
        Slower factors only lengthen it; a faster one is judged on a lower bound of its frames
        (speed_frames is at most 3 above)."""
        fits = np.ones((len(steps), len(self.factors)), bool)
        for k, factor in enumerate(self.factors):
            if factor > 1.0:
                fits[:, k] = output_lengths(self._frames_at(factor) - 3) >= steps
        return fits

    def _shapes(self, label_lengths):
        """(pad lengths, {pad length: label width}), fixed for the run (one graph shape each).

        The pad lengths are those of every utterance at the slowest factor, 1.0 included (an
        utterance kept at 1.0 for CTC is longer than at any faster factor); a label width is the
        longest label that can land in a batch padded to that length.
        """
        b = self.batching
        worst = self._frames_at(min(self.factors.min(), 1.0))
        bounds, _ = batch_bounds(worst, cut_batches(worst, b.batch_size, b.group_size),
                                 b.num_buckets)
        lows = self._frames_at(max(self.factors.max(), 1.0)) - 1
        widths = {int(p): int(label_lengths[lows < p].max()) if (lows < p).any() else 1
                  for p in bounds}
        return bounds, widths

    def epoch_factors(self, epoch):
        """(N,) speed factor of every utterance in `epoch` (1.0 without speed perturbation, or
        before epoch `speed_from`)."""
        n = len(self.frames)
        if (len(self.factors) == 1 and self.factors[0] == 1.0) or epoch < self.speed_from:
            return np.ones(n)
        rng = np.random.default_rng([self.batching.seed, epoch, 1])
        pick = rng.integers(0, len(self.factors), n)
        ok = self._fits[np.arange(n), pick]
        return np.where(ok, self.factors[pick], 1.0)

    def plan(self, epoch):
        """The EpochPlan of `epoch`: every batch of every rank."""
        if epoch not in self._plans:
            if len(self._plans) >= 4:  # a few epochs around the current one
                self._plans.pop(next(iter(self._plans)))
            self._plans[epoch] = self._make_plan(epoch)
        return self._plans[epoch]

    def _make_plan(self, epoch):
        factors = self.epoch_factors(epoch)
        frames = self._frames_at(factors)
        batches = cut_batches(frames, self.batching.batch_size, self.batching.group_size)
        maxima = batch_maxima(frames, batches)
        pads = self.bounds[np.searchsorted(self.bounds, maxima + 1)]
        return EpochPlan(batches, pads, factors, frames)

    def epoch_order(self, epoch):
        """Batch indices (into plan(epoch).batches) this rank visits in `epoch`."""
        b = self.batching
        order = np.argsort(self.plan(epoch).pads, kind="stable")  # shortest first
        if b.shuffle and not (b.sortagrad and epoch == 0):
            order = np.random.default_rng([b.seed, epoch]).permutation(order)
        return order[b.rank::b.group_size]

    def micro_batches(self, step):
        """Item indices (micro-batches) of optimizer step `step`."""
        epoch, k = divmod(step, self.steps_per_epoch)
        first = epoch * self.micro_per_epoch + k * self.accumulate
        return range(first, min(first + self.accumulate, (epoch + 1) * self.micro_per_epoch))

    def item_batch(self, item):
        """(utterance indices (B,), pad length, speed factors (B,)) of micro-batch `item`."""
        epoch, k = divmod(int(item), self.micro_per_epoch)
        batches, pads, factors, _ = self.plan(epoch)
        index = self.epoch_order(epoch)[k]
        chosen = batches[index]
        return chosen, int(pads[index]), factors[chosen]

    def __len__(self):
        """Micro-batches of the whole run on this rank."""
        return self.batching.epochs * self.micro_per_epoch
