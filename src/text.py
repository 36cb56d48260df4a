"""Labels and transcript encoding. labels.json: index 0 apostrophe, 1..26 A..Z, 27 space, 28 blank.

Unlike the zoo, label id 0 (the apostrophe) is kept, and characters outside the labels are never
dropped silently: policy "error" raises naming the file and character; "drop" removes them and
counts every removal in a Counter that the caller reports.

Normalisation (normalize_transcript): the typographic apostrophes ’ ‘ ʼ and the prime ′ become ',
letters are upper-cased, runs of white space become one space, ends are trimmed.
"""
import functools
import json
import re
from collections import Counter

from src.errors import UserError

BLANK = "_"
_APOSTROPHES = str.maketrans({"\u2019": "'", "\u2018": "'", "\u02bc": "'", "\u2032": "'"})


class TextError(UserError):
    """A transcript that cannot be encoded; the message names the file and the character."""


@functools.lru_cache(maxsize=None)
def load_labels(path):
    """The labels as a tuple, read once per process; the CTC blank must be last (MindSpore's
    convention)."""
    try:
        with open(path, encoding="utf-8") as f:
            labels = json.load(f)
    except (OSError, ValueError) as err:
        raise TextError(f"cannot read labels {path}: {err}") from None
    if not isinstance(labels, list) or not labels or labels[-1] != BLANK:
        raise TextError(f"{path}: labels must be a JSON list ending with the blank '{BLANK}'")
    return tuple(labels)


def normalize_transcript(text):
    """Typographic apostrophes -> ', upper-case, whitespace collapsed to single spaces, trimmed."""
    return re.sub(r"\s+", " ", text.translate(_APOSTROPHES).upper()).strip()


def read_transcript(path, where=""):
    """The text of a transcript file (UTF-8). Raises TextError naming the file."""
    try:
        with open(path, encoding="utf-8") as f:
            return f.read()
    except UnicodeDecodeError as err:
        raise TextError(f"{where + ': ' if where else ''}transcript {path} is not UTF-8 text "
                        f"({err.reason} at byte {err.start})") from None


class TextEncoder:
    """Transcript <-> label ids."""

    def __init__(self, labels, unknown_chars="error"):
        self.labels = list(labels)
        self.blank_id = len(self.labels) - 1
        self.char_to_id = {c: i for i, c in enumerate(self.labels[:-1])}
        self.policy = unknown_chars
        self.dropped = Counter()  # character -> times removed (policy "drop")

    def encode(self, text, source="<text>"):
        """Normalised text -> list of ids. `source` names the file in errors."""
        text = normalize_transcript(text)
        ids = []
        for ch in text:
            idx = self.char_to_id.get(ch)
            if idx is None:
                if self.policy == "error":
                    raise TextError(f"{source}: character {ch!r} is not in labels.json "
                                    "(set data.unknown_chars=drop to remove such characters)")
                self.dropped[ch] += 1
                continue
            ids.append(idx)
        return ids

    def decode(self, ids):
        return "".join(self.labels[i] for i in ids)


def make_encoder(cfg):
    """The TextEncoder of a config (labels_path, data.unknown_chars)."""
    return TextEncoder(load_labels(cfg.labels_path), cfg.data.unknown_chars)
