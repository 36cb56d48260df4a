"""Manifests -> utterances -> the planned, padded batches -> a MindSpore dataset.

load_utterances reads a manifest; BatchSource builds the batches an EpochPlanner (src.planner:
which utterances, padded to which length, in which order) plans for them: features,
augmentation, padding. Nothing is cropped: training utterances longer than `max_duration`, and
those too long for CTC (more labels than output steps), are skipped and counted. Durations come
from the manifest where it has them, so audio is first opened where its features are made:
audio that fails there is replaced in its batch and reported (FirstUse), training goes on.
"""
import os
import re
from collections import Counter, namedtuple
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from src.augment import Augmenter, AugmentError
from src.conv_spec import output_lengths
from src.errors import UserError
from src.features import (
    AudioError,
    audio_info,
    features_of,
    featurize,
    freq_bins,
    load_audio,
    num_frames,
    stft_params,
)
from src.manifest import ManifestError, read_manifest
from src.planner import Batching, EpochPlanner, ctc_steps
from src.progress import progress
from src.text import TextError, normalize_transcript, read_transcript

# label: (S,) integer array of label ids; frames: spectrogram frames (from the duration).
Utterance = namedtuple("Utterance", "audio transcript text label frames")

COLUMNS = ["inputs", "input_lengths", "targets", "target_lengths"]
# Column after COLUMNS: per row, 0 or the FIRST_USE code of the utterance it stands in for.
FLAGS = "first_use_failed"
UNREADABLE, LONGER = 1, 2
FIRST_USE = {UNREADABLE: "unreadable audio", LONGER: "audio longer than its manifest duration"}

CHUNK = 512  # manifest rows read per thread task (data.read_threads tasks at a time)


class Report(Counter):
    """Counts of skipped utterances by reason; the files behind unreadable or empty audio and
    empty transcripts (`files`, every one); the first EXAMPLES of each reason (`examples`); the
    reasons that stop training (`fatal`: counted only by the data check, else raised)."""

    EXAMPLES = 3

    def __init__(self):
        super().__init__()
        self.files, self.examples, self.fatal = [], {}, set()

    def skip(self, reason, example, named=False, fatal=False):
        self[reason] += 1
        shown = self.examples.setdefault(reason, [])
        if len(shown) < self.EXAMPLES:
            shown.append(example)
        if named:
            self.files.append(example)
        if fatal:
            self.fatal.add(reason)

    def text(self):
        return ", ".join(f"{n} {reason}" for reason, n in sorted(self.items())) or "none"


# ASCII characters that normalize_transcript's white space (regex \s) matches besides " ".
OTHER_SPACE = "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f"


def normalized(texts):
    """[normalize_transcript(t) for t in texts], seconds faster at 281k transcripts: texts that
    are normal already (data_prep writes them so) are checked all at once and kept; others go
    through one normalize_transcript call over them joined by NUL (white space runs never
    cross it: ~2 s instead of ~4 s)."""
    joined = "\0".join(texts)
    if already_normal(joined):
        return list(texts)
    parts = normalize_transcript(joined).split("\0")
    if len(parts) != len(texts):  # a transcript holds a NUL
        return [normalize_transcript(t) for t in texts]
    return [p.strip() for p in parts]


def already_normal(joined):
    """True when the NUL-joined texts `joined` are each their own normalize_transcript: ASCII
    (no typographic apostrophe), upper case, single spaces only, none at either end. A few
    scans of the whole string (~0.2 s at 281k transcripts against ~2 s of regex)."""
    return (joined.isascii() and joined == joined.upper() and "  " not in joined
            and not any(c in joined for c in OTHER_SPACE) and " \0" not in joined
            and "\0 " not in joined and not joined.startswith(" ") and not joined.endswith(" "))


def label_encoder(encoder):
    """encode(norm, text, source) -> (normalised text, label ids (S,)) as encoder.encode(text)
    gives them, `norm` being normalize_transcript(text): ASCII texts whose characters are all
    labels (LibriSpeech's) through one bytes.translate (~1 us instead of ~20 us), anything else
    through encoder.encode and its data.unknown_chars policy."""
    table = bytearray(b"\xff" * 256)
    for ch, i in encoder.char_to_id.items():
        if len(ch) == 1 and ord(ch) < 128 and i < 255:
            table[ord(ch)] = i

    def encode(norm, text, source):
        if norm.isascii():
            ids = norm.encode("ascii").translate(table)
            if b"\xff" not in ids:
                return norm, np.frombuffer(ids, np.uint8)
        label = encoder.encode(text, source)
        return encoder.decode(label), np.array(label, np.int32)
    return encode


def _read_text(entry):
    """The transcript of `entry`, or the UserError that names the line. Read as bytes with
    os.read (half the time of a text-mode open at 281k files); text that is not ASCII, or of
    64 KiB or more, goes to read_transcript (its UTF-8 text, or its error)."""
    try:
        fd = os.open(entry.transcript, os.O_RDONLY)
        try:
            data = os.read(fd, 1 << 16)
        finally:
            os.close(fd)
        if len(data) < 1 << 16 and data.isascii():
            return data.decode("ascii")
        return read_transcript(entry.transcript, entry.where)
    except TextError as err:
        return err
    except FileNotFoundError:
        return ManifestError(f"{entry.where}: transcript file not found: {entry.transcript}")
    except OSError as err:
        return ManifestError(f"{entry.where}: cannot read transcript {entry.transcript}: "
                             f"{err.strerror or err}")


def _read_header(entry):
    """(samples, rate) of `entry`'s audio, an AudioError (unreadable) or a ManifestError (no
    such file: the manifest is wrong, as read_manifest says it)."""
    try:
        return audio_info(entry.audio)
    except AudioError as err:
        if not os.path.exists(entry.audio):
            return ManifestError(f"{entry.where}: audio file not found: {entry.audio}")
        return err


def _missing(entry):
    """None, or the ManifestError of a row whose audio file does not exist: a manifest pointing
    at the wrong folder stops training at once, naming the line (one stat per row)."""
    if os.path.exists(entry.audio):
        return None
    return ManifestError(f"{entry.where}: audio file not found: {entry.audio}")


def read_rows(entries, threads, all_headers=False, bar=None):
    """(entry, transcript or its error, header or its error or None) per manifest entry, in
    order: every transcript, and the audio headers of the rows without a duration (of every
    row with `all_headers`; the others are only checked to exist), read by `threads` threads
    (the reads wait on the disk or the network, not on the CPU)."""
    def read(chunk):
        return [(_read_text(e), _read_header(e) if all_headers or e.duration is None
                 else _missing(e)) for e in chunk]

    chunks = [entries[i:i + CHUNK] for i in range(0, len(entries), CHUNK)]
    pool = ThreadPoolExecutor(threads)
    try:
        for chunk, results in zip(chunks, pool.map(read, chunks)):
            for entry, (text, header) in zip(chunk, results):
                yield entry, text, header
            if bar is not None:
                bar.update(len(chunk))
    finally:  # a raised error: the chunks not started yet are not read
        pool.shutdown(cancel_futures=True)


class _Rows:
    """The checks of load_utterances, one manifest row at a time."""

    def __init__(self, encoder, report, max_duration, check, features):
        self.encode, self.encoder = label_encoder(encoder), encoder
        self.report, self.max_duration, self.check = report, max_duration, check
        self.features = features

    def stop(self, err, reason):
        """A problem that stops training: raised, or counted as fatal by the data check."""
        if not self.check:
            raise err
        self.report.skip(reason, str(err), fatal=True)

    def duration(self, entry, header):
        """Seconds of `entry`'s audio (the manifest's, else its header's), None when skipped."""
        if isinstance(header, ManifestError):
            self.stop(header, "audio file not found")
        elif isinstance(header, AudioError):
            self.report.skip("unreadable audio", f"{entry.where}: {header}", named=True)
        elif header is not None and header[0] == 0:
            self.report.skip("empty audio", f"{entry.where}: {entry.audio}: empty", named=True)
        else:
            if header is not None and entry.duration is not None:
                self.compare(entry, header[0] / header[1])
            duration = entry.duration if entry.duration is not None else header[0] / header[1]
            if not (self.max_duration and duration > self.max_duration):
                return duration
            self.report.skip("longer than max_duration",
                             f"{entry.where}: {entry.audio}: {duration:.2f} s")
        return None

    def compare(self, entry, seconds):
        """Data check: audio longer than its manifest duration by more than the frame of slack
        that batches have (training skips it where it is first read)."""
        if self.frames(seconds) > self.frames(entry.duration) + 1:
            self.report.skip("audio longer than its manifest duration",
                             f"{entry.where}: {entry.audio}: {seconds:.3f} s, the manifest says "
                             f"{entry.duration:.3f} s")

    def frames(self, seconds):
        """Spectrogram frames of `seconds` of audio."""
        f = self.features
        return num_frames(np.rint(np.asarray(seconds) * f.sample_rate).astype(np.int64),
                          stft_params(f)[1])

    def label(self, entry, text, norm):
        """(text, label) of `entry`'s transcript `text` (normalised: `norm`), None when
        skipped."""
        if isinstance(text, UserError):
            self.stop(text, "transcript not found or not UTF-8")
            return None
        dropped = self.check and sum(self.encoder.dropped.values())
        try:
            norm, label = self.encode(norm, text, f"{entry.where} ({entry.transcript})")
        except TextError as err:
            self.stop(err, "characters outside labels.json")
            return None
        if self.check and sum(self.encoder.dropped.values()) > dropped:
            shown = self.report.examples.setdefault("characters dropped (not in labels.json)", [])
            if len(shown) < Report.EXAMPLES:
                shown.append(f"{entry.where}: {entry.transcript}")
        if not len(label):  # nothing to learn from, and no reference to score against
            self.report.skip("empty transcript",
                             f"{entry.where}: {entry.transcript}: empty transcript", named=True)
            return None
        return norm, label


def load_utterances(manifest, features, encoder, max_duration=None, ctc_filter=True,
                    report=None, check=False, desc=None, threads=2):
    """Read a manifest into Utterances (with encoded labels and frame counts).

    Durations come from the manifest's duration column (data_prep writes it); only rows without
    one have their audio header read, and audio is otherwise first opened where its features
    are made (BatchSource, evaluation), which finds unreadable files. Transcripts and headers
    are read by `threads` threads (data.read_threads). Skips (and counts in `report`)
    unreadable or empty audio (of the headers read), utterances over `max_duration` seconds,
    empty transcripts and, with `ctc_filter` (training), those whose label cannot fit the
    network's output length under CTC.

    `check` (train.py --check_data): every header is read (audio longer than its manifest
    duration is counted), problems that stop training (a missing file, a character outside
    labels.json under data.unknown_chars=error) are counted in report.fatal instead of raised,
    and nothing usable returns no utterances. `desc`: show a progress bar with this name.
    """
    report = Report() if report is None else report
    entries = read_manifest(manifest, check_files=False)
    rows = _Rows(encoder, report, max_duration, check, features)
    bar = progress(total=len(entries), desc=desc, unit="rows") if desc else None
    sized = [(entry, text, rows.duration(entry, header))
             for entry, text, header in read_rows(entries, threads, check, bar)]
    if bar is not None:
        bar.close()
    sized = [(entry, text, d) for entry, text, d in sized if d is not None]
    norms = iter(normalized([t for _, t, _ in sized if isinstance(t, str)]))
    kept = []  # (entry, text, label, duration)
    for entry, text, duration in sized:
        found = rows.label(entry, text, next(norms) if isinstance(text, str) else None)
        if found is not None:
            kept.append((entry, *found, duration))
    if encoder.dropped:
        report["characters dropped (not in labels.json)"] += sum(encoder.dropped.values())
    utts = _utterances(kept, rows.frames([d for *_, d in kept]), ctc_filter, report)
    if not utts and not check:
        first = f"; first: {report.files[0]}" if report.files else ""
        raise ManifestError(f"{manifest}: no usable utterances (skipped: {report.text()}{first})")
    return utts, report


def _utterances(kept, frames, ctc_filter, report):
    """Utterances of the rows `kept` (entry, text, label, duration) of `frames` (N,)
    spectrogram frames; with `ctc_filter`, those whose label fits CTC (the others counted in
    `report`)."""
    fits = np.ones(len(kept), bool)
    if ctc_filter and kept:
        steps = ctc_steps([label for _, _, label, _ in kept])
        fits = output_lengths(frames) >= steps
        for i in np.flatnonzero(~fits):
            report.skip("transcript too long for the audio (CTC)",
                        f"{kept[i][0].where}: {len(kept[i][2])} labels need {steps[i]} output "
                        f"steps, {kept[i][3]:.2f} s of audio give {output_lengths(frames[i])}")
    return [Utterance(e.audio, e.transcript, text, label, int(n))
            for (e, text, label, _), n, ok in zip(kept, frames, fits) if ok]


class BatchSource(EpochPlanner):
    """Random-access source of padded batches for ms.dataset.GeneratorDataset: the micro-batches
    its EpochPlanner plans for `utts`, built from their (augmented) features. It is the planner
    too, so the training loop reads the plan (steps_per_epoch, bounds, micro_batches...) from
    the source it iterates.

    Item: inputs (B, 1, F, T) float32, input_lengths (B,) int32, targets (B, S) int32 (S fixed
    per pad length T), target_lengths (B,) int32, first-use flags (B,) int32: 0, or why the
    row's utterance failed where its audio was first read (FIRST_USE), the row then holding a
    copy of one that worked (the batch keeps its shape: no new graph), zeros if none did.
    """

    def __init__(self, utts, features, batching, augmenter=None):
        """utts: Utterances; features: the feature settings (features); batching: a
        Batching; augmenter: an Augmenter (its speed factors are planned) or None."""
        factors = augmenter.factors if augmenter else [1.0]
        super().__init__([u.frames for u in utts], [u.label for u in utts],
                         stft_params(features)[1], batching, factors,
                         augmenter.speed_from if augmenter else 0)
        self.utts, self.features, self.augmenter = utts, features, augmenter

    def batch_utterances(self, step):
        """Utterances of optimizer step `step`."""
        return [self.utts[i] for item in self.micro_batches(step)
                for i in self.item_batch(item)[0]]

    def __getitem__(self, item):
        chosen, pad, factors = self.item_batch(item)
        seed = [self.batching.seed, int(item), self.batching.rank]
        specs, flags = [], np.zeros(len(chosen), np.int32)
        for j, (n, factor) in enumerate(zip(chosen, factors)):
            try:
                spec = self.utterance_features(self.utts[n], factor, seed + [j])  # (F, T_j)
            except AudioError:  # unreadable past its header, or never opened before
                spec, flags[j] = None, UNREADABLE
            if spec is not None and spec.shape[1] > pad:  # its manifest duration is wrong
                spec, flags[j] = None, LONGER
            specs.append(spec)
        labels = [self.utts[n].label for n in chosen]
        return (*self.padded(*self._stand_ins(specs, labels, flags), pad), flags)

    def _stand_ins(self, specs, labels, flags):
        """(specs, labels) with the failed rows holding a copy of the first that worked, or an
        empty frame and label when none did."""
        good = next((j for j, flag in enumerate(flags) if not flag), None)
        if good is None:
            return [np.zeros((freq_bins(self.features), 1), np.float32)] * len(specs), \
                [labels[0][:0]] * len(specs)
        return ([specs[good] if flag else spec for spec, flag in zip(specs, flags)],
                [labels[good] if flag else label for label, flag in zip(labels, flags)])

    def padded(self, specs, labels, pad):
        """Spectrograms [(F, T_j)] and labels [(S_j,)] zero-padded into an item of pad length
        `pad` (T) and its label width (S)."""
        inputs = np.zeros((len(specs), 1, freq_bins(self.features), pad), np.float32)
        targets = np.zeros((len(specs), self.label_width[pad]), np.int32)
        for j, (spec, label) in enumerate(zip(specs, labels)):
            inputs[j, 0, :, :spec.shape[1]] = spec
            targets[j, :len(label)] = label
        lengths = np.array([spec.shape[1] for spec in specs], np.int32)
        target_lengths = np.array([len(label) for label in labels], np.int32)
        return inputs, lengths, targets, target_lengths

    def utterance_features(self, utt, factor, seed):
        """The (augmented) spectrogram (F, T) of `utt` at speed `factor`; the augmentations draw
        from a generator seeded by `seed` (seed, item, rank, position), so a resumed run repeats
        them."""
        aug = self.augmenter
        if aug is None or not (aug.on_wave or aug.on_spec):
            return featurize(utt.audio, self.features)
        rng = np.random.default_rng(seed)
        if aug.on_wave:
            wave = load_audio(utt.audio, self.features.sample_rate)
            try:
                wave = aug.wave(wave, float(factor), rng)
            except AugmentError as err:
                raise AugmentError(f"{utt.audio}: {err}") from None  # which file it was
            spec = features_of(wave, self.features)
        else:
            spec = featurize(utt.audio, self.features)
        return aug.spec(spec, rng)


def training_source(utts, cfg, rank=0, group_size=1):
    """The BatchSource of a training run as configured (shuffled, sortagrad, augmentation,
    gradient accumulation, this rank's shard)."""
    batching = Batching(cfg.data.batch_size, cfg.data.num_buckets, cfg.train.epochs,
                        shuffle=True, seed=cfg.seed, sortagrad=cfg.data.sortagrad,
                        accumulate=cfg.train.accumulate_steps, rank=rank, group_size=group_size)
    augmenter = Augmenter(cfg.augment, cfg.features.sample_rate)
    return BatchSource(utts, cfg.features, batching, augmenter)


def create_dataset(source, num_parallel_workers=1, start_step=0, flags=False):
    """MindSpore dataset over `source` (BatchSource), from optimizer step `start_step` on: the
    COLUMNS, and with `flags` the first-use flags (for FirstUse) after them."""
    import mindspore.dataset as ds
    first = source.micro_batches(start_step).start if start_step else 0
    indices = list(range(first, len(source)))
    sampler = ds.SequentialSampler() if first == 0 else ds.SubsetSampler(indices)
    workers = max(1, int(num_parallel_workers))
    data = ds.GeneratorDataset(source, column_names=COLUMNS + [FLAGS], sampler=sampler,
                               num_parallel_workers=workers, python_multiprocessing=workers > 1,
                               max_rowsize=-1)
    return data if flags else data.project(COLUMNS)


class FirstUse:
    """Utterances that failed where their audio was first read (BatchSource flags them): each
    file logged once (`warn`) and counted by reason in `report`. A micro-batch in which nothing
    could be read is left out of its step, and a step left empty is skipped: `limit` of them in
    a row (0: no limit), or an epoch's worth, stop the run; in a data-parallel run the first one
    does, as one device cannot skip a step alone."""

    def __init__(self, source, warn, limit, data_parallel=False):
        self.source, self.warn, self.data_parallel = source, warn, data_parallel
        self.limit = min(limit or source.steps_per_epoch, source.steps_per_epoch)
        self.report, self.seen, self.empty_run = Report(), set(), 0

    def screen(self, step, batches):
        """The COLUMNS of the micro-batches of optimizer step `step` (as create_dataset(...,
        flags=True) yields them) that hold an utterance that could be read."""
        kept = []
        for item, batch in zip(self.source.micro_batches(step), batches):
            flags = np.asarray(batch[-1])
            chosen = self.source.item_batch(item)[0]
            for j in np.flatnonzero(flags):
                self.note(self.source.utts[chosen[j]], int(flags[j]), step)
            if not flags.all():
                kept.append(batch[:len(COLUMNS)])
        self.empty_run = 0 if kept else self.empty_run + 1
        if not kept and (self.data_parallel or self.empty_run >= self.limit):
            where = "a batch" if self.data_parallel else f"the last {self.empty_run} step(s)"
            raise ManifestError(f"step {step + 1}: no utterance of {where} could be read (first: "
                                f"{self.report.files[0]}); check the manifest's audio (python "
                                "train.py --check_data reads every file)")
        return kept

    def note(self, utt, flag, step):
        """Count and log `utt`, which failed with FIRST_USE `flag` (once per file)."""
        if utt.audio in self.seen:
            return
        self.seen.add(utt.audio)
        if flag == UNREADABLE:
            detail = first_use_error(utt.audio, self.source.features)
        else:
            detail = (f"{utt.audio}: longer than the {utt.frames} frames of its manifest "
                      "duration; correct the duration column")
        self.report.skip(FIRST_USE[flag], detail, named=True)
        self.warn(f"step {step + 1}: skipped where first read: {detail} (its row in the batch "
                  "repeats another utterance of it)")


def first_use_error(path, feature_cfg):
    """The AudioError message of `path` as this process reads it."""
    try:
        featurize(path, feature_cfg)
    except AudioError as err:
        return str(err)
    return f"{path}: could not be read by a data worker (readable now: a passing I/O error?)"


def iterate(data):
    """The tuples of a MindSpore dataset. An error raised inside a worker (the sox program
    failing, ...) is re-raised as one line instead of the framework's trace (audio that cannot
    be read is not an error there: BatchSource flags it)."""
    iterator = data.create_tuple_iterator(num_epochs=1)
    while True:
        try:
            item = next(iterator)
        except StopIteration:
            return
        except RuntimeError as err:
            found = re.findall(r"(AudioError|ManifestError|TextError|AugmentError): (.+)", str(err))
            if found and found[-1][0] == "AugmentError":
                raise AugmentError(found[-1][1].strip()) from None
            raise ManifestError(found[-1][1].strip() if found else str(err).splitlines()[0]) \
                from None
        yield item
