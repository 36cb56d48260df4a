"""Labels, transcript encoding, greedy decoding and error rates (hand-computed cases)."""
import numpy as np
import pytest

from src.decoder import greedy_decode
from src.metrics import ErrorRate, char_errors, word_errors
from src.text import TextEncoder, TextError, load_labels

LABELS = load_labels("labels.json")


def test_labels_order():
    assert LABELS[0] == "'" and LABELS[1] == "A" and LABELS[26] == "Z"
    assert LABELS[27] == " " and LABELS[28] == "_" and len(LABELS) == 29


def test_encode_keeps_apostrophe_and_uppercases():
    enc = TextEncoder(LABELS)
    ids = enc.encode("  don't\tstop ")
    assert ids == [4, 15, 14, 0, 20, 27, 19, 20, 15, 16]
    assert enc.decode(ids) == "DON'T STOP"


def test_unknown_character_error_names_file_and_char():
    with pytest.raises(TextError, match=r"x\.txt.*'-'"):
        TextEncoder(LABELS).encode("well-known", source="x.txt")


def test_unknown_character_drop_is_counted():
    enc = TextEncoder(LABELS, unknown_chars="drop")
    assert enc.decode(enc.encode("a-b-c 1")) == "ABC "
    assert enc.dropped == {"-": 2, "1": 1}


def test_greedy_decode_merges_repeats_and_removes_blanks():
    blank = 28
    # path: H H _ E L L _ L O _ (then padding steps that must be ignored)
    path = [8, 8, blank, 5, 12, 12, blank, 12, 15, blank, 1, 1]
    log_probs = np.full((len(path), 2, 29), -10.0, np.float32)
    for t, k in enumerate(path):
        log_probs[t, 0, k] = 0.0
        log_probs[t, 1, [0, blank][t % 2]] = 0.0  # "'" _ "'" _ ...
    texts = greedy_decode(log_probs, [10, 4], LABELS)
    assert texts == ["HELLO", "''"]


def test_word_and_char_errors_hand_computed():
    assert word_errors("THE CAT SAT", "THE BAT SAT DOWN") == (2, 3)  # 1 sub + 1 ins
    assert word_errors("A B C D", "A C D") == (1, 4)  # 1 del
    assert char_errors("KITTEN", "SITTING") == (3, 6)
    rates = ErrorRate()
    rates.update("THE CAT SAT", "THE BAT SAT DOWN")
    rates.update("A B C D", "A C D")
    assert rates.wer == pytest.approx(100 * 3 / 7)  # corpus level: (2 + 1) / (3 + 4)
    assert char_errors("THE CAT SAT", "THE BAT SAT DOWN") == (6, 11)  # C->B, + " DOWN"
    assert rates.cer == pytest.approx(100 * (6 + 2) / (11 + 7))  # "A B C D" -> "A C D": 2


def test_typographic_apostrophes_count_as_the_apostrophe():
    enc = TextEncoder(LABELS, unknown_chars="drop")
    for text in ("DON\u2019T", "don\u2018t", "DON\u02bcT", "DON\u2032T"):
        assert enc.decode(enc.encode(text)) == "DON'T", text
    assert not enc.dropped
