"""Transcribe recordings: audio files -> chunks -> features -> network -> greedy CTC -> words.

    t = Transcriber(net, cfg)                  # an InferenceNet or a MindIR GraphCell
    result = t.transcribe(path)                # {"path", "duration", "text", "words": [...]}

Long recordings are read block by block (soundfile) and cut into chunks of at most
transcribe.chunk_seconds, each cut at the quietest 10 ms in the chunk's last quarter (so
words are rarely split), without overlap; memory stays bounded by a couple of chunks whatever
the file's length. Each chunk goes through the same features and network as evaluation (the
spectrogram is normalised per chunk, as per utterance in training); word times are the CTC
output frames (20 ms with the default features) plus the chunk's offset, in seconds of the
original file.
"""
import os
import time
from collections import Counter

import numpy as np
import soundfile as sf

from src.conv_spec import CONV_SPEC
from src.features import (
    READ_ERRORS,
    AudioError,
    audio_info,
    features_of,
    read_error,
    resampled,
    stft_params,
    to_mono,
)
from src.inference import eval_mode, log_probs, pad_batch
from src.manifest import read_manifest
from src.text import load_labels

AUDIO_EXTENSIONS = tuple(f".{ext.lower()}" for ext in sf.available_formats())
CUT_WINDOW = 0.010  # seconds: the energy frame in which a chunk boundary is chosen


def audio_inputs(args):
    """Audio paths from files, folders (recursive, by extension) and manifests (.csv, .json)."""
    paths = []
    for arg in args:
        if os.path.isdir(arg):
            for folder, _, files in sorted(os.walk(arg)):
                paths += [os.path.join(folder, f) for f in sorted(files)
                          if f.lower().endswith(AUDIO_EXTENSIONS)]
        elif arg.lower().endswith((".csv", ".json")) and os.path.isfile(arg):
            paths += [e.audio for e in read_manifest(arg)]
        else:
            paths.append(arg)
    return paths


def cut_point(wave, sample_rate, window=CUT_WINDOW):
    """Index in `wave` to cut at: the start of its quietest `window` in the last quarter."""
    size = max(1, int(window * sample_rate))
    start = (3 * len(wave) // 4) // size * size
    tail = wave[start:start + (len(wave) - start) // size * size]
    if len(tail) < size:
        return len(wave)
    energy = (tail.reshape(-1, size) ** 2).sum(axis=1)
    return start + int(np.argmin(energy)) * size


def read_chunks(path, sample_rate, chunk_seconds):
    """Yield (offset in seconds, mono float32 wave at `sample_rate`) chunks of `path`.

    Scaled and resampled as features.load_audio. Raises AudioError naming the file when it
    cannot be read or decoded.
    """
    try:
        with sf.SoundFile(path) as f:
            rate, limit = f.samplerate, int(chunk_seconds * f.samplerate)
            buffer, offset = np.zeros(0, np.float32), 0
            for block in f.blocks(blocksize=limit, dtype="int16", always_2d=True):
                buffer = np.concatenate([buffer, to_mono(block)])
                while len(buffer) > limit:
                    cut = cut_point(buffer[:limit], rate)
                    yield offset / rate, resampled(buffer[:cut], rate, sample_rate)
                    buffer, offset = buffer[cut:], offset + cut
            if len(buffer):
                yield offset / rate, resampled(buffer, rate, sample_rate)
    except READ_ERRORS as err:
        raise read_error(path, err) from None


def words_from_frames(probs, labels, frame_seconds, offset=0.0):
    """Words of the greedy CTC path of one utterance's log-probabilities (T', C).

    Returns [{"word", "start", "end", "confidence"}]: start/end in seconds (offset + frames x
    frame_seconds, end after the word's last character frame), confidence the mean probability
    of the word's character frames.
    """
    blank, space = len(labels) - 1, labels.index(" ")
    best = probs.argmax(axis=1)  # (T',)
    words, current = [], None
    for t, label in enumerate(best):
        if label == blank or (t > 0 and label == best[t - 1]):
            continue  # blanks and repeats of the previous frame's label emit nothing
        if label == space:
            current = None
            continue
        if current is None:
            current = {"chars": [], "frames": []}
            words.append(current)
        current["chars"].append(labels[label])
        current["frames"].append(t)
    return [{"word": "".join(w["chars"]),
             "start": round(offset + w["frames"][0] * frame_seconds, 3),
             "end": round(offset + (w["frames"][-1] + 1) * frame_seconds, 3),
             "confidence": round(float(np.exp(probs[w["frames"], best[w["frames"]]]).mean()), 4)}
            for w in words]


class Transcriber:
    """Greedy transcription of recordings with an inference network (checkpoint or MindIR)."""

    def __init__(self, net, cfg):
        self.net, self.cfg = net, cfg
        self.seconds = Counter()  # time spent: "audio+features", "network", "decoding"
        self.labels = load_labels(cfg.labels_path)
        _, hop = stft_params(cfg.features)
        time_stride = int(np.prod([layer.stride[1] for layer in CONV_SPEC]))
        self.frame_seconds = hop * time_stride / cfg.features.sample_rate

    def _decode(self, chunks):
        """[(offset, wave)] -> words, with the chunks run as one padded batch."""
        t0 = time.perf_counter()
        specs = [features_of(w, self.cfg.features) for _, w in chunks]
        x, lengths = pad_batch(specs, max(s.shape[1] for s in specs))  # (B, 1, F, T), (B,)
        t1 = time.perf_counter()
        probs, out_lengths = log_probs(self.net, x, lengths)  # (T', B, C), (B,)
        t2 = time.perf_counter()
        words = []
        for b, (offset, _) in enumerate(chunks):
            words += words_from_frames(probs[:int(out_lengths[b]), b], self.labels,
                                       self.frame_seconds, offset)
        self.seconds.update({"audio+features": t1 - t0, "network": t2 - t1,
                             "decoding": time.perf_counter() - t2})
        return words

    def transcribe(self, path):
        """{"path", "duration", "text", "words"} of one file. Raises AudioError naming it."""
        if not os.path.isfile(path):
            raise AudioError(f"audio file not found: {path}")
        samples, rate = audio_info(path)
        if samples == 0:
            raise AudioError(f"audio file {path} is empty")
        words, batch = [], []
        with eval_mode(self.net):
            chunks = read_chunks(path, self.cfg.features.sample_rate,
                                 self.cfg.transcribe.chunk_seconds)
            while True:
                t0 = time.perf_counter()
                chunk = next(chunks, None)  # reading and resampling count as audio time
                self.seconds["audio+features"] += time.perf_counter() - t0
                if chunk is None:
                    break
                batch.append(chunk)
                if len(batch) == self.cfg.data.batch_size:
                    words += self._decode(batch)
                    batch = []
            if batch:
                words += self._decode(batch)
        return {"path": path, "duration": round(samples / rate, 3),
                "text": " ".join(w["word"] for w in words), "words": words}
