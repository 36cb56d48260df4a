"""Word n-gram language models for beam search: build an ARPA from text, or download LibriSpeech's.

    python data_prep/build_lm.py [--manifests A.csv ...] [--text corpus.txt ...] [--order 3] \
        [--out outputs/lm/lm_3gram.arpa]
    python data_prep/build_lm.py --download 3-gram.pruned.3e-7 [--download librispeech-vocab] \
        [--out_dir data/lm]

Building: sentences are the transcripts of the manifests (default: the prepared sample's
training manifest) and/or the lines of text files (UTF-8, plain or .gz, e.g. LibriSpeech's
librispeech-lm-norm.txt), normalised as training transcripts are (upper case, typographic
apostrophes as ') with punctuation removed (the apostrophe stays: it is a label); a line with
digits or another character outside labels.json is skipped (the network cannot spell it). What
was skipped or removed is counted and printed, with the n-gram counts of the ARPA header.
Smoothing: interpolated modified Kneser-Ney (src/ngram.py), pure Python, for up to a few
million words.

Downloading: the LMs of openslr SLR11 (resumable; a partial file is continued on the next run);
an .arpa.gz is also unpacked to .arpa, since the kenlm module installed here (ufal-kenlm) reads
plain ARPA and KenLM binary files only. Use the printed path as --decode.lm_path.
"""
import argparse
import gzip
import os
import shutil
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass, field

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from data_prep.download import download_file  # noqa: E402  (after the path fix above)
from src.cli import check_output_dir, tool_main  # noqa: E402
from src.errors import UserError  # noqa: E402
from src.manifest import read_manifest  # noqa: E402
from src.ngram import estimate, write_arpa  # noqa: E402
from src.progress import progress  # noqa: E402
from src.text import load_labels, normalize_transcript, read_transcript  # noqa: E402

OPENSLR_LM_URL = "https://www.openslr.org/resources/11/{file}"
PUBLISHED = {  # --download name -> file on openslr SLR11
    "3-gram.pruned.1e-7": "3-gram.pruned.1e-7.arpa.gz",   # 34 MB
    "3-gram.pruned.3e-7": "3-gram.pruned.3e-7.arpa.gz",   # 13.7 MB (the zoo config's LM)
    "3-gram": "3-gram.arpa.gz",                           # 759 MB
    "4-gram": "4-gram.arpa.gz",                           # 1.36 GB
    "librispeech-vocab": "librispeech-vocab.txt",         # the 200k-word vocabulary
}
DEFAULT_MANIFEST = os.path.join(REPO, "data", "sample", "libri_train_manifest.csv")


def manifest_sentences(path):
    """The transcripts of a manifest, one sentence each."""
    for entry in read_manifest(path):
        yield read_transcript(entry.transcript, entry.where)


def text_sentences(path):
    """The lines of a text file (gzip-compressed when it ends in .gz) as UTF-8 text; a line that
    is not UTF-8 is an error naming the file and the line."""
    if not os.path.isfile(path):
        raise UserError(f"text file not found: {path}")
    opener = gzip.open if path.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            for number, raw in enumerate(f, 1):
                try:
                    yield raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise UserError(f"{path}, line {number}: not UTF-8 text ({err.reason} at "
                                    f"byte {err.start} of the line)") from None
    except (OSError, EOFError) as err:
        raise UserError(f"cannot read text file {path}: {err}") from None


class _Punctuation(dict):
    """str.translate table, filled as characters come: punctuation marks (Unicode class P) but
    the apostrophe (a label) -> space; anything else unchanged."""

    def __missing__(self, code):
        mark = chr(code) != "'" and unicodedata.category(chr(code)).startswith("P")
        self[code] = " " if mark else code
        return self[code]


PUNCTUATION = _Punctuation()


@dataclass
class Dropped:
    """What normalisation took out of the text (for the report)."""
    digit_lines: int = 0   # lines skipped: numbers are not spelled out
    other_lines: int = 0   # lines skipped for other characters outside the labels
    marks: int = 0         # punctuation marks removed from the lines kept
    chars: Counter = field(default_factory=Counter)  # the skipped lines' characters outside

    def text(self):
        chars = ", ".join(f"{c!r} {n}" for c, n in self.chars.most_common(10))
        return (f"skipped {self.digit_lines + self.other_lines} lines ({self.digit_lines} with "
                f"digits: numbers are not spelled out; {self.other_lines} with other characters "
                f"outside labels.json){': ' + chars if chars else ''}; removed {self.marks} "
                "punctuation marks")


def normalised(lines, labels, dropped):
    """The lines as word lists: normalised as transcripts are (apostrophes, upper case, white
    space), punctuation marks but the apostrophe removed, and so are tokens left with nothing
    but apostrophes (quote marks); a line with a character outside the labels is skipped (the
    network cannot spell it). What goes is counted in `dropped` (a Dropped)."""
    allowed = set(labels[:-1])
    sentences = []
    for line in lines:
        text = normalize_transcript(line)
        words = [w for w in text.translate(PUNCTUATION).split() if w.strip("'")]
        outside = set("".join(words)) - allowed
        if outside:
            dropped.chars.update(c for c in "".join(words) if c in outside)
            if any(c.isdigit() for c in outside):
                dropped.digit_lines += 1
            else:
                dropped.other_lines += 1
        elif words:
            dropped.marks += len(text.replace(" ", "")) - sum(len(w) for w in words)
            sentences.append(words)
    return sentences


def build(args):
    if args.order < 2:
        raise UserError(f"--order must be at least 2 (KenLM reads bigram models and up), got "
                        f"{args.order}")
    sources = [("manifest", m) for m in args.manifests] + [("text", t) for t in args.text]
    if not sources:
        if not os.path.isfile(DEFAULT_MANIFEST):
            raise UserError(f"no --manifests or --text given and the default {DEFAULT_MANIFEST} "
                            "does not exist (prepare it: bash scripts/run_data_prep.sh --sample)")
        sources = [("manifest", DEFAULT_MANIFEST)]
    check_output_dir(os.path.dirname(args.out), "--out's folder")
    labels = load_labels(args.labels_path)
    sentences, dropped = [], Dropped()
    for kind, path in sources:
        lines = manifest_sentences(path) if kind == "manifest" else text_sentences(path)
        sentences += normalised(progress(lines, desc=f"read {os.path.basename(path)}",
                                         unit="line"), labels, dropped)
    if not sentences:
        raise UserError(f"no sentence to build a language model from ({dropped.text()})")
    sizes = write_arpa(estimate(sentences, args.order), args.out)
    print(f"{len(sentences)} sentences, {sum(len(s) for s in sentences)} words; "
          f"{dropped.text()}")
    print(f"n-grams: {', '.join(f'{size} {n}-grams' for n, size in enumerate(sizes, 1))} "
          "(<s>, </s> and <unk> among the 1-grams)")
    print(f"language model: {args.out}  (use --decode.method=beam --decode.lm_path={args.out})")


def gunzip(path):
    """path.gz -> path (through path.part, so a killed run leaves no partial result)."""
    plain = path[:-3]
    if not os.path.isfile(plain):
        with gzip.open(path, "rb") as src, open(plain + ".part", "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
        os.replace(plain + ".part", plain)
    return plain


def fetch(args):
    check_output_dir(args.out_dir, "--out_dir")
    for name in args.download:
        file = PUBLISHED[name]
        path = download_file(args.url_template.format(file=file), os.path.join(args.out_dir, file))
        if path.endswith(".gz"):
            try:
                path = gunzip(path)
            except (OSError, EOFError) as err:
                raise UserError(f"cannot unpack {path} ({err}); remove it and download again") \
                    from None
        print(f"{name}: {path}")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description="Build a word n-gram ARPA language model from text, "
                                            "or download LibriSpeech's (openslr SLR11).")
    p.add_argument("--manifests", nargs="*", default=[],
                   help=f"manifests whose transcripts are the text (default: {DEFAULT_MANIFEST} "
                        "when no --text is given)")
    p.add_argument("--text", nargs="*", default=[], help="text files, one sentence per line")
    p.add_argument("--order", type=int, default=3, help="n-gram order (default 3)")
    p.add_argument("--out", default=os.path.join(REPO, "outputs", "lm", "lm_3gram.arpa"),
                   help="ARPA file to write (default: outputs/lm/lm_3gram.arpa in the repository)")
    p.add_argument("--labels_path", default=os.path.join(REPO, "labels.json"))
    p.add_argument("--download", nargs="+", action="extend", choices=sorted(PUBLISHED), default=[],
                   help="download these published LibriSpeech LMs instead of building one")
    p.add_argument("--out_dir", default=os.path.join(REPO, "data", "lm"),
                   help="--download: folder to put them in (default: data/lm in the repository)")
    p.add_argument("--url_template", default=OPENSLR_LM_URL, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    args.out, args.out_dir = os.path.abspath(args.out), os.path.abspath(args.out_dir)
    args.manifests = [os.path.abspath(m) for m in args.manifests]
    args.text = [os.path.abspath(t) for t in args.text]
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.download:
        fetch(args)
    else:
        build(args)
    return 0


if __name__ == "__main__":
    sys.exit(tool_main("build_lm.py", main))
