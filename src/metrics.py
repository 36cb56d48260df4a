"""Word and character error rates (python-Levenshtein), corpus-level."""
import Levenshtein


def word_errors(reference, hypothesis):
    """(edit distance in words, number of reference words)."""
    ref, hyp = reference.split(), hypothesis.split()
    return Levenshtein.distance(ref, hyp), len(ref)


def char_errors(reference, hypothesis):
    """(edit distance in characters, number of reference characters), spaces included."""
    return Levenshtein.distance(reference, hypothesis), len(reference)


class ErrorRate:
    """Corpus-level WER / CER: total edit distance / total reference length."""

    def __init__(self):
        self.word_edits = self.words = self.char_edits = self.chars = self.utterances = 0

    def update(self, reference, hypothesis):
        edits, n = word_errors(reference, hypothesis)
        self.word_edits += edits
        self.words += n
        edits, n = char_errors(reference, hypothesis)
        self.char_edits += edits
        self.chars += n
        self.utterances += 1

    @property
    def wer(self):
        return 100.0 * self.word_edits / max(self.words, 1)

    @property
    def cer(self):
        return 100.0 * self.char_edits / max(self.chars, 1)

    COUNTS = ("word_edits", "words", "char_edits", "chars", "utterances")

    def all_reduce(self):
        """Sum the counts over the data-parallel group (every rank must call it).

        As float32 (the only AllReduce type on CPU besides float16): exact for counts below
        2**24, i.e. validation sets of up to ~16 M reference characters.
        """
        import mindspore as ms
        import numpy as np
        counts = ms.Tensor(np.array([getattr(self, k) for k in self.COUNTS], np.float32))
        total = ms.ops.AllReduce()(counts).asnumpy()
        for key, value in zip(self.COUNTS, total):
            setattr(self, key, int(round(float(value))))
        return self

    def summary(self):
        return {"wer": self.wer, "cer": self.cer, "utterances": self.utterances,
                "words": self.words, "chars": self.chars}
