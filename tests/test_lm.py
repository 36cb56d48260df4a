"""Language models and beam search: the Kneser-Ney estimator against a hand computation and
KenLM's reading of its ARPA file, the decoders on hand-made log-probabilities (LM, hotwords), the
check of an LM's words against the labels, its loading messages, the LM weight search,
build_lm.py and the resumable download."""
import functools
import http.server
import math
import os
import random
import re
import sys
import threading

import numpy as np
import pytest
from easydict import EasyDict

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


def cars_lm(path):
    """A 3-gram LM that knows "THE CAR IS RED" and "A CAR" (and no CAT)."""
    write_arpa(estimate([["THE", "CAR", "IS", "RED"], ["A", "CAR"]] * 5, 3), path)
    return str(path)


# acoustically "THE CAT IS RED" is a little more likely than "THE CAR IS RED"
CAT_OR_CAR = log_probs_of("THE_ CAX_ IS_ RED", overrides=[(7, {"T": 0.5, "R": 0.4})])


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
    lm_path = cars_lm(tmp_path / "cars.arpa")
    assert GreedyDecoder(LABELS).decode(CAT_OR_CAR).text == "THE CAT IS RED"
    assert BeamDecoder(LABELS, beam_width=16).decode(CAT_OR_CAR).text == "THE CAT IS RED"  # no LM
    with_lm = BeamDecoder(LABELS, beam_width=16, lm_path=lm_path, alpha=0.5, beta=0.0)
    assert with_lm.decode(CAT_OR_CAR).text == "THE CAR IS RED"
    with_lm.configure(beam_width=16, alpha=0.0, beta=0.0)  # LM weight 0: back to the acoustics
    assert with_lm.decode(CAT_OR_CAR).text == "THE CAT IS RED"


CORPUS = ("Hello, world! This is a test.\n"
          "It's 5 o'clock \u2014 time for tea.\n"
          "The cat sat on the mat; the dog didn\u2019t.\n"
          "A na\u00efve caf\u00e9.\n"
          "\u201cQuoted\u201d words (in brackets) and well-known hyphens...\n"
          "\n")
# what build_lm must make of it: punctuation gone (but the apostrophe), case folded; the lines
# with a digit or a character outside labels.json skipped
CORPUS_SENTENCES = ["HELLO WORLD THIS IS A TEST", "THE CAT SAT ON THE MAT THE DOG DIDN'T",
                    "QUOTED WORDS IN BRACKETS AND WELL KNOWN HYPHENS"]
CORPUS_MARKS = 3 + 2 + 8  # , ! .   ; .   \u201c \u201d ( ) - . . .


def distinct_ngrams(sentences, n):
    padded = [["<s>", *s.split(), "</s>"] for s in sentences]
    return {tuple(p[i:i + n]) for p in padded for i in range(len(p) - n + 1)}


def test_build_lm_normalises_ordinary_text_and_its_counts_match_the_arpa_header(tmp_path):
    (tmp_path / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    proc = run([sys.executable, f"{REPO}/data_prep/build_lm.py", "--text", "corpus.txt",
                "--order", "3", "--out", "lm/out.arpa"], cwd=tmp_path)
    words = sum(len(s.split()) for s in CORPUS_SENTENCES)
    assert f"3 sentences, {words} words; skipped 2 lines (1 with digits: numbers are not spelled " \
           "out; 1 with other characters outside labels.json): '5' 1, '\u00cf' 1, '\u00c9' 1; " \
           "removed " \
           f"{CORPUS_MARKS} punctuation marks" in proc.stdout
    arpa = (tmp_path / "lm" / "out.arpa").read_text()
    header = [int(line.split("=")[1]) for line in arpa.splitlines() if line.startswith("ngram ")]
    printed = re.search(r"n-grams: (.*) \(", proc.stdout).group(1)
    assert printed == ", ".join(f"{n} {i}-grams" for i, n in enumerate(header, 1))
    vocabulary = {w for s in CORPUS_SENTENCES for w in s.split()}
    assert header[0] == len(vocabulary) + 3  # <s>, </s>, <unk>
    assert header[1:] == [len(distinct_ngrams(CORPUS_SENTENCES, n)) for n in (2, 3)]
    unigrams = {line.split("\t")[1] for line in arpa.split("\\1-grams:")[1].split("\\2-grams:")[0]
                .strip().splitlines()}
    assert unigrams == vocabulary | {"<s>", "</s>", "<unk>"}
    assert kenlm.Model(str(tmp_path / "lm" / "out.arpa")).order == 3


def test_build_lm_from_manifests_and_text_and_its_input_errors(sample_data, tmp_path):
    (tmp_path / "corpus.txt").write_text(CORPUS, encoding="utf-8")
    out = tmp_path / "lm" / "out.arpa"
    proc = run([sys.executable, f"{REPO}/data_prep/build_lm.py", "--text", "corpus.txt",
                "--manifests", str(sample_data / "libri_train_manifest.csv"), "--order", "3",
                "--out", "lm/out.arpa"], cwd=tmp_path)
    assert f"language model: {out}" in proc.stdout
    assert "333 sentences" in proc.stdout  # 330 transcripts + 3 usable lines
    assert kenlm.Model(str(out)).order == 3
    (tmp_path / "latin1.txt").write_bytes(b"good line\nna\xefve line\n")
    for argv, message in ((["--text", "missing.txt"], f"text file not found: {tmp_path}/missing.txt"),
                          (["--text", "latin1.txt"], f"{tmp_path}/latin1.txt, line 2: not UTF-8 "
                                                     "text (invalid continuation byte at byte 2")):
        bad = run([sys.executable, f"{REPO}/data_prep/build_lm.py", *argv, "--out", "x.arpa"],
                  ok=False, cwd=tmp_path)
        assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0, bad.stderr
        assert f"build_lm.py: error: {message}" in bad.stderr


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


def beam_config(*flags):
    """The decode section of a config with beam search and these flags."""
    from src.config import load_config
    return load_config(["--decode.method=beam", *flags], entry="eval").decode


def test_a_decoder_pool_worker_decodes_as_the_decoder_itself_and_reports_lm_errors(tmp_path):
    from src.decoder import DecoderPool
    from src.errors import UserError
    lm_path = cars_lm(tmp_path / "cars.arpa")
    settings = beam_config("--decode.beam_width=16", f"--decode.lm_path={lm_path}",
                           "--decode.alpha=0.5", "--decode.beta=0")
    pool = DecoderPool(settings, LABELS, workers=1)
    try:
        futures = [pool.submit(CAT_OR_CAR), pool.submit(CAT_OR_CAR[:9])]
        want = [BeamDecoder(LABELS, beam_width=16, lm_path=lm_path, alpha=0.5, beta=0.0).decode(p)
                for p in (CAT_OR_CAR, CAT_OR_CAR[:9])]
        assert [f.result() for f in futures] == want
        assert want[0].text == "THE CAR IS RED"
        # settings changed for one input (as tune_lm's grid does): the same worker, LM weight 0
        assert pool.submit(CAT_OR_CAR, alpha=0.0).result().text == "THE CAT IS RED"
    finally:
        pool.close()
    (tmp_path / "broken.arpa").write_text("\\data\\\nngram 1=2\n\n\\1-grams:\nnot numbers\n")
    pool = DecoderPool(EasyDict(settings, lm_path=str(tmp_path / "broken.arpa")), LABELS, 1)
    try:
        with pytest.raises(UserError, match="cannot load language model .*broken.arpa: line 5 is "
                                            "not an ARPA n-gram entry: 'not numbers'"):
            pool.submit(CAT_OR_CAR).result()
    finally:
        pool.close()


def test_a_hotword_turns_a_near_miss_into_the_phrase():
    from src.decoder import DecoderPool
    # acoustically "YORC" is a little more likely than "YORK"
    log_probs = log_probs_of("I_ LOVE_ NEW_ YORX_", overrides=[(17, {"C": 0.5, "K": 0.4})])
    assert GreedyDecoder(LABELS).decode(log_probs).text == "I LOVE NEW YORC"
    pool = DecoderPool(beam_config("--decode.beam_width=16", "--decode.hotwords=[new york]"),
                       LABELS, workers=1)  # in a worker process, as eval and transcribe run it
    try:
        assert pool.submit(log_probs).result().text == "I LOVE NEW YORK"
        assert pool.submit(log_probs, hotwords=[]).result().text == "I LOVE NEW YORC"
        assert pool.submit(log_probs, hotword_weight=0.0).result().text == "I LOVE NEW YORC"
    finally:
        pool.close()


def test_a_hotword_outweighs_the_lm_and_the_acoustics(tmp_path):
    lm_path = tmp_path / "cats.arpa"
    write_arpa(estimate([["THE", "CAT", "IS", "RED"], ["A", "CAT"], ["THE", "CAR"]] * 5, 3),
               lm_path)  # both words known, CAT the likelier
    decoder = BeamDecoder(LABELS, beam_width=16, lm_path=str(lm_path), alpha=0.5, beta=0.0)
    assert decoder.decode(CAT_OR_CAR).text == "THE CAT IS RED"
    decoder.configure(beam_width=16, alpha=0.5, beta=0.0, hotwords=["CAR"])
    assert decoder.decode(CAT_OR_CAR).text == "THE CAR IS RED"


def test_an_lm_whose_words_the_labels_cannot_spell_is_refused(tmp_path):
    from src.errors import UserError
    lower = tmp_path / "lower.arpa"  # 5 lowercase words of 7
    write_arpa(estimate([["the", "car", "is", "red"], ["a", "car"], ["THE", "END"]] * 3, 3), lower)
    message = (f"LM {lower}: 71% of its 7 words use characters outside labels.json (lowercase? "
               "labels.json is upper-case), e.g. ")
    with pytest.raises(UserError, match=re.escape(message)):
        BeamDecoder(LABELS, beam_width=8, lm_path=str(lower))
    proc = run([sys.executable, f"{REPO}/eval.py", "--decode.method=beam",
                f"--decode.lm_path={lower}"], ok=False)  # refused before any work
    assert proc.returncode == 1 and proc.stderr.startswith(f"eval.py: error: {message}")
    assert proc.stderr.strip().count("\n") == 0
    mixed = tmp_path / "mixed.arpa"  # 2 words of 6 unspellable: no reason to refuse
    write_arpa(estimate([["THE", "CAR"], ["CAF\u00c9", "1984"], ["A", "RED", "CAR"]], 2), mixed)
    decoder = BeamDecoder(LABELS, beam_width=8, lm_path=str(mixed))
    assert decoder.decode(log_probs_of("A_ CAR")).text == "A CAR"


LOADS = """
import os, sys, time
sys.path.insert(0, {repo!r})
from src.env import prepare_environment
prepare_environment("CPU")


def built():  # in a worker: its pid and the number of decoders it built
    import src.decoder
    time.sleep(0.5)  # busy: the other worker answers the other call
    return os.getpid(), len(src.decoder._BUILT)


if __name__ == "__main__":
    import numpy as np
    from src.config import load_config
    from src.decoder import DecoderPool
    decode = load_config(["--decode.method=beam", "--decode.lm_path={lm}"], entry="eval").decode
    labels = {labels!r}
    probs = np.log(np.random.default_rng(0).dirichlet(np.ones(len(labels)), size=400))
    for _ in range(2):  # a second pool (the next epoch's validation) shows nothing again
        pool = DecoderPool(decode, labels, 2)
        [f.result() for f in [pool.submit(probs) for _ in range(12)]]
        print(sorted(n for _, n in {{pool._pool.submit(built).result() for _ in range(2)}}))
        pool.close()
"""


def test_lm_loading_messages_show_once_however_many_workers_load_it(tmp_path):
    lm_path = cars_lm(tmp_path / "cars.arpa")
    (tmp_path / "loads.py").write_text(LOADS.format(repo=REPO, lm=lm_path, labels=LABELS))
    proc = run([sys.executable, "loads.py"], cwd=tmp_path)
    assert proc.stdout.split("\n")[:2] == ["[1, 1]", "[1, 1]"]  # 4 processes loaded the LM
    assert proc.stderr.count(f"Reading {lm_path}") == 1, proc.stderr
    assert proc.stderr.count("Loading the LM will be faster") == 1


def test_the_weight_search_scores_every_pair_with_those_weights(tmp_path):
    from src.lm_tuning import search
    a_car = log_probs_of("A_ CAX", overrides=[(5, {"T": 0.5, "R": 0.4})])
    decode = beam_config("--decode.beam_width=16", f"--decode.lm_path={cars_lm(tmp_path / 'c.arpa')}")
    results = search(["THE CAR IS RED", "A CAR"], [CAT_OR_CAR, a_car], LABELS, decode,
                     [(0.0, 0.0), (0.5, 0.0)], workers=2)
    assert [(a, b) for a, b, _ in results] == [(0.0, 0.0), (0.5, 0.0)]
    # LM weight 0: "THE CAT IS RED", "A CAT" (2 of 6 words, 2 of 19 characters wrong)
    assert results[0][2].wer == pytest.approx(100 * 2 / 6)
    assert results[0][2].cer == pytest.approx(100 * 2 / 19)
    assert (results[1][2].wer, results[1][2].utterances) == (0.0, 2)


def test_an_edge_of_the_grid_is_pointed_out_with_a_wider_range():
    from src.lm_tuning import edge_note
    t = EasyDict(alpha_from=0.0, alpha_to=3.0, alpha_steps=7, beta_from=0.0, beta_to=3.0,
                 beta_steps=7)
    assert edge_note(t, 1.5, 2.0) == ""  # inside
    assert edge_note(t, 0.0, 1.0) == ""  # alpha 0: there is no LM weight below
    assert edge_note(t, 3.0, 0.0) == ("note: best alpha 3.0 and beta 0.0: on the edge of the grid, "
                                      "the optimum may lie beyond it; try a wider range, e.g. "
                                      "--alpha_to=6 --beta_from=-3")
    assert edge_note(EasyDict(t, alpha_from=1.0), 1.0, 2.0).endswith("e.g. --alpha_from=0")
    assert edge_note(EasyDict(t, beta_steps=1), 1.5, 0.0) == ""  # beta not searched


def test_a_grid_of_weights_decode_alpha_cannot_take_is_refused():
    from src.errors import UserError
    from src.lm_tuning import grid
    t = EasyDict(alpha_from=0.0, alpha_to=1.0, alpha_steps=3, beta_from=-1.0, beta_to=1.0,
                 beta_steps=2)
    assert grid(t) == [(0.0, -1.0), (0.0, 1.0), (0.5, -1.0), (0.5, 1.0), (1.0, -1.0), (1.0, 1.0)]
    with pytest.raises(UserError, match="tune_lm.beta_to must be a finite number; got inf"):
        grid(EasyDict(t, beta_to=float("inf")))
    with pytest.raises(UserError, match="tune_lm.alpha_from and alpha_to must be >= 0"):
        grid(EasyDict(t, alpha_from=-1.0))
