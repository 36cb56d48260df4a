"""CTC decoding of log-probabilities into text (numpy; no torch)."""
import numpy as np


def greedy_decode(log_probs, lengths, labels):
    """Best path per utterance: argmax per step, repeats merged, blanks removed.

    log_probs: (T, B, C) array; lengths: (B,) valid steps; labels: list, blank last.
    Returns a list of B strings.
    """
    blank = len(labels) - 1
    best = np.asarray(log_probs).argmax(axis=-1)  # (T, B)
    texts = []
    for b, n in enumerate(np.asarray(lengths)):
        path = best[: int(n), b]
        keep = np.ones(len(path), dtype=bool)
        keep[1:] = path[1:] != path[:-1]
        texts.append("".join(labels[i] for i in path[keep] if i != blank))
    return texts
