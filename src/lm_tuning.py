"""Grid search of the LM weights (decode.alpha x decode.beta) on cached network outputs.

The network runs once over the dev manifest; its log-probabilities are cached in
<output_dir>/outputs-<key>.npz (key: checkpoint, manifest, features, labels), so another grid,
beam width or LM re-decodes without running the network again. Each (alpha, beta) pair decodes
every utterance in the worker processes of a DecoderPool (src.decoder), which load the LM once
each and change only its weights from one pair to the next.
"""
import csv
import hashlib
import json
import math
import os

import numpy as np

from src.decoder import DecoderPool
from src.errors import UserError
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
    for key in ("alpha_from", "alpha_to", "beta_from", "beta_to"):
        if not math.isfinite(tune_cfg[key]):
            raise UserError(f"tune_lm.{key} must be a finite number; got {tune_cfg[key]}")
    if min(tune_cfg.alpha_from, tune_cfg.alpha_to) < 0:
        raise UserError("tune_lm.alpha_from and alpha_to must be >= 0 (an LM weight)")
    alphas = np.linspace(tune_cfg.alpha_from, tune_cfg.alpha_to, tune_cfg.alpha_steps)
    betas = np.linspace(tune_cfg.beta_from, tune_cfg.beta_to, tune_cfg.beta_steps)
    return [(round(float(a), 4), round(float(b), 4)) for a in alphas for b in betas]


def search(references, outputs, labels, decode_cfg, pairs, workers):
    """Score every (alpha, beta) pair on the cached outputs [(T_i, C)] with the decoder of
    decode_cfg (beam search + LM) in `workers` DecoderPool processes (each loads the LM once);
    [(alpha, beta, ErrorRate)] in grid order."""
    pool = DecoderPool(decode_cfg, labels, workers)
    bar = progress(total=len(pairs), desc="alpha x beta", unit="pair")
    try:
        futures = [[pool.submit(p, alpha=a, beta=b) for p in outputs] for a, b in pairs]
        results = []
        for (alpha, beta), row in zip(pairs, futures):
            rates = ErrorRate()
            for reference, future in zip(references, row):
                rates.update(reference, future.result().text)
            results.append((alpha, beta, rates))
            bar.update(1)
    finally:
        pool.close()
        bar.close()
    return results


def edge_note(tune_cfg, alpha, beta):
    """One line when the best alpha or beta lies on an edge of the grid that a wider range could
    move (alpha stays >= 0), with that range; "" otherwise."""
    wider = []  # (weight, best value, range key to widen, its new value)
    for name, best in (("alpha", alpha), ("beta", beta)):
        start, stop = tune_cfg[f"{name}_from"], tune_cfg[f"{name}_to"]
        if tune_cfg[f"{name}_steps"] < 2:
            continue
        for key, edge, beyond in (("to", stop, 2 * stop - start), ("from", start, 2 * start - stop)):
            beyond = max(beyond, 0.0) if name == "alpha" else beyond
            if best == round(edge, 4) and beyond != edge:
                wider.append((name, best, key, beyond))
                break
    if not wider:
        return ""
    found = " and ".join(f"{name} {best}" for name, best, _, _ in wider)
    flags = " ".join(f"--{name}_{key}={value:g}" for name, _, key, value in wider)
    return (f"note: best {found}: on the edge of the grid, the optimum may lie beyond it; "
            f"try a wider range, e.g. {flags}")


def best_of(results):
    """The pair with the lowest WER (then CER, then the smaller weights)."""
    return min(results, key=lambda r: (r[2].wer, r[2].cer, r[0], r[1]))


def write_grid(path, results):
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["alpha", "beta", "wer", "cer"])
        for alpha, beta, rates in results:
            writer.writerow([alpha, beta, f"{rates.wer:.4f}", f"{rates.cer:.4f}"])
