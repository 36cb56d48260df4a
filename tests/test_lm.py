"""Language models and beam search: the Kneser-Ney estimator against a hand computation and
KenLM's reading of its ARPA file, the decoders on hand-made log-probabilities, build_lm.py and
the resumable download."""
import functools
import http.server
import math
import os
import random
import sys
import threading

import numpy as np
import pytest

from conftest import REPO, run
from src.decoder import BeamDecoder, GreedyDecoder
from src.ngram import BOS, discounts, estimate, write_arpa
from src.text import load_labels

kenlm = pytest.importorskip("kenlm")
LABELS = load_labels(f"{REPO}/labels.json")


def test_discounts_follow_the_modified_kneser_ney_formula():
    # counts of counts t1..t4 = 4, 2, 1, 1 -> Y = 4 / (4 + 2*2) = 0.5
    counts = {f"g{i}": c for i, c in enumerate([1, 1, 1, 1, 2, 2, 3, 4])}
    d1, d2, d3 = discounts(counts)
    assert d1 == pytest.approx(1 - 2 * 0.5 * 2 / 4)  # 0.5
    assert d2 == pytest.approx(2 - 3 * 0.5 * 1 / 2)  # 1.25
    assert d3 == pytest.approx(3 - 4 * 0.5 * 1 / 1)  # 1.0
    assert discounts({"a": 1, "b": 2}) == (0.5, 1.0, 1.5)  # too few counts: lmplz's fallback


def test_bigram_model_matches_a_hand_computation(tmp_path):
    # "<s> A </s>", "<s> A B </s>". Continuation counts: A 1 (<s>), B 1 (A), </s> 2 (A, B);
    # both orders fall back to D = 0.5, 1, 1.5. Unigrams: total 4, gamma = (0.5*2 + 1*1)/4 =
    # 0.5, |V| = 4 (A, B, </s>, <unk>): p(A) = 0.5/4 + 0.5/4 = 0.25, p(</s>) = 1/4 + 0.125.
    lm = estimate([["A"], ["A", "B"]], order=2)
    assert lm.prob((), "A") == pytest.approx(0.25)
    assert lm.prob((), "B") == pytest.approx(0.25)
    assert lm.prob((), "</s>") == pytest.approx(0.375)
    assert lm.prob((), "<unk>") == pytest.approx(0.125)
    # context <s>: c(<s> A) = 2, gamma = 1 * 1 / 2: p(A|<s>) = (2 - 1)/2 + 0.5 * 0.25
    assert lm.prob((BOS,), "A") == pytest.approx(0.625)
    # context A: c(A B) = c(A </s>) = 1, gamma = (0.5 + 0.5)/2 = 0.5
    assert lm.prob(("A",), "B") == pytest.approx(0.5 / 2 + 0.5 * 0.25)
    assert lm.prob(("A",), "</s>") == pytest.approx(0.5 / 2 + 0.5 * 0.375)
    assert lm.prob(("A",), "A") == pytest.approx(0.5 * 0.25)  # unseen: backoff
    path = tmp_path / "hand.arpa"
    write_arpa(lm, path)
    entries = {}
    for line in path.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 2:
            entries[fields[1]] = fields[0::2]
    assert float(entries["A B"][0]) == pytest.approx(math.log10(0.375), abs=1e-6)
    assert float(entries["A"][1]) == pytest.approx(math.log10(0.5), abs=1e-6)  # backoff
    assert lm.prob(("B",), "</s>") == pytest.approx(0.5 / 1 + 0.5 * 0.375)  # c(B </s>) = 1
    model = kenlm.Model(str(path))  # p(A|<s>) p(B|A) p(</s>|B)
    assert model.score("A B", bos=True, eos=True) == pytest.approx(
        math.log10(0.625 * 0.375 * 0.6875), abs=1e-5)


def kenlm_prob(model, context, word):
    """p(word | context) as KenLM computes it from the ARPA file."""
    state = kenlm.State()
    if context and context[0] == BOS:
        model.BeginSentenceWrite(state)
        context = context[1:]
    else:
        model.NullContextWrite(state)
    for w in context:
        out = kenlm.State()
        model.BaseScore(state, w, out)
        state = out
    return 10 ** model.BaseScore(state, word, kenlm.State())


@pytest.mark.parametrize("order", [2, 3, 4])
def test_every_context_sums_to_one_and_kenlm_reads_the_same_model(tmp_path, order):
    rng = random.Random(order)
    words = "THE CAT DOG SAW A RED BOX RAN HOME QUICKLY".split()
    sentences = [[rng.choice(words) for _ in range(rng.randint(0, 6))] for _ in range(80)]
    lm = estimate(sentences, order)
    write_arpa(lm, tmp_path / "lm.arpa")
    model = kenlm.Model(str(tmp_path / "lm.arpa"))
    contexts = [()] + [g for n in range(order - 1) for g in lm.probs[n]] + [(BOS,)]
    assert len(contexts) >= 14  # every word, <s> and the empty context (more at higher orders)
    for context in contexts:
        ours = [lm.prob(context, w) for w in lm.vocabulary]
        assert sum(ours) == pytest.approx(1, abs=1e-12), context
        theirs = [kenlm_prob(model, context, w) for w in lm.vocabulary]
        assert sum(theirs) == pytest.approx(1, abs=1e-5), context
        np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-9)


def log_probs_of(path, peak=0.9, overrides=()):
    """(T, 29) log-probabilities whose best label per frame follows `path` ('_' = blank);
    overrides: (frame, {char: probability}) for frames that are not sure."""
    probs = np.full((len(path), len(LABELS)), (1 - peak) / (len(LABELS) - 1))
    for t, ch in enumerate(path):
        probs[t, LABELS.index(ch)] = peak
    for t, chars in overrides:
        probs[t] = (1 - sum(chars.values())) / (len(LABELS) - len(chars))
        for ch, p in chars.items():
            probs[t, LABELS.index(ch)] = p
    return np.log(probs)


def test_beam_width_one_without_lm_equals_greedy():
    rng = np.random.default_rng(0)
    greedy, beam = GreedyDecoder(LABELS), BeamDecoder(LABELS, beam_width=1)
    for _ in range(200):
        frames = int(rng.integers(5, 80))
        logits = rng.normal(size=(frames, len(LABELS))) * rng.uniform(0.5, 6)
        logits[:, -1] += rng.uniform(0, 4)  # blank-heavy, as trained CTC outputs are
        log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
        want, got = greedy.decode(log_probs), beam.decode(log_probs)
        assert got.text == want.text
        assert got.words == want.words  # the same word frames


def test_blank_is_labels_last_symbol_for_the_beam_decoder():
    # "L _ L" must give a double L (the "_" separates repeats) and "_" must never be output
    hyp = BeamDecoder(LABELS, beam_width=8).decode(log_probs_of("HH_E_LL_L_OO_ _W_O_R_L_D__"))
    assert hyp.text == "HELLO WORLD"
    assert hyp.words == [("HELLO", 0, 12), ("WORLD", 15, 24)]  # W at frame 15, D at 23


def test_a_tiny_lm_flips_the_word_to_the_one_it_knows(tmp_path):
    lm_path = tmp_path / "cars.arpa"
    write_arpa(estimate([["THE", "CAR", "IS", "RED"], ["A", "CAR"], ["THE", "CAR"]] * 5, 3),
               lm_path)
    # acoustically "THE CAT IS RED" is a little more likely than "THE CAR IS RED"
    log_probs = log_probs_of("THE_ CAX_ IS_ RED", overrides=[(7, {"T": 0.5, "R": 0.4})])
    assert GreedyDecoder(LABELS).decode(log_probs).text == "THE CAT IS RED"
    assert BeamDecoder(LABELS, 16).decode(log_probs).text == "THE CAT IS RED"  # no LM
    with_lm = BeamDecoder(LABELS, 16, str(lm_path), alpha=0.5, beta=0.0)
    assert with_lm.decode(log_probs).text == "THE CAR IS RED"
    with_lm.set_weights(0.0, 0.0)  # LM weight 0: back to the acoustics
    assert with_lm.decode(log_probs).text == "THE CAT IS RED"


def test_build_lm_from_manifests_and_text(sample_data, tmp_path):
    text = tmp_path / "corpus.txt"
    text.write_text("the cat sat\nTHE DOG SAT\nnaïve line is skipped\n\nthe cat\u2019s hat\n")
    out = tmp_path / "lm" / "out.arpa"
    proc = run([sys.executable, f"{REPO}/data_prep/build_lm.py", "--text", "corpus.txt",
                "--manifests", str(sample_data / "libri_train_manifest.csv"), "--order", "3",
                "--out", "lm/out.arpa"], cwd=tmp_path)
    assert f"language model: {out}" in proc.stdout and "1 lines skipped" in proc.stdout
    assert "333 sentences" in proc.stdout  # 330 transcripts + 3 usable lines
    model = kenlm.Model(str(out))
    assert model.order == 3
    vocab = {line.split("\t")[1] for line in out.read_text().splitlines()
             if line.count("\t") == 2 and " " not in line.split("\t")[1]}
    assert {"CAT'S", "DOG", "SAT", "<unk>", "</s>", "<s>"} <= vocab and "NAÏVE" not in vocab
    bad = run([sys.executable, f"{REPO}/data_prep/build_lm.py", "--text", "missing.txt",
               "--out", "x.arpa"], ok=False, cwd=tmp_path)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0
    assert "text file not found" in bad.stderr


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """A static file server that honours "Range: bytes=N-" (206), as openslr's does."""

    def send_head(self):
        ranged = self.headers.get("Range", "")
        path = self.translate_path(self.path)
        if not ranged.startswith("bytes=") or not os.path.isfile(path):
            return super().send_head()
        start = int(ranged[len("bytes="):].rstrip("-"))
        f = open(path, "rb")
        size = os.fstat(f.fileno()).st_size
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Length", str(size - start))
        self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        self.served_from = start
        return f

    def log_message(self, *args):
        pass


def test_download_resumes_over_http_and_unpacks_arpa_gz(tmp_path):
    import gzip
    served = tmp_path / "served"
    served.mkdir()
    rng = random.Random(0)
    arpa = "".join(f"{-rng.random():.7f}\tW{i}\n" for i in range(5000))  # stands for an ARPA
    payload = gzip.compress(arpa.encode())
    half = len(payload) // 2
    (served / "3-gram.pruned.3e-7.arpa.gz").write_bytes(payload)
    (served / "librispeech-vocab.txt").write_text("A\nB\n")
    dest = tmp_path / "lm"
    dest.mkdir()
    (dest / "3-gram.pruned.3e-7.arpa.gz.part").write_bytes(payload[:half])  # interrupted
    starts = []

    class Handler(RangeHandler):
        def send_head(self):
            starts.append(self.headers.get("Range"))
            return super().send_head()

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(Handler, directory=str(served)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/{{file}}"
        proc = run([sys.executable, f"{REPO}/data_prep/build_lm.py", "--download",
                    "3-gram.pruned.3e-7", "--download", "librispeech-vocab", "--out_dir", "lm",
                    "--url_template", url], cwd=tmp_path)
    finally:
        server.shutdown()
    assert starts == [f"bytes={half}-", None]  # the partial file was continued, not restarted
    assert (dest / "3-gram.pruned.3e-7.arpa.gz").read_bytes() == payload
    assert (dest / "3-gram.pruned.3e-7.arpa").read_text() == arpa
    assert (dest / "librispeech-vocab.txt").read_text() == "A\nB\n"
    assert f"3-gram.pruned.3e-7: {dest / '3-gram.pruned.3e-7.arpa'}" in proc.stdout
    # a local file URL (no Range support) downloads in full
    url = "file://" + str(served) + "/{file}"
    run([sys.executable, f"{REPO}/data_prep/build_lm.py", "--download", "librispeech-vocab",
         "--out_dir", "lm2", "--url_template", url], cwd=tmp_path)
    assert (tmp_path / "lm2" / "librispeech-vocab.txt").read_text() == "A\nB\n"


def test_a_decoder_pool_worker_decodes_as_the_decoder_itself_and_reports_lm_errors(tmp_path):
    from easydict import EasyDict

    from src.decoder import DecoderPool
    from src.errors import UserError
    lm_path = tmp_path / "cars.arpa"
    write_arpa(estimate([["THE", "CAR", "IS", "RED"], ["A", "CAR"]] * 5, 3), lm_path)
    log_probs = log_probs_of("THE_ CAX_ IS_ RED", overrides=[(7, {"T": 0.5, "R": 0.4})])
    settings = EasyDict(method="beam", beam_width=16, lm_path=str(lm_path), alpha=0.5, beta=0.0)
    pool = DecoderPool(settings, LABELS, workers=1)
    try:
        futures = [pool.submit(log_probs), pool.submit(log_probs[:9])]
        want = [BeamDecoder(LABELS, 16, str(lm_path), 0.5, 0.0).decode(p)
                for p in (log_probs, log_probs[:9])]
        assert [f.result() for f in futures] == want
        assert want[0].text == "THE CAR IS RED"
    finally:
        pool.close()
    (tmp_path / "broken.arpa").write_text("\\data\\\nngram 1=2\n\n\\1-grams:\nnot numbers\n")
    pool = DecoderPool(EasyDict(settings, lm_path=str(tmp_path / "broken.arpa")), LABELS, 1)
    try:
        with pytest.raises(UserError, match="cannot load language model"):
            pool.submit(log_probs).result()
    finally:
        pool.close()
