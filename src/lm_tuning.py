"""Grid search of the LM weights (decode.alpha x decode.beta) on cached network outputs.

The network runs once over the dev manifest; its log-probabilities are cached in
<output_dir>/outputs-<key>.npz (key: checkpoint, manifest, features, labels), so another grid,
beam width or LM re-decodes without running the network again. Each (alpha, beta) pair decodes
every utterance with one BeamDecoder per worker process (the LM is loaded once per worker).
"""
import csv
import hashlib
import json
import multiprocessing
import os
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from src.decoder import BeamDecoder
from src.metrics import ErrorRate
from src.progress import progress


def cache_key(checkpoint, manifest, cfg):
    """Changes whenever the network outputs would: the files (path, size, mtime) and settings."""
    parts = [json.dumps(dict(cfg.features), sort_keys=True), cfg.labels_path]
    for path in (checkpoint, manifest):
        stat = os.stat(path)
        parts += [os.path.abspath(path), str(stat.st_size), str(stat.st_mtime_ns)]
    return hashlib.sha1("\n".join(parts).encode()).hexdigest()[:16]


def save_outputs(path, references, outputs):
    """references [str], outputs [(T'_i, C) float32] -> one .npz (written atomically)."""
    lengths = np.array([len(o) for o in outputs], np.int64)
    tmp = path + ".tmp.npz"
    np.savez(tmp, references=np.array(references, dtype=object).astype(str), lengths=lengths,
             log_probs=np.concatenate(outputs).astype(np.float32))
    os.replace(tmp, path)


def load_outputs(path):
    """The (references, outputs) of save_outputs."""
    with np.load(path) as data:
        bounds = np.cumsum(np.concatenate([[0], data["lengths"]]))
        probs = data["log_probs"]
        return list(data["references"]), [probs[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def grid(tune_cfg):
    """[(alpha, beta)] of the configured ranges (linspace; steps 1 = the 'from' value)."""
    alphas = np.linspace(tune_cfg.alpha_from, tune_cfg.alpha_to, tune_cfg.alpha_steps)
    betas = np.linspace(tune_cfg.beta_from, tune_cfg.beta_to, tune_cfg.beta_steps)
    return [(round(float(a), 4), round(float(b), 4)) for a in alphas for b in betas]


_worker = {}


def _init_worker(outputs_path, labels, beam_width, lm_path):
    _worker["data"] = load_outputs(outputs_path)
    _worker["decoder"] = BeamDecoder(labels, beam_width, lm_path)


def score(weights):
    """(alpha, beta) -> (alpha, beta, ErrorRate) over the worker's cached outputs."""
    alpha, beta = weights
    decoder = _worker["decoder"]
    decoder.set_weights(alpha, beta)
    rates = ErrorRate()
    for reference, probs in zip(*_worker["data"]):
        rates.update(reference, decoder.decode(probs).text)
    return alpha, beta, rates


def search(outputs_path, labels, decode_cfg, pairs, workers):
    """Score every (alpha, beta) pair; returns [(alpha, beta, ErrorRate)] in grid order.

    Workers are spawned (not forked): the parent holds MindSpore's threads."""
    init = (outputs_path, tuple(labels), decode_cfg.beam_width, decode_cfg.lm_path)
    bar = progress(total=len(pairs), desc="alpha x beta", unit="pair")
    results = []
    with ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context("spawn"),
                             initializer=_init_worker, initargs=init) as pool:
        for result in pool.map(score, pairs):
            results.append(result)
            bar.update(1)
    bar.close()
    return results


def best_of(results):
    """The pair with the lowest WER (then CER, then the smaller weights)."""
    return min(results, key=lambda r: (r[2].wer, r[2].cer, r[0], r[1]))


def write_grid(path, results):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["alpha", "beta", "wer", "cer"])
        for alpha, beta, rates in results:
            writer.writerow([alpha, beta, f"{rates.wer:.4f}", f"{rates.cer:.4f}"])
