"""The one inference path: audio file -> features -> network -> log-probabilities -> decoder.

Used by eval.py, per-epoch validation, export --verify (and transcription). Features are computed
per utterance in a thread pool (libsndfile and the FFTs release the GIL), so one file that fails
to decode is reported and skipped instead of ending the run; batches are padded to the few
bucket lengths of src.dataset.make_batches, so graph mode compiles a handful of shapes.
"""
import contextlib
from collections import deque
from concurrent.futures import ThreadPoolExecutor

import mindspore as ms
import numpy as np

from src.dataset import make_batches
from src.features import AudioError, featurize


@contextlib.contextmanager
def eval_mode(net):
    """Run `net` in inference mode (BatchNorm statistics fixed) and restore its mode after."""
    was_training = net.training
    net.set_train(False)
    try:
        yield net
    finally:
        net.set_train(was_training)


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


def recognize(net, paths, frames, cfg, pools, bar=None):
    """Transcripts of audio files by each of `pools` (src.decoder.DecoderPool): yields (index,
    [Hypothesis per pool] or None, error or None) per file, in batch order. Decoding runs
    beside the network: a file's result is yielded once it is done or more than two batches
    of files wait behind it."""
    pending = deque()  # (index, [Future per pool] or None, error)
    window = 2 * cfg.data.batch_size
    for i, probs, err in utterance_log_probs(net, paths, frames, cfg, bar):
        pending.append((i, None if probs is None else [p.submit(probs) for p in pools], err))
        while pending and (len(pending) > window or _done(pending[0])):
            yield _result(pending.popleft())
    while pending:
        yield _result(pending.popleft())


def _done(item):
    return item[1] is None or all(f.done() for f in item[1])


def _result(item):
    i, futures, err = item
    return i, None if futures is None else [f.result() for f in futures], err
