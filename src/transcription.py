"""Transcribe recordings: audio files -> chunks -> features -> network -> CTC decoder -> words.

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
from collections import Counter, deque

import numpy as np
import soundfile as sf

from src.conv_spec import CONV_SPEC
from src.decoder import DecoderPool
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
PAD_FRAMES = 100  # chunk batches are padded to a multiple of this (1 s): a few compiled shapes
                  # for any recording instead of one per distinct chunk length (each costs a
                  # compile and keeps its memory: 9.5 GB peak at the zoo size on 5 min of speech)


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


def word_confidence(probs, start, end, blank, space):
    """Mean probability of the characters the best path emits in frames [start, end) of one
    utterance's log-probabilities (T', C) (repeats of the previous frame's label are not new
    emissions); without any there (a word only a beam found), the mean best non-blank
    probability over the span."""
    best = probs.argmax(axis=1)  # (T',)
    frames = [t for t in range(start, end) if best[t] not in (blank, space)
              and (t == 0 or best[t] != best[t - 1])]
    if frames:
        return float(np.exp(probs[frames, best[frames]]).mean())
    span = np.delete(probs[start:max(end, start + 1)], blank, axis=1)  # (frames, C - 1)
    return float(np.exp(span.max(axis=1)).mean())


def timed_words(hypothesis, probs, labels, frame_seconds, offset=0.0):
    """[{"word", "start", "end", "confidence"}] of a decoder's Hypothesis for one utterance's
    log-probabilities (T', C): times in seconds (offset + frames x frame_seconds, end after
    the word's last character frame)."""
    blank, space = len(labels) - 1, labels.index(" ")
    return [{"word": word,
             "start": round(offset + start * frame_seconds, 3),
             "end": round(offset + end * frame_seconds, 3),
             "confidence": round(word_confidence(probs, start, end, blank, space), 4)}
            for word, start, end in hypothesis.words]


class Transcriber:
    """Transcription of recordings with an inference network (checkpoint or MindIR) and the
    configured decoder (decode.*), which runs in decode.workers processes beside the network
    (close() ends them). At most two batches of chunks wait for their decoder, so memory stays
    bounded however long the file."""

    def __init__(self, net, cfg):
        self.net, self.cfg = net, cfg
        self.seconds = Counter()  # time spent: "audio+features", "network", "decoding"
        self.labels = load_labels(cfg.labels_path)
        self.pool = DecoderPool(cfg.decode, self.labels, cfg.decode.workers)
        _, hop = stft_params(cfg.features)
        time_stride = int(np.prod([layer.stride[1] for layer in CONV_SPEC]))
        self.frame_seconds = hop * time_stride / cfg.features.sample_rate

    def close(self):
        self.pool.close()

    def _network(self, chunks):
        """[(offset, wave)] -> [(offset, log-probabilities (T'_b, C))], the chunks run as one
        batch padded to a multiple of PAD_FRAMES (padding does not change the outputs)."""
        t0 = time.perf_counter()
        specs = [features_of(w, self.cfg.features) for _, w in chunks]
        longest = max(s.shape[1] for s in specs)
        x, lengths = pad_batch(specs, -(-longest // PAD_FRAMES) * PAD_FRAMES)  # (B, 1, F, T)
        t1 = time.perf_counter()
        probs, out_lengths = log_probs(self.net, x, lengths)  # (T', B, C), (B,)
        self.seconds.update({"audio+features": t1 - t0, "network": time.perf_counter() - t1})
        return [(offset, probs[:int(out_lengths[b]), b]) for b, (offset, _) in enumerate(chunks)]

    def _submit(self, offset, probs):
        t0 = time.perf_counter()
        future = self.pool.submit(probs)  # an inline (greedy) decoder decodes here
        self.seconds["decoding"] += time.perf_counter() - t0
        return offset, probs, future

    def _words(self, pending):
        """The timed words of the oldest chunk waiting for its decoder."""
        offset, probs, future = pending.popleft()
        t0 = time.perf_counter()
        hypothesis = future.result()
        self.seconds["decoding"] += time.perf_counter() - t0
        return timed_words(hypothesis, probs, self.labels, self.frame_seconds, offset)

    def transcribe(self, path):
        """{"path", "duration", "text", "words"} of one file. Raises AudioError naming it."""
        if not os.path.isfile(path):
            raise AudioError(f"audio file not found: {path}")
        samples, rate = audio_info(path)
        if samples == 0:
            raise AudioError(f"audio file {path} is empty")
        size = self.cfg.transcribe.chunks_per_batch
        words, batch, pending = [], [], deque()
        with eval_mode(self.net):
            chunks = read_chunks(path, self.cfg.features.sample_rate,
                                 self.cfg.transcribe.chunk_seconds)
            while True:
                t0 = time.perf_counter()
                chunk = next(chunks, None)  # reading and resampling count as audio time
                self.seconds["audio+features"] += time.perf_counter() - t0
                if chunk is not None:
                    batch.append(chunk)
                if batch and (chunk is None or len(batch) == size):
                    pending += [self._submit(*c) for c in self._network(batch)]
                    batch = []
                    while len(pending) > 2 * size:
                        words += self._words(pending)
                if chunk is None:
                    break
            while pending:
                words += self._words(pending)
        return {"path": path, "duration": round(samples / rate, 3),
                "text": " ".join(w["word"] for w in words), "words": words}
