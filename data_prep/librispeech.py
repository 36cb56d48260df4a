"""LibriSpeech archives (or an extracted LibriSpeech/ tree) -> split folders + json/csv manifests.

    python data_prep/librispeech.py --source_dir DIR --target_dir OUT [options]

For every split (train, val, test_clean, test_other) it writes
  OUT/<split>/wav/<utt>.wav            16 kHz, 16-bit mono (or flac/ with --audio_format flac)
  OUT/<split>/txt/<utt>.txt            the uppercase transcript
  OUT/libri_<split>_manifest.csv       "wav,txt,duration" per line, absolute paths (zoo format)
  OUT/libri_<split>_manifest.json      deepspeech.pytorch V3 (paths relative to root_path)
sorted by duration, plus OUT/skipped_<split>.txt naming every skipped utterance and why.

Audio is read straight from the .tar.gz stream (no temporary extraction), decoded by soundfile,
resampled only when needed, and written atomically; finished files are skipped on a re-run, so a
killed run can simply be started again. Archive members with absolute paths, '..' components or
links are refused and reported. Exit status: 0, or 1 when nothing usable came out (or, with
--strict, when anything was skipped).
"""
import argparse
import contextlib
import io
import os
import re
import struct
import sys
import tarfile
import threading
import time
import zlib
from collections import Counter
from concurrent.futures import ProcessPoolExecutor

import numpy as np
import soundfile as sf

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)

from data_prep.download import DownloadError, download_file  # noqa: E402,F401  (after the path fix)
from src.cli import check_output_dir  # noqa: E402
from src.errors import UserError  # noqa: E402
from src.manifest import write_manifests  # noqa: E402
from src.progress import progress  # noqa: E402
from src.text import TextEncoder, TextError, load_labels, normalize_transcript  # noqa: E402

SUBSETS = ("train-clean-100", "train-clean-360", "train-other-500", "dev-clean", "dev-other",
           "test-clean", "test-other")
OPENSLR_URL = "https://www.openslr.org/resources/12/{subset}.tar.gz"
# Published MD5 sums of the openslr SLR12 archives (resources/12/md5sum.txt).
MD5 = {
    "dev-clean": "42e2234ba48799c1f50f24a7926300a1",
    "dev-other": "c8d0bcc9cca99d4f8b62fcc847357931",
    "test-clean": "32fa31d27d2e1cad72775fee3f4849a9",
    "test-other": "fb5a50374b501bb3bac4815ee91d3135",
    "train-clean-100": "2a93770f6d5c6c964bc36631d331a522",
    "train-clean-360": "c0e676e450a7ff2f54aeade5171606fa",
    "train-other-500": "d1a0fd59409feb2c614ce4d30c387708",
}
UTT_ID = re.compile(r"^\d+-\d+-\d+$")
GROUP = 16  # audio files per task sent to a worker process
AUDIO_EXT = (".flac", ".wav")


class PrepError(UserError):
    """A problem that stops the run, worded for the user."""


# ----------------------------------------------------------------------------- download
def download(subset, dest_dir, url_template=OPENSLR_URL):
    """Fetch <subset>.tar.gz into dest_dir, resuming a partial file; verify the MD5 when known."""
    return download_file(url_template.format(subset=subset),
                         os.path.join(dest_dir, f"{subset}.tar.gz"), MD5.get(subset))


# ----------------------------------------------------------------------------- audio work
def _atomic_write(path, write):
    """write(tmp) then rename: `path` is complete or absent, never partial.

    A failed write (disk full, unwritable output) raises OSError naming the file; the run stops
    there, since every later file would fail the same way.
    """
    tmp = f"{path}.tmp{os.getpid()}"
    try:
        write(tmp)
    except (RuntimeError, OSError) as err:  # libsndfile reports write errors as RuntimeError
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise OSError(f"cannot write {path}: {str(err).strip()} "
                      "(disk full or output not writable?)") from None
    os.replace(tmp, path)


def _write_bytes(*chunks):
    def write(path):
        with open(path, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
    return write


def wav_header(n_samples, sample_rate):
    """The 44-byte header of a canonical 16-bit mono PCM WAV (the bytes libsndfile writes too)."""
    size = 2 * n_samples
    return struct.pack("<4sI4s4sIHHIIHH4sI", b"RIFF", 36 + size, b"WAVE", b"fmt ", 16, 1, 1,
                       sample_rate, 2 * sample_rate, 2, 16, b"data", size)


def convert_audio(payload, dest, sample_rate, fmt):
    """Decode `payload` (bytes of a flac/wav file), write 16-bit mono `dest`; returns seconds.

    Every file is decoded in full, so broken audio is caught here and not in training. A file
    that already is what `dest` asks for (LibriSpeech's FLAC with --audio_format flac) is copied
    byte for byte instead of re-encoded. Raises ValueError with the reason for unreadable or
    empty audio.
    """
    try:
        with sf.SoundFile(io.BytesIO(payload)) as f:
            sr, kind = f.samplerate, (f.format, f.subtype)
            data = f.read(dtype="int16", always_2d=True)  # (N, channels)
    except (RuntimeError, sf.LibsndfileError) as err:
        raise ValueError(f"unreadable audio ({err})") from None
    if data.shape[0] == 0:
        raise ValueError("empty audio")
    if data.shape[1] == 1 and sr == sample_rate:
        if kind == (fmt.upper(), "PCM_16"):
            _atomic_write(dest, _write_bytes(payload))
            return data.shape[0] / sample_rate
        if fmt == "wav":  # LibriSpeech's case: the samples as they are, 2.5x faster than sf.write
            _atomic_write(dest, _write_bytes(wav_header(data.shape[0], sample_rate),
                                             data.astype("<i2", copy=False).tobytes()))
            return data.shape[0] / sample_rate
        wave = data[:, 0]
    else:
        wave = data.astype(np.float32).mean(axis=1) / 32768
        if sr != sample_rate:
            import librosa
            wave = librosa.resample(wave, orig_sr=sr, target_sr=sample_rate)
        wave = np.clip(wave, -1.0, 32767 / 32768)
    _atomic_write(dest, lambda tmp: sf.write(tmp, wave, sample_rate, format=fmt.upper(),
                                             subtype="PCM_16"))
    return len(wave) / sample_rate


def convert_many(jobs, sample_rate, fmt):
    """convert_audio for [(utt, payload, dest)]: [(utt, seconds or None, error or None)].

    Files travel to the worker processes in groups, which halves the per-file IPC cost.
    """
    results = []
    for utt, payload, dest in jobs:
        try:
            results.append((utt, convert_audio(payload, dest, sample_rate, fmt), None))
        except ValueError as err:
            results.append((utt, None, str(err)))
    return results


def _exit_with_parent(parent):
    """Worker initializer: end this worker once the main process is gone (even after kill -9),
    instead of waiting forever for work that will not come."""
    def watch():
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)
    threading.Thread(target=watch, daemon=True).start()


def existing_duration(path):
    """Duration of a finished output file, or None if it is unreadable."""
    try:
        info = sf.info(path)
    except (RuntimeError, sf.LibsndfileError, OSError):
        return None
    return info.frames / info.samplerate if info.frames else None


# ----------------------------------------------------------------------------- sources
def unsafe_reason(name, member=None):
    """Why an archive member must not be used, or None."""
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        return "absolute path"
    if ".." in re.split(r"[\\/]", name):
        return "'..' in path"
    if member is not None and (member.issym() or member.islnk()):
        return "link"
    if member is not None and not (member.isfile() or member.isdir()):
        return "special file"
    return None


def _subset_of(parts, subsets):
    """The wanted subset a member path (split into parts) lies in, or None."""
    for part in parts[:-1]:
        if part in subsets:
            return part
    return None


def iter_archive(path, subsets, report):
    """Yield (subset, member name, bytes) of audio and transcript members of a .tar.gz stream."""
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                reason = unsafe_reason(member.name, member)
                if reason:
                    report.skip(None, f"{os.path.basename(path)}: member {member.name!r}",
                                f"refused: {reason}")
                    continue
                if not member.isfile():
                    continue
                parts = member.name.split("/")
                subset = _subset_of(parts, subsets)
                if subset is None or not parts[-1].endswith(AUDIO_EXT + (".trans.txt",)):
                    continue
                handle = tar.extractfile(member)
                yield subset, parts[-1], handle.read()
    except (tarfile.TarError, EOFError, OSError, zlib.error) as err:
        report.skip(None, os.path.basename(path), f"truncated or corrupt archive ({err})")


def iter_tree(root, subsets, report):
    """Yield (subset, file name, bytes) from an extracted LibriSpeech/<subset>/ tree."""
    for subset in subsets:
        base = os.path.join(root, subset)
        if not os.path.isdir(base):
            continue
        for folder, _, files in sorted(os.walk(base)):
            for name in sorted(files):
                if not name.endswith(AUDIO_EXT + (".trans.txt",)):
                    continue
                full = os.path.join(folder, name)
                if os.path.islink(full):
                    report.skip(None, full, "refused: link")
                    continue
                with open(full, "rb") as f:
                    yield subset, name, f.read()


def find_sources(source_dir, subsets):
    """[(kind, path, subsets it may hold)] for archives and extracted trees under source_dir."""
    if not os.path.isdir(source_dir):
        raise PrepError(f"source_dir not found: {source_dir}")
    sources, found = [], set()
    for subset in subsets:
        archive = os.path.join(source_dir, f"{subset}.tar.gz")
        if os.path.isfile(archive):
            sources.append(("archive", archive, [subset]))
            found.add(subset)
    for root in (os.path.join(source_dir, "LibriSpeech"), source_dir):
        tree_subsets = [s for s in subsets if s not in found and os.path.isdir(os.path.join(root, s))]
        if tree_subsets:
            sources.append(("tree", root, tree_subsets))
            found.update(tree_subsets)
    return sources, [s for s in subsets if s not in found]


# ----------------------------------------------------------------------------- the run
class Report:
    """Skipped utterances with reasons, per split; written to skipped_<split>.txt."""

    def __init__(self):
        self.items = {}  # split (None = whole run) -> [(name, reason)]
        self.counts = Counter()
        self.failed = set()  # (split, utt) whose audio could not be converted

    def skip(self, split, name, reason):
        self.items.setdefault(split, []).append((name, reason))
        self.counts[reason.split(" (")[0]] += 1

    def total(self):
        return sum(self.counts.values())


def prepare_split(split, subsets, sources, args, encoder, report, pool):
    """Convert one split; returns [(audio, txt, seconds)] of usable utterances.

    Transcripts are checked and written by this (main) process while the workers decode, so only
    the clean-up of unusable ones is left for the end.
    """
    out = os.path.join(args.target_dir, split)
    audio_dir = os.path.join(out, args.audio_format)
    txt_dir = os.path.join(out, "txt")
    os.makedirs(audio_dir, exist_ok=True)
    os.makedirs(txt_dir, exist_ok=True)
    for folder in (audio_dir, txt_dir):  # leftovers of a run killed while writing
        for name in os.listdir(folder):
            if ".tmp" in name:
                os.remove(os.path.join(folder, name))
    present = set(os.listdir(audio_dir))  # audio finished by an earlier run
    transcripts, bad_text, durations, pending, group = {}, {}, {}, [], []
    bar = progress(desc=f"{split}", unit="file")
    for kind, path, holds in sources:
        wanted = [s for s in holds if s in subsets]
        if not wanted:
            continue
        reader = iter_archive if kind == "archive" else iter_tree
        for _, name, payload in reader(path, set(wanted), report):
            if name.endswith(".trans.txt"):
                for n, line in enumerate(payload.decode("utf-8", "replace").splitlines(), 1):
                    if not line.strip():
                        continue
                    utt, _, text = line.strip().partition(" ")
                    if not UTT_ID.match(utt):
                        report.skip(split, f"{name}:{n}", "malformed transcript line")
                        continue
                    text = normalize_transcript(text)
                    try:
                        encoder.encode(text, source=utt)
                    except TextError as err:
                        bad_text[utt] = f"character outside labels.json ({err})"
                        continue
                    transcripts[utt] = text
                    _write_text(os.path.join(txt_dir, f"{utt}.txt"), text)
                continue
            utt = os.path.splitext(name)[0]
            if not UTT_ID.match(utt):
                report.skip(split, name, "audio file name is not <speaker>-<chapter>-<utt>")
                continue
            dest = os.path.join(audio_dir, f"{utt}.{args.audio_format}")
            done = existing_duration(dest) if os.path.basename(dest) in present else None
            if done is not None:
                durations[utt] = done
                bar.update(1)
                continue
            group.append((utt, payload, dest))
            if len(group) == GROUP:
                pending.append(pool.submit(convert_many, group, args.sample_rate,
                                           args.audio_format))
                group = []
                _collect(pending, durations, split, report, bar, limit=4 * args.workers)
    if group:
        pending.append(pool.submit(convert_many, group, args.sample_rate, args.audio_format))
    _collect(pending, durations, split, report, bar, limit=0)
    bar.close()

    entries = []
    for utt in sorted(set(durations) | set(transcripts) | set(bad_text)):
        txt = os.path.join(txt_dir, f"{utt}.txt")
        if (split, utt) in report.failed:
            reason = None  # its audio could not be converted: reported by the worker already
        elif utt not in transcripts and utt not in bad_text:
            reason = "audio with no transcript line"
        elif utt not in durations:
            reason = "transcript line with no audio"
        elif utt in bad_text:
            reason = bad_text[utt]
        elif split == "train" and not args.min_duration <= durations[utt] <= args.max_duration:
            reason = (f"duration {durations[utt]:.2f}s outside "
                      f"[{args.min_duration}, {args.max_duration}] (train filter)")
        else:
            entries.append((os.path.join(audio_dir, f"{utt}.{args.audio_format}"), txt,
                            durations[utt]))
            continue
        if reason is not None:
            report.skip(split, utt, reason)
        with contextlib.suppress(FileNotFoundError):
            os.remove(txt)  # only usable utterances keep a transcript file
    entries.sort(key=lambda e: (e[2], e[0]))
    return entries


def _write_text(path, text):
    """Write `text` atomically unless the file already holds exactly it (cheap re-runs)."""
    with contextlib.suppress(FileNotFoundError):
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                return
    _atomic_write(path, _write_bytes(text.encode("utf-8")))


def _collect(pending, durations, split, report, bar, limit):
    """Harvest finished groups of conversions; block until at most `limit` remain pending."""
    while pending:
        done = [future for future in pending if future.done()]
        if not done:
            if len(pending) <= limit:
                return
            done = [pending[0]]  # wait for the oldest
        for future in done:
            pending.remove(future)
            for utt, seconds, error in future.result():
                if error is None:
                    durations[utt] = seconds
                else:
                    report.skip(split, utt, error)
                    report.failed.add((split, utt))
                bar.update(1)


def parse_args(argv=None):
    p = argparse.ArgumentParser(
        description="LibriSpeech archives -> split folders + json/csv manifests "
                    "(see docs/training.md#dataset).")
    p.add_argument("--source_dir", required=True,
                   help="folder holding <subset>.tar.gz archives and/or an extracted LibriSpeech/")
    p.add_argument("--target_dir", required=True, help="output folder (splits and manifests)")
    p.add_argument("--train_subsets", nargs="*", default=["train-clean-100"],
                   help="subsets merged into the train split (default: train-clean-100)")
    p.add_argument("--val_subsets", nargs="*", default=["dev-clean", "dev-other"],
                   help="subsets merged into the val split (default: dev-clean dev-other)")
    p.add_argument("--test_clean_subsets", nargs="*", default=["test-clean"],
                   help="subsets of the test_clean split (default: test-clean)")
    p.add_argument("--test_other_subsets", nargs="*", default=["test-other"],
                   help="subsets of the test_other split (default: test-other)")
    p.add_argument("--audio_format", choices=["wav", "flac"], default="wav",
                   help="output audio format; flac halves disk use (default: wav)")
    p.add_argument("--sample_rate", type=int, default=16000, help="output rate (default 16000)")
    p.add_argument("--min_duration", type=float, default=1.0,
                   help="train split: skip utterances shorter than this, seconds (default 1)")
    p.add_argument("--max_duration", type=float, default=15.0,
                   help="train split: skip utterances longer than this, seconds (default 15)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="decoding processes (default: all cores)")
    p.add_argument("--labels_path", default=os.path.join(REPO, "labels.json"))
    p.add_argument("--download", action="store_true",
                   help="download missing archives from openslr first (resumable, MD5-checked)")
    p.add_argument("--url_template", default=OPENSLR_URL, help=argparse.SUPPRESS)
    p.add_argument("--strict", action="store_true", help="exit 1 if anything was skipped")
    return p.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    args.source_dir, args.target_dir = map(os.path.abspath, (args.source_dir, args.target_dir))
    check_output_dir(args.target_dir, "--target_dir")
    t0 = time.time()
    splits = {"train": args.train_subsets, "val": args.val_subsets,
              "test_clean": args.test_clean_subsets, "test_other": args.test_other_subsets}
    splits = {k: v for k, v in splits.items() if v}
    overlap = set(args.test_clean_subsets) & set(args.test_other_subsets)
    if overlap:
        raise PrepError(f"subsets {sorted(overlap)} cannot be in both test_clean and test_other")
    wanted = [s for subs in splits.values() for s in subs]
    if args.download:
        for subset in wanted:
            download(subset, args.source_dir, args.url_template)
    sources, missing = find_sources(args.source_dir, wanted)
    if missing:
        print(f"warning: no archive or folder for {', '.join(missing)} in {args.source_dir}",
              file=sys.stderr)
    encoder = TextEncoder(load_labels(args.labels_path), "error")
    report = Report()
    summary = {}
    with ProcessPoolExecutor(max_workers=max(1, args.workers), initializer=_exit_with_parent,
                             initargs=(os.getpid(),)) as pool:
        for split, subsets in splits.items():
            entries = prepare_split(split, set(subsets), sources, args, encoder, report, pool)
            if not entries:
                continue
            root = os.path.join(args.target_dir, split)
            write_manifests(entries, os.path.join(args.target_dir, f"libri_{split}_manifest.csv"),
                            os.path.join(args.target_dir, f"libri_{split}_manifest.json"), root)
            summary[split] = (len(entries), sum(e[2] for e in entries) / 3600)
    for split, items in report.items.items():
        name = f"skipped_{split or 'archives'}.txt"
        with open(os.path.join(args.target_dir, name), "w", encoding="utf-8") as f:
            f.writelines(f"{n}\t{r}\n" for n, r in items)
    for split, (n, hours) in summary.items():
        print(f"{split}: {n} utterances, {hours:.2f} h -> "
              f"{os.path.join(args.target_dir, f'libri_{split}_manifest.csv')}")
    skipped = ", ".join(f"{n} {r}" for r, n in report.counts.items()) or "none"
    print(f"skipped: {skipped}" + (f" (see {args.target_dir}/skipped_*.txt)" if report.total() else ""))
    print(f"done in {time.time() - t0:.1f} s")
    if not summary:
        print("error: no usable utterance was produced", file=sys.stderr)
        return 1
    if args.strict and report.total():
        print("error: --strict and some inputs were skipped", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except (UserError, OSError) as err:
        sys.exit(f"librispeech.py: error: {err}")
