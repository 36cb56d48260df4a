"""Word n-gram language model: interpolated modified Kneser-Ney estimation and ARPA files.

    lm = estimate([["THE", "CAT"], ["A", "CAT"]], order=3)
    lm.prob(("THE",), "CAT")          # p(CAT | THE), any context length up to order - 1
    write_arpa(lm, "lm.arpa")         # readable by KenLM (and so by pyctcdecode)
    arpa_words("lm.arpa")             # ["THE", "CAT", "A"]: the words of any ARPA file

The smoothing is Chen & Goodman's interpolated modified Kneser-Ney as KenLM's lmplz computes it
(Heafield et al. 2013): sentences are padded with <s> ... </s>; below the highest order the
counts are continuation counts (distinct left neighbours), except for n-grams that start with
<s>, which keep their raw counts; each order has three discounts D1, D2, D3+ from its counts of
counts, Dk = k - (k + 1) Y t(k+1) / t(k), Y = t1 / (t1 + 2 t2), with lmplz's fallback
(0.5, 1, 1.5) when the corpus is too small for them; unigrams are interpolated with the uniform
distribution over the vocabulary (which includes <unk>). Interpolated probabilities are written
as ARPA entries and the interpolation weights as backoff weights, so an ARPA reader's backoff
gives exactly the interpolated model. Pure Python: meant for transcripts and text of up to a
few million words (LibriSpeech's full LM text goes through lmplz; its published ARPAs are
downloaded by data_prep/build_lm.py --download).
"""
import math
from collections import Counter, defaultdict
from dataclasses import dataclass

BOS, EOS, UNK = "<s>", "</s>", "<unk>"
FALLBACK_DISCOUNTS = (0.5, 1.0, 1.5)  # lmplz --discount_fallback


def count_ngrams(sentences, order):
    """Raw counts per order: [Counter of 1-gram tuples, ..., Counter of order-gram tuples]."""
    counts = [Counter() for _ in range(order)]
    for words in sentences:
        padded = (BOS, *words, EOS)
        for n in range(1, order + 1):
            for i in range(len(padded) - n + 1):
                counts[n - 1][padded[i:i + n]] += 1
    return counts


def adjusted_counts(raw):
    """Kneser-Ney counts: raw at the highest order and for n-grams starting with <s>, else the
    number of distinct words seen to their left."""
    adjusted = [Counter() for _ in raw]
    adjusted[-1] = Counter(raw[-1])
    for n in range(len(raw) - 1):
        for gram in raw[n + 1]:  # gram[1:] never starts with <s>: <s> only opens a sentence
            adjusted[n][gram[1:]] += 1
        for gram, c in raw[n].items():
            if gram[0] == BOS:
                adjusted[n][gram] = c
    return adjusted


def discounts(counts):
    """(D1, D2, D3+) from the counts of counts of one order's adjusted counts."""
    t = Counter(min(c, 4) for c in counts.values())
    try:
        y = t[1] / (t[1] + 2 * t[2])
        ds = tuple(k - (k + 1) * y * t[k + 1] / t[k] for k in (1, 2, 3))
    except ZeroDivisionError:
        return FALLBACK_DISCOUNTS
    if not all(0 < d < k for k, d in zip((1, 2, 3), ds)):
        return FALLBACK_DISCOUNTS
    return ds


@dataclass
class NgramLM:
    """probs[n][gram] = p(gram[-1] | gram[:-1]) for the listed (n+1)-grams;
    backoffs[n][context] = interpolation weight of that (n+1)-gram context (absent = 1)."""
    order: int
    probs: list
    backoffs: list
    discounts: list

    @property
    def vocabulary(self):
        """Every word the model predicts: the corpus words, </s> and <unk> (not <s>)."""
        return [g[0] for g in self.probs[0] if g[0] != BOS]

    def prob(self, context, word):
        """p(word | context) by the backoff rule (= the interpolated estimate)."""
        context = tuple(context)[-(self.order - 1):] if self.order > 1 else ()
        weight = 1.0
        for start in range(len(context) + 1):
            h = context[start:]
            p = self.probs[len(h)].get(h + (word,))
            if p is not None:
                return weight * p
            weight *= self.backoffs[len(h) - 1].get(h, 1.0) if h else 1.0
        return weight * self.probs[0][(UNK,)]


def _weights(grams, discount):
    """Per context: (total adjusted count, interpolation weight gamma)."""
    total, mass = defaultdict(float), defaultdict(float)
    for gram, c in grams.items():
        total[gram[:-1]] += c
        mass[gram[:-1]] += discount[min(c, 3) - 1]
    return {h: (total[h], mass[h] / total[h]) for h in total}


def estimate(sentences, order=3):
    """Interpolated modified Kneser-Ney model of `sentences` (lists of words), as an NgramLM."""
    if order < 2:  # KenLM reads bigram models and up
        raise ValueError(f"order must be >= 2, got {order}")
    adjusted = adjusted_counts(count_ngrams(sentences, order))
    adjusted[0].pop((BOS,), None)  # never predicted: no probability mass of its own
    if not adjusted[0]:
        raise ValueError("no words to estimate a language model from")
    ds = [discounts(c) for c in adjusted]
    probs, backoffs = [], []
    vocab_size = len(adjusted[0]) + (0 if (UNK,) in adjusted[0] else 1)
    total, gamma = _weights(adjusted[0], ds[0])[()]
    unigrams = {g: (c - ds[0][min(c, 3) - 1]) / total + gamma / vocab_size
                for g, c in adjusted[0].items()}
    unigrams.setdefault((UNK,), gamma / vocab_size)
    probs.append(unigrams)
    for n in range(1, order):
        weights = _weights(adjusted[n], ds[n])
        lower = probs[n - 1]
        probs.append({g: (c - ds[n][min(c, 3) - 1]) / weights[g[:-1]][0]
                      + weights[g[:-1]][1] * _lower_prob(lower, probs, backoffs, g[1:])
                      for g, c in adjusted[n].items()})
        backoffs.append({h: w for h, (_, w) in weights.items()})
    return NgramLM(order, probs, backoffs, ds)


def _lower_prob(lower, probs, backoffs, gram):
    """p(gram[-1] | gram[:-1]) from the orders estimated so far (entry, or backoff)."""
    p = lower.get(gram)
    if p is not None:
        return p
    model = NgramLM(len(probs), probs, backoffs, [])
    return model.prob(gram[:-1], gram[-1])


def write_arpa(lm, path):
    """ARPA file of `lm` (log10 probabilities and backoff weights; <s> gets -99). Returns the
    n-gram counts of its header, [1-grams (<s> included), 2-grams, ...]."""
    sizes = [len(lm.probs[0]) + 1] + [len(p) for p in lm.probs[1:]]
    with open(path, "w", encoding="utf-8") as f:
        f.write("\\data\\\n")
        for n, size in enumerate(sizes, 1):
            f.write(f"ngram {n}={size}\n")
        for n in range(lm.order):
            f.write(f"\n\\{n + 1}-grams:\n")
            entries = list(lm.probs[n].items())
            if n == 0:
                entries.insert(0, ((BOS,), None))
            for gram, p in entries:
                logp = -99.0 if p is None else math.log10(p)
                line = f"{logp:.7f}\t{' '.join(gram)}"
                if n < lm.order - 1:
                    line += f"\t{math.log10(lm.backoffs[n].get(gram, 1.0)):.7f}"
                f.write(line + "\n")
        f.write("\n\\end\\\n")
    return sizes


def arpa_words(path):
    """The words of an ARPA file's 1-gram section, without <s>, </s> and <unk>; None when the
    file is not ARPA text (a KenLM binary). Raises ValueError naming a malformed line."""
    with open(path, "rb") as f:
        if not f.read(64).lstrip().startswith(b"\\data\\"):
            return None
    words, section = [], None
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, 1):
            fields = line.split()
            if line.startswith("\\"):
                if section == "\\1-grams:":
                    break  # the 1-gram section is over
                section = line.strip()
            elif fields and section == "\\1-grams:":
                try:
                    float(fields[0])
                    word = fields[1]
                except (ValueError, IndexError):
                    raise ValueError(f"line {number} is not an ARPA n-gram entry: "
                                     f"{line.strip()[:60]!r}") from None
                if word not in (BOS, EOS, UNK):
                    words.append(word)
    return words
