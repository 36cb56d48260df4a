"""Manifests: the lists of (audio, transcript) files that train, eval and data_prep share.

- CSV (model zoo / deepspeech.pytorch V2): "wav_path,txt_path[,duration_s]" per row, read and
  written with the csv module, so a path holding a comma or a quote is quoted and reads back.
- JSON (deepspeech.pytorch V3): {"root_path": dir, "samples": [{"wav_path", "transcript_path"
  [, "duration"]}]}, paths relative to root_path.
Relative CSV paths are resolved against the manifest's folder.
"""
import csv
import json
import os
from collections import namedtuple

from src.errors import UserError

Entry = namedtuple("Entry", "audio transcript duration where")  # where: "manifest:line"


class ManifestError(UserError):
    """A manifest problem; the message names the manifest and line."""


def _under(base, path):
    """`path` resolved against the folder `base` (os.path.join, skipped for the absolute paths
    data_prep writes: a third of the time of reading a 281k-line manifest)."""
    return path if path[:1] == os.sep else os.path.join(base, path)


def _read_csv(path):
    base = os.path.dirname(os.path.abspath(path))
    entries = []
    with open(path, encoding="utf-8", newline="") as f:
        for n, row in enumerate(csv.reader(f), 1):
            parts = [p.strip() for p in row]
            if not any(parts):
                continue
            if len(parts) not in (2, 3):
                raise ManifestError(f"{path}:{n}: expected 'wav_path,txt_path[,duration]' "
                                    f"(quote a path that holds a comma), got {','.join(row)!r}")
            try:
                duration = float(parts[2]) if len(parts) == 3 else None
            except ValueError:
                raise ManifestError(f"{path}:{n}: duration {parts[2]!r} is not a number") from None
            entries.append(Entry(_under(base, parts[0]), _under(base, parts[1]), duration,
                                 f"{path}:{n}"))
    return entries


def _read_json(path):
    with open(path, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except json.JSONDecodeError as err:
            raise ManifestError(f"{path}: not valid JSON: {err}") from None
    shape = "{'root_path': ..., 'samples': [...]}"
    if not isinstance(data, dict) or "samples" not in data:
        raise ManifestError(f"{path}: a JSON manifest must be an object {shape}")
    if not isinstance(data["samples"], list):
        raise ManifestError(f"{path}: 'samples' must be a list of objects, got "
                            f"{type(data['samples']).__name__}")
    root = data.get("root_path") or os.path.dirname(os.path.abspath(path))
    if not isinstance(root, str):
        raise ManifestError(f"{path}: 'root_path' must be a folder path")
    entries = []
    for n, sample in enumerate(data["samples"], 1):
        try:
            audio, txt = sample["wav_path"], sample["transcript_path"]
            if not (isinstance(audio, str) and isinstance(txt, str)):
                raise TypeError
        except (KeyError, TypeError):
            raise ManifestError(f"{path}: sample {n} needs 'wav_path' and 'transcript_path' "
                                "strings") from None
        entries.append(Entry(os.path.join(root, audio), os.path.join(root, txt),
                             sample.get("duration"), f"{path}: sample {n}"))
    return entries


def _looks_like_json(path):
    if path.lower().endswith(".json"):
        return True
    with open(path, encoding="utf-8", errors="replace") as f:
        head = f.read(1)
        while head.isspace():
            head = f.read(1)
    return head in ("{", "[")


def read_manifest(path, check_files=True):
    """List of Entry, in file order. With check_files (training, evaluation), raises
    ManifestError naming the line of a missing audio or transcript file; without (transcription,
    which reads no transcripts and skips and names a missing file), entries are as written.

    A duration column (written by data_prep) is the utterance's length for training and
    evaluation (src.dataset.load_utterances reads the audio header of rows without one).
    """
    if not os.path.isfile(path):
        raise ManifestError(f"manifest not found: {path}")
    try:
        entries = _read_json(path) if _looks_like_json(path) else _read_csv(path)
    except UnicodeDecodeError as err:
        raise ManifestError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    except OSError as err:
        raise ManifestError(f"cannot read manifest {path}: {err.strerror or err}") from None
    if not check_files:
        return entries
    for e in entries:
        for kind, file in (("audio", e.audio), ("transcript", e.transcript)):
            if not os.path.isfile(file):
                raise ManifestError(f"{e.where}: {kind} file not found: {file}")
    return entries


def write_manifests(entries, csv_path, json_path, root):
    """Write one split's manifests: zoo CSV (absolute paths + duration) and V3 JSON (relative).

    `entries`: iterable of (audio_path, transcript_path, duration_s), written in the given order.
    """
    entries = list(entries)
    with open(csv_path, "w", encoding="utf-8", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        for audio, txt, dur in entries:
            writer.writerow([os.path.abspath(audio), os.path.abspath(txt), f"{dur:.6f}"])
    samples = [{"wav_path": os.path.relpath(a, root), "transcript_path": os.path.relpath(t, root),
                "duration": round(d, 6)} for a, t, d in entries]
    with open(json_path, "w", encoding="utf-8") as f:
        json.dump({"root_path": os.path.abspath(root), "samples": samples}, f, indent=1)
