"""The decoder registry (src.decoder.DECODERS): one class per decode.method drives the config's
allowed values and checks, the recorded settings, the result name and the construction; and
the decode.* values the config refuses (non-finite weights, options the method ignores)."""
import sys

import numpy as np
import pytest

from conftest import REPO, run
from src.config import ConfigError, load_config
from src.decoder import (
    DECODERS,
    Decoder,
    DecoderPool,
    GreedyDecoder,
    Hypothesis,
    decoder_pools,
    decoder_settings,
    make_decoder,
)
from src.errors import UserError
from src.text import load_labels

LABELS = load_labels(f"{REPO}/labels.json")


class FirstFrames(Decoder):
    """A decoder of the test's own: the label of each of the first beam_width frames."""

    method = "first"
    keys = ("beam_width",)

    def __init__(self, labels, beam_width):
        self.labels, self.width = labels, beam_width

    @classmethod
    def name(cls, settings):
        return f"first-{settings['beam_width']}"

    @classmethod
    def check(cls, settings, labels):
        if settings["beam_width"] > 5:
            raise UserError("first: at most 5 frames")

    def decode(self, log_probs):
        best = np.asarray(log_probs)[:self.width].argmax(axis=-1)
        return Hypothesis("".join(self.labels[i] for i in best))


def test_a_registered_class_is_all_the_config_eval_and_pools_need(monkeypatch):
    with pytest.raises(ConfigError, match="'decode.method' must be one of greedy, beam; got 'first'"):
        load_config(["--decode.method=first"], entry="eval")
    monkeypatch.setitem(DECODERS, "first", FirstFrames)
    cfg = load_config(["--decode.method=first", "--decode.beam_width=3"], entry="eval")
    assert decoder_settings(cfg.decode) == {"method": "first", "beam_width": 3}
    probs = np.log(np.full((6, len(LABELS)), 0.01))
    probs[np.arange(6), [8, 5, 12, 12, 15, 1]] = 0.0  # H E L L O A
    assert make_decoder(cfg.decode, LABELS).decode(probs).text == "HEL"
    pools = decoder_pools(cfg.decode, LABELS, with_greedy=True)  # not pooled: inline
    assert [p.name for p in pools] == ["first-3", "greedy"]
    assert [p.submit(probs).result().text for p in pools] == ["HEL", "HELOA"]  # L L merged
    assert [p.settings for p in pools] == [{"method": "first", "beam_width": 3},
                                           {"method": "greedy"}]
    with pytest.raises(UserError, match="first: at most 5 frames"):  # the class's own check
        load_config(["--decode.method=first", "--decode.beam_width=6"], entry="eval")
    with pytest.raises(ConfigError, match="decode.hotwords is set .* add --decode.method=beam"):
        load_config(["--decode.method=first", "--decode.hotwords=HELLO"], entry="eval")


def test_the_beam_decoder_records_only_the_settings_it_uses():
    beam = load_config(["--decode.method=beam", "--decode.beam_width=8",
                        "--decode.hotwords=[new york, don\u2019t]"], entry="eval").decode
    # no LM: no LM weights; the hotwords as transcripts are normalised
    assert decoder_settings(beam) == {"method": "beam", "beam_width": 8, "lm_path": "",
                                      "hotwords": ["NEW YORK", "DON'T"], "hotword_weight": 10.0}
    assert DecoderPool(beam, LABELS, 0).name == "beam"
    plain = load_config(["--decode.method=beam"], entry="eval").decode
    assert "hotword_weight" not in decoder_settings(plain)
    assert isinstance(make_decoder(load_config([], entry="eval").decode, LABELS), GreedyDecoder)


@pytest.mark.parametrize("flag, key", [("--decode.alpha=nan", "alpha"),
                                       ("--decode.alpha=inf", "alpha"),
                                       ("--decode.beta=-inf", "beta"),
                                       ("--decode.hotword_weight=nan", "hotword_weight")])
def test_non_finite_decoder_weights_are_config_errors(flag, key):
    with pytest.raises(ConfigError, match=f"'decode.{key}' must be a finite number"):
        load_config(["--decode.method=beam", flag], entry="eval")


def test_decoder_options_that_would_be_ignored_or_never_match_are_refused():
    with pytest.raises(ConfigError, match="decode.hotwords is set .* but decode.method is greedy: "
                                          "add --decode.method=beam"):
        load_config(["--decode.hotwords=NEW YORK"], entry="eval")
    with pytest.raises(UserError, match="'NA\u00cfVE' has characters outside labels.json"):
        load_config(["--decode.method=beam", "--decode.hotwords=na\u00efve"], entry="eval")
    with pytest.raises(ConfigError, match="'decode.alpha' must be >= 0"):
        load_config(["--decode.method=beam", "--decode.alpha=-1"], entry="eval")
    load_config(["--decode.method=beam", "--decode.beta=-2.5"], entry="eval")  # a word penalty


@pytest.mark.parametrize("argv, message", [
    (["--decode.method=beam", "--decode.alpha=nan"],
     "eval.py: error: config key 'decode.alpha' must be a finite number; got nan"),
    (["--decode.hotwords=x"], "eval.py: error: decode.hotwords is set (['x']) but decode.method "
                              "is greedy: add --decode.method=beam to use it")])
def test_bad_decoder_values_end_eval_with_one_line(argv, message):
    proc = run([sys.executable, f"{REPO}/eval.py", *argv], ok=False)
    assert proc.returncode == 1 and proc.stderr.strip() == message, proc.stderr
