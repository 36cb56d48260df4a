"""CTC decoders: log-probabilities (T, C) of one utterance -> Hypothesis (text + word frames).

    decoder = make_decoder(cfg.decode, labels)   # GreedyDecoder or BeamDecoder
    hyp = decoder.decode(log_probs)              # log_probs (T, C), T = valid output steps
    hyp.text, hyp.words                          # "HELLO WORLD", [("HELLO", 0, 9), ...]

Both decoders share this interface, so eval.py, validation, transcribe.py and the LM tuning
run either one; DecoderPool runs one in worker processes beside the network (decode.workers).
Word spans are output frames [start, end): the word's first character frame to one past its
last. Beam search is pyctcdecode's CTC prefix beam search, optionally with a KenLM n-gram
language model (ARPA or KenLM binary) weighted by alpha, plus beta per word.
"""
import multiprocessing
import os
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from easydict import EasyDict

from src.errors import UserError


@dataclass
class Hypothesis:
    text: str
    words: list = field(default_factory=list)  # [(word, start frame, end frame)]


def decoder_settings(decode_cfg):
    """The settings that define a decoder's output (recorded next to the figures it gives)."""
    if decode_cfg.method == "greedy":
        return {"method": "greedy"}
    return {"method": "beam", "beam_width": int(decode_cfg.beam_width),
            "lm_path": decode_cfg.lm_path or "", "alpha": float(decode_cfg.alpha),
            "beta": float(decode_cfg.beta)}


class GreedyDecoder:
    """Best path: argmax per step, repeats merged, blanks removed; words split at spaces."""

    def __init__(self, labels):
        self.labels = list(labels)
        self.blank, self.space = len(labels) - 1, self.labels.index(" ")

    def decode(self, log_probs):
        best = np.asarray(log_probs).argmax(axis=-1)  # (T,)
        words, current = [], None
        for t, label in enumerate(best):
            if label == self.blank or (t > 0 and label == best[t - 1]):
                if current is not None and label != self.blank:
                    current[2] = t + 1  # a repeated character frame extends the word
                continue
            if label == self.space:
                current = None
                continue
            if current is None:
                current = ["", t, t + 1]
                words.append(current)
            current[0] += self.labels[label]
            current[2] = t + 1
        return Hypothesis(" ".join(w[0] for w in words), [tuple(w) for w in words])


class BeamDecoder:
    """CTC prefix beam search (pyctcdecode), with a KenLM language model when lm_path is set.

    alpha weighs the LM's natural-log probability, beta is added per word; pyctcdecode reads
    labels.json as it is ("_" is its blank, " " its word separator).
    """

    def __init__(self, labels, beam_width, lm_path="", alpha=0.5, beta=1.0):
        try:
            from pyctcdecode import build_ctcdecoder
        except ImportError:
            raise UserError("beam search needs pyctcdecode and kenlm: "
                            "pip install -r requirements.txt") from None
        self.beam_width = int(beam_width)
        kwargs = {}
        if lm_path:
            check_lm_file(lm_path)
            kwargs = {"kenlm_model_path": lm_path, "alpha": float(alpha), "beta": float(beta)}
        try:
            self._decoder = build_ctcdecoder(list(labels), **kwargs)
        except (OSError, RuntimeError, ValueError) as err:
            raise UserError(f"cannot load language model {lm_path}: "
                            f"{str(err).strip().splitlines()[0]}") from None

    def set_weights(self, alpha, beta):
        """Change the LM weights without reloading the LM (used by the alpha/beta search)."""
        self._decoder.reset_params(alpha=float(alpha), beta=float(beta))

    def decode(self, log_probs):
        text, _, frames, _, _ = self._decoder.decode_beams(
            np.asarray(log_probs, np.float64), beam_width=self.beam_width)[0]
        words = [(w, int(s), int(e)) for w, (s, e) in frames]
        return Hypothesis(text, words)


def check_lm_file(path):
    """One clear line for an LM file that KenLM (built without zlib here) cannot read."""
    if not os.path.isfile(path):
        raise UserError(f"language model not found: {path}")
    if path.endswith(".gz"):
        raise UserError(f"language model {path} is gzip-compressed; this KenLM reads plain ARPA "
                        f"or KenLM binary files: gunzip -k {path} and use "
                        f"{path[:-3]}")


def make_decoder(decode_cfg, labels):
    """The decoder that decode_cfg (the config's decode section) describes."""
    if decode_cfg.method == "greedy":
        return GreedyDecoder(labels)
    return BeamDecoder(labels, decode_cfg.beam_width, decode_cfg.lm_path, decode_cfg.alpha,
                       decode_cfg.beta)


class DecoderPool:
    """A decoder run in `workers` spawned processes beside the network (each loads the LM once);
    inline when workers is 0 or the decoder is greedy (cheaper than shipping its input).

        pool = DecoderPool(cfg.decode, labels, workers=1)
        future = pool.submit(log_probs)        # (T, C) -> Future of a Hypothesis
        pool.close()

    Workers are spawned, not forked: the parent holds MindSpore's threads. An error while
    decoding (an LM that does not load) comes back from future.result() as the UserError.
    """

    def __init__(self, decode_cfg, labels, workers):
        self.settings, self.labels = decoder_settings(decode_cfg), tuple(labels)
        self.name = make_name(decode_cfg)
        inline = workers == 0 or decode_cfg.method == "greedy"
        self._decoder = make_decoder(decode_cfg, labels) if inline else None
        self._pool = None if inline else ProcessPoolExecutor(
            workers, mp_context=multiprocessing.get_context("spawn"))

    def submit(self, log_probs):
        if self._pool is not None:
            return self._pool.submit(_decode_in_worker, self.settings, self.labels, log_probs)
        future = Future()
        future.set_result(self._decoder.decode(log_probs))
        return future

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


_WORKER_DECODERS = {}


def _decode_in_worker(settings, labels, log_probs):
    key = (tuple(sorted(settings.items())), labels)
    if key not in _WORKER_DECODERS:
        _WORKER_DECODERS[key] = BeamDecoder(labels, settings["beam_width"], settings["lm_path"],
                                            settings["alpha"], settings["beta"])
    return _WORKER_DECODERS[key].decode(log_probs)


def make_name(decode_cfg):
    """The name a decoder of decode_cfg reports its figures under."""
    if decode_cfg.method == "greedy":
        return "greedy"
    return "beam+lm" if decode_cfg.lm_path else "beam"


def decoder_pools(decode_cfg, labels, with_greedy=False):
    """[DecoderPool of the configured decoder] (decode.workers processes), then a greedy one
    when with_greedy and the configured decoder is not greedy (side-by-side figures)."""
    pools = [DecoderPool(decode_cfg, labels, decode_cfg.workers)]
    if with_greedy and decode_cfg.method != "greedy":
        pools.append(DecoderPool(EasyDict(method="greedy"), labels, 0))
    return pools


def greedy_decode(log_probs, lengths, labels):
    """Greedy texts of a batch: log_probs (T, B, C), lengths (B,) -> B strings."""
    probs, decoder = np.asarray(log_probs), GreedyDecoder(labels)
    return [decoder.decode(probs[:int(n), b]).text for b, n in enumerate(np.asarray(lengths))]
