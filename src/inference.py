"""The one inference path: audio file -> features -> network -> log-probabilities -> decoder.

Used by eval.py, per-epoch validation, export --verify (and transcription). Features are computed
per utterance in a thread pool (libsndfile and the FFTs release the GIL), so one file that fails
to decode is reported and skipped instead of ending the run; batches are padded to the few
bucket lengths of src.planner.make_batches, so graph mode compiles a handful of shapes.
"""
import contextlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import mindspore as ms
import numpy as np
from mindspore import nn

from src.features import AudioError, featurize
from src.planner import make_batches


@contextlib.contextmanager
def eval_mode(net):
    """Run `net` in inference mode (BatchNorm statistics fixed), then put back the mode
    (training flag and phase) of `net` and of every cell in it, each its own.

    Cell.set_train is recursive: restoring only the outer cell's mode would give every inner
    cell the outer one's. Validation runs an InferenceNet, never set to train, around the
    network being trained, which then stayed in eval mode: each train-step graph compiled
    afterwards (a batch shape not seen before) trained with BatchNorm's moving statistics (never
    updated again) and, for a batch of one, the inference LSTM kernel, whose gradients come in
    another order, so data-parallel ranks ran mismatched gradient all-reduces and failed.
    """
    cells = [cell for _, cell in net.cells_and_names()] if isinstance(net, nn.Cell) else []
    modes = [(cell, cell.training, cell.phase) for cell in cells]
    was_training = net.training  # also for a stand-in with set_train only (tests, benchmarks)
    net.set_train(False)
    try:
        yield net
    finally:
        net.set_train(was_training)
        for cell, training, phase in modes:
            cell.add_flags(training=training)  # what set_train does, cell by cell
            cell.phase = phase


def _features(path, feature_cfg):
    try:
        return featurize(path, feature_cfg), None
    except AudioError as err:
        return None, str(err)


def pad_batch(specs, pad_to):
    """[(F, T_i)] -> x (B, 1, F, pad_to) float32, lengths (B,) int32."""
    x = np.zeros((len(specs), 1, specs[0].shape[0], pad_to), np.float32)
    for j, spec in enumerate(specs):
        x[j, 0, :, :spec.shape[1]] = spec
    return x, np.array([s.shape[1] for s in specs], np.int32)


def feature_batches(paths, frames, cfg, batch_size, workers=1):
    """Batches of features for audio files of (estimated) lengths `frames`, one batch ahead.

    Yields (indices, x (B, 1, F, T), lengths (B,), failures [(index, message)]) where
    indices are positions in `paths` whose features are in x (B may be 0 when all failed).
    """
    if not paths:  # e.g. a validation shard of a rank beyond the manifest's length
        return
    batches, pad = make_batches(frames, batch_size, cfg.data.num_buckets)
    with ThreadPoolExecutor(max(1, workers)) as pool:
        def submit(b):
            return [pool.submit(_features, paths[i], cfg.features) for i in b]
        pending = submit(batches[0])
        for k, batch in enumerate(batches):
            futures, pending = pending, submit(batches[k + 1]) if k + 1 < len(batches) else None
            results = [f.result() for f in futures]
            kept = [(i, spec) for i, (spec, _) in zip(batch, results) if spec is not None]
            failures = [(i, err) for i, (_, err) in zip(batch, results) if err is not None]
            longest = max([int(pad[k])] + [spec.shape[1] for _, spec in kept])
            x, lengths = pad_batch([s for _, s in kept], longest) if kept else (None, None)
            yield [i for i, _ in kept], x, lengths, failures


def log_probs(net, x, lengths):
    """Run an inference network (InferenceNet or a loaded MindIR GraphCell) on one batch.

    x (B, 1, F, T) float32, lengths (B,) int32 -> (log-probabilities (T', B, C), lengths (B,)).
    """
    out, out_lengths = net(ms.Tensor(x), ms.Tensor(lengths))
    return out.asnumpy(), out_lengths.asnumpy()


def utterance_log_probs(net, paths, frames, cfg, bar=None):
    """Network outputs of audio files: yields (index, log-probabilities (T'_i, C) or None,
    error or None) per file, in batch order. `bar` (optional) is updated once per file."""
    with eval_mode(net):
        for indices, x, lengths, failures in feature_batches(
                paths, frames, cfg, cfg.data.batch_size, cfg.data.num_parallel_workers):
            for i, err in failures:
                yield i, None, err
            if indices:
                probs, out_lengths = log_probs(net, x, lengths)  # (T', B, C), (B,)
                for b, i in enumerate(indices):
                    yield i, probs[:int(out_lengths[b]), b], None
            if bar is not None:
                bar.update(len(indices) + len(failures))


def in_order(tasks, window):
    """Decodes in flight, results in submission order: `tasks` yields (tag, [Future] or None)
    as it submits them (None: nothing to wait for); yields the same pairs, oldest first, each
    once its futures are done or when more than `window` wait behind it, so that decoding runs
    beside the producer (the network) and at most `window` + 1 submitted tasks are held."""
    pending = deque()
    for task in tasks:
        pending.append(task)
        while pending and (len(pending) > window or _done(pending[0][1])):
            yield pending.popleft()
    yield from pending


def _done(futures):
    return futures is None or all(f.done() for f in futures)


def recognize(net, paths, frames, cfg, pools, bar=None):
    """Transcripts of audio files by each of `pools` (src.decoder.DecoderPool): yields (index,
    [Hypothesis per pool] or None, error or None) per file, in batch order. Decoding runs
    beside the network: a file's result is yielded once it is done or more than two batches
    of files wait behind it."""
    tasks = (((i, err), None if probs is None else [p.submit(probs) for p in pools])
             for i, probs, err in utterance_log_probs(net, paths, frames, cfg, bar))
    for (i, err), futures in in_order(tasks, 2 * cfg.data.batch_size):
        yield i, None if futures is None else [f.result() for f in futures], err
