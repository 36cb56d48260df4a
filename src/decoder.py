"""CTC decoders: log-probabilities (T, C) of one utterance -> Hypothesis (text + word frames).

    decoder = make_decoder(cfg.decode, labels)   # the class DECODERS[cfg.decode.method]
    hyp = decoder.decode(log_probs)              # log_probs (T, C), T = valid output steps
    hyp.text, hyp.words                          # "HELLO WORLD", [("HELLO", 0, 9), ...]

eval.py, validation, transcribe.py and tune_lm.py decode through DecoderPool, which runs the
decoder in worker processes beside the network (decode.workers). Word spans are output frames
[start, end): the word's first character frame to one past its last.

Registry: DECODERS maps each value of decode.method to its class, and everything about a decoder
is looked up there: the allowed values of decode.method (src.config), its settings (the decode.*
keys it reads; recorded in summary.json and best.json, sent to worker processes), its checks, its
result name ("greedy", "beam+lm"), its construction and whether DecoderPool runs it in workers.
Adding a decoder is a change to this file only: a Decoder subclass decorated with @register that
sets `method` (its decode.method value), `keys` (the decode.* keys it reads, which are also the
keyword arguments of its __init__(labels, **settings)) and `pooled`, and defines
decode(log_probs) -> Hypothesis; where the defaults do not fit it overrides name(), check() and
settings(), and lists in `configurable` the settings its configure() changes without a rebuild.
(A decode.* key that no decoder read before also needs its default in src/default_config.yaml,
where the config learns its keys.)

The decoders: "greedy" (best path) and "beam", pyctcdecode's CTC prefix beam search, optionally
with a KenLM n-gram language model (ARPA or KenLM binary) weighted by alpha, plus beta per word,
and with hotwords: words or phrases favoured by hotword_weight per occurrence.
"""
import contextlib
import json
import multiprocessing
import os
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np
from easydict import EasyDict

from src.errors import UserError
from src.ngram import arpa_words
from src.text import normalize_transcript

DECODERS = {}  # decode.method -> Decoder class, in registration order


def register(cls):
    """Class decorator: `cls` is the decoder of decode.method == cls.method."""
    DECODERS[cls.method] = cls
    return cls


@dataclass
class Hypothesis:
    text: str
    words: list = field(default_factory=list)  # [(word, start frame, end frame)]


class Decoder:
    """What the registry knows of a decoder class; defaults for a decoder without options."""

    method = ""        # its decode.method value
    keys = ()          # the decode.* keys it reads = the keyword arguments of its __init__
    configurable = ()  # those that configure() changes on a built instance (the others say
                       # what it loads: a change of them builds a new one)
    pooled = False     # worth worker processes (False: cheaper than shipping its input to one)

    @classmethod
    def settings(cls, decode_cfg):
        """{"method": ..., key: value} of its keys in decode_cfg: what defines its output."""
        return {"method": cls.method, **{k: decode_cfg[k] for k in cls.keys}}

    @classmethod
    def name(cls, settings):
        """The name its figures are reported under."""
        return cls.method

    @classmethod
    def check(cls, settings, labels):
        """Raise UserError (one line) for settings it cannot decode these labels with."""

    def configure(self):
        """Apply the `configurable` settings to this instance (the missing ones at their
        defaults)."""


@register
class GreedyDecoder(Decoder):
    """Best path: argmax per step, repeats merged, blanks removed; words split at spaces."""

    method = "greedy"

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


@register
class BeamDecoder(Decoder):
    """CTC prefix beam search (pyctcdecode), with a KenLM language model when lm_path is set.

    alpha weighs the LM's natural-log probability, beta is added per word; every occurrence of a
    hotword (or of a word of a hotword phrase) adds hotword_weight, a partial one a share of it.
    pyctcdecode reads labels.json as it is ("_" is its blank, " " its word separator).
    """

    method = "beam"
    keys = ("beam_width", "lm_path", "alpha", "beta", "hotwords", "hotword_weight")
    configurable = ("beam_width", "alpha", "beta", "hotwords", "hotword_weight")
    pooled = True

    def __init__(self, labels, *, lm_path="", **settings):
        """settings: those of configure(); hotwords in the labels' form (upper-case)."""
        try:
            from pyctcdecode import build_ctcdecoder
        except ImportError:
            raise UserError("beam search needs pyctcdecode and kenlm: "
                            "pip install -r requirements.txt") from None
        kwargs = {}
        if lm_path:  # our word list: pyctcdecode's own includes <s>, and misses non-.arpa names
            kwargs = {"kenlm_model_path": lm_path, "unigrams": check_lm(lm_path, labels)}
        try:
            self._decoder = build_ctcdecoder(list(labels), **kwargs)
        except (OSError, RuntimeError, ValueError) as err:
            raise UserError(f"cannot load language model {lm_path}: "
                            f"{str(err).strip().splitlines()[0]}") from None
        self.configure(**settings)

    def configure(self, beam_width=128, alpha=0.5, beta=1.0, hotwords=(), hotword_weight=10.0):
        """Settings that need no reload of the LM (tune_lm changes alpha and beta per pair)."""
        self.beam_width, self.hotword_weight = int(beam_width), float(hotword_weight)
        self.hotwords = list(hotwords)
        self._decoder.reset_params(alpha=float(alpha), beta=float(beta))

    @classmethod
    def settings(cls, decode_cfg):
        """Hotwords normalised as transcripts are; the settings that do nothing left out (LM
        weights without an LM, hotword_weight without hotwords)."""
        settings = super().settings(decode_cfg)
        settings["hotwords"] = [normalize_transcript(str(h)) for h in settings["hotwords"]]
        if not settings["lm_path"]:
            del settings["alpha"], settings["beta"]
        if not settings["hotwords"]:
            del settings["hotword_weight"]
        return settings

    @classmethod
    def name(cls, settings):
        return "beam+lm" if settings["lm_path"] else "beam"

    @classmethod
    def check(cls, settings, labels):
        """An LM that cannot serve these labels (check_lm); a hotword they cannot spell."""
        if settings["lm_path"]:
            check_lm(settings["lm_path"], labels)
        for hotword in settings["hotwords"]:
            outside = "".join(sorted(set(hotword) - set(labels[:-1])))
            if outside:
                raise UserError(f"decode.hotwords: {hotword!r} has characters outside "
                                f"labels.json ({outside!r}): the decoder can never output it")

    def decode(self, log_probs):
        text, _, frames, _, _ = self._decoder.decode_beams(
            np.asarray(log_probs, np.float64), beam_width=self.beam_width,
            hotwords=self.hotwords, hotword_weight=self.hotword_weight)[0]
        words = [(w, int(s), int(e)) for w, (s, e) in frames]
        return Hypothesis(text, words)


def check_lm(path, labels):
    """The words of an LM file (None for a KenLM binary, whose words are not readable here),
    after one clear line for a file that cannot serve `labels`: missing, gzip-compressed (this
    KenLM reads plain ARPA or KenLM binary files), malformed, or an ARPA whose words mostly use
    characters outside the labels (a lowercase LM would silently decode garbage)."""
    if not os.path.isfile(path):
        raise UserError(f"language model not found: {path}")
    if path.endswith(".gz"):
        raise UserError(f"language model {path} is gzip-compressed; this KenLM reads plain ARPA "
                        f"or KenLM binary files: gunzip -k {path} and use {path[:-3]}")
    try:
        words = arpa_words(path)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot load language model {path}: {err}") from None
    if words is None:
        return None
    letters = set(labels[:-1]) - {" "}
    outside = [w for w in words if not set(w) <= letters]
    if not words or len(outside) > len(words) / 2:
        share = round(100 * len(outside) / max(len(words), 1))
        raise UserError(f"LM {path}: {share}% of its {len(words)} words use characters outside "
                        f"labels.json{_case_hint(outside, letters)}"
                        + (f", e.g. {outside[0]!r}" if outside else ""))
    return words


def _case_hint(words, letters):
    """' (lowercase? ...)' when another case would let most of `words` be spelled."""
    for change, hint in ((str.upper, "lowercase? labels.json is upper-case"),
                         (str.lower, "uppercase? labels.json is lower-case")):
        if sum(set(change(w)) <= letters for w in words) > len(words) / 2:
            return f" ({hint})"
    return ""


def decoder_settings(decode_cfg):
    """The settings of decode_cfg's decoder (recorded next to the figures it gives)."""
    return DECODERS[decode_cfg.method].settings(decode_cfg)


def build(settings, labels):
    """The decoder of `settings` (decoder_settings' form)."""
    params = dict(settings)
    return DECODERS[params.pop("method")](labels, **params)


def make_decoder(decode_cfg, labels):
    """The decoder that decode_cfg (the config's decode section) describes."""
    return build(decoder_settings(decode_cfg), labels)


_BUILT = {}        # _load_key -> the decoder this process built (an LM loads once per process)
_SHOWN = set()     # _load_keys whose loading messages a pool of this process has shown
_first_load = None  # in a pool's worker: the pool's shared flag, 1 until one worker loads


def _split(settings):
    """(what a decoder of `settings` loads, its `configurable` settings)."""
    configurable = DECODERS[settings["method"]].configurable
    loaded = {k: v for k, v in settings.items() if k not in configurable}
    return loaded, {k: v for k, v in settings.items() if k in configurable}


def _load_key(settings, labels):
    return json.dumps([_split(settings)[0], labels], sort_keys=True)


def decode_with(settings, labels, log_probs):
    """Hypothesis of log_probs (T, C) by the decoder of `settings`: built once per process for
    what it loads, then configured."""
    key = _load_key(settings, labels)
    if key not in _BUILT:
        with contextlib.nullcontext() if _shows_loading() else _stderr_silenced():
            _BUILT[key] = build(settings, labels)
    decoder = _BUILT[key]
    decoder.configure(**_split(settings)[1])
    return decoder.decode(log_probs)


def _start_worker(first_load):
    global _first_load
    _first_load = first_load


def _shows_loading():
    """Whether this process shows pyctcdecode's and KenLM's loading messages: always outside a
    pool's workers; in them only the first to load (the others would print the same lines)."""
    if _first_load is None:
        return True
    with _first_load.get_lock():
        first, _first_load.value = _first_load.value, 0
    return bool(first)


@contextlib.contextmanager
def _stderr_silenced():
    """File descriptor 2 to /dev/null: KenLM writes there from C++, pyctcdecode's log warnings
    reach it through sys.stderr."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


class DecoderPool:
    """The decoder of decode_cfg run in `workers` spawned processes beside the network (each
    builds it once; an LM's loading messages show once per process that makes pools); inline
    when workers is 0 or the decoder is not `pooled`.

        pool = DecoderPool(cfg.decode, labels, workers=1)
        future = pool.submit(log_probs)                  # (T, C) -> Future of a Hypothesis
        future = pool.submit(log_probs, alpha=1.0)       # with settings changed for this input
        pool.close()

    Workers are spawned, not forked: the parent holds MindSpore's threads. An error while
    decoding (an LM that does not load) comes back from future.result(), inline too.
    """

    def __init__(self, decode_cfg, labels, workers):
        cls = DECODERS[decode_cfg.method]
        self.settings, self.labels = cls.settings(decode_cfg), tuple(labels)
        self.name = cls.name(self.settings)
        self._pool = None
        if workers and cls.pooled:
            context = multiprocessing.get_context("spawn")
            key = _load_key(self.settings, labels)
            first_load = context.Value("b", key not in _SHOWN)
            _SHOWN.add(key)
            self._pool = ProcessPoolExecutor(workers, mp_context=context,
                                             initializer=_start_worker, initargs=(first_load,))

    def submit(self, log_probs, **changes):
        settings = {**self.settings, **changes}
        if self._pool is not None:
            return self._pool.submit(decode_with, settings, self.labels, log_probs)
        future = Future()
        try:
            future.set_result(decode_with(settings, self.labels, log_probs))
        except Exception as err:  # raised by result(), as from a worker (tracebacks kept)
            future.set_exception(err)
        return future

    def close(self):
        if self._pool is not None:
            self._pool.shutdown(cancel_futures=True)


def decoder_pools(decode_cfg, labels, with_greedy=False):
    """[DecoderPool of the configured decoder] (decode.workers processes), then a greedy one
    when with_greedy and the configured decoder is not greedy (side-by-side figures)."""
    pools = [DecoderPool(decode_cfg, labels, decode_cfg.workers)]
    if with_greedy and decode_cfg.method != GreedyDecoder.method:
        pools.append(DecoderPool(EasyDict(method=GreedyDecoder.method), labels, 0))
    return pools


def greedy_decode(log_probs, lengths, labels):
    """Greedy texts of a batch: log_probs (T, B, C), lengths (B,) -> B strings."""
    probs, decoder = np.asarray(log_probs), GreedyDecoder(labels)
    return [decoder.decode(probs[:int(n), b]).text for b, n in enumerate(np.asarray(lengths))]
