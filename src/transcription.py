"""Transcribe recordings: audio files -> chunks -> features -> network -> CTC decoder -> words.

    t = Transcriber(net, cfg)                  # an InferenceNet or a MindIR GraphCell
    result = t.transcribe(path)                # {"path", "duration", "text", "words": [...]}
    subtitles(result["words"], "srt")          # the words as an SRT (or "vtt") document

Long recordings are read block by block (soundfile) and cut into chunks of at most
transcribe.chunk_seconds that overlap by OVERLAP_SECONDS (at most a third of a chunk); memory
stays bounded by a couple of batches of chunks whatever the file's length. Each chunk goes
through the same features and network as evaluation (the spectrogram is normalised per chunk,
as per utterance in training). Two neighbouring chunks are joined at one output frame in the
middle half of their overlap where neither chunk's decoded words have a character (merge_frame),
so no word is cut in two, and every word comes from a chunk that has at least a quarter of the
overlap of audio on each side of it (but at the file's ends; when every frame there is inside a
word, the join is where the fewest are, and each word is still taken from one chunk only).
Word times are the CTC output frames (20 ms with the default features) plus the chunk's
offset, in seconds of the original file, clipped to its duration.
"""
import math
import os
import time
from collections import Counter, namedtuple

import numpy as np
import soundfile as sf

from src.conv_spec import CONV_SPEC
from src.decoder import DecoderPool
from src.errors import UserError
from src.features import (
    READ_ERRORS,
    AudioError,
    audio_info,
    features_of,
    pcm16,
    read_error,
    resampled,
    stft_params,
    to_mono,
)
from src.manifest import read_manifest
from src.text import load_labels
from src.word_times import timed_words

# File extensions of each libsndfile format (sf.available_formats() names formats, not
# extensions: "AIFF" files are .aif, "NIST" ones .sph). RAW is headerless: not taken from
# folders, as any file would "read" as raw samples.
FORMAT_EXTENSIONS = {
    "AIFF": (".aif", ".aiff", ".aifc"), "AU": (".au", ".snd"), "AVR": (".avr",),
    "CAF": (".caf",), "FLAC": (".flac",), "HTK": (".htk",), "SVX": (".iff", ".svx"),
    "MAT4": (".mat",), "MAT5": (".mat",), "MPC2K": (".mpc",), "MP3": (".mp3",),
    "OGG": (".ogg", ".oga", ".opus"), "PAF": (".paf", ".fap"), "PVF": (".pvf",),
    "RF64": (".rf64", ".wav"), "SD2": (".sd2",), "SDS": (".sds",), "IRCAM": (".sf", ".ircam"),
    "VOC": (".voc",), "W64": (".w64",), "WAV": (".wav", ".wave"), "NIST": (".sph", ".nist"),
    "WAVEX": (".wav",), "WVE": (".wve",), "XI": (".xi",),
}
AUDIO_EXTENSIONS = tuple(sorted({ext for name in sf.available_formats()
                                 for ext in FORMAT_EXTENSIONS.get(name, ())}))
MAX_CHUNK_SECONDS = 60  # the network's peak memory grows with it (check_chunk_seconds)
OVERLAP_SECONDS = 2.0  # chunks overlap by this (at most a third of a chunk). Measured (15-s
                       # chunks, 171 s of sample-test, words within 1 s of a join that differ
                       # from the unchunked decode): 20, 14, 14 at 1, 2, 3 s; 45 without overlap
PAD_FRAMES = 100  # chunk batches are padded to a multiple of this (1 s): a few compiled shapes
                  # for any recording instead of one per distinct chunk length (each costs a
                  # compile and keeps its memory: 9.5 GB peak at the zoo size on 5 min of speech)
CUE_PAUSE, CUE_SECONDS, CUE_CHARS = 0.5, 7.0, 42  # a subtitle cue ends at a pause this long or
                                                  # before it would be longer than these
# One network output of a chunk: offset in seconds, first = the file's output frame at which
# the chunk starts, probs (T', C), words [(word, start, end)] in the chunk's frames.
Decoded = namedtuple("Decoded", "offset first probs words")


def check_chunk_seconds(seconds):
    """Raise UserError for a chunk so long that the network's memory is no longer bounded."""
    if seconds > MAX_CHUNK_SECONDS:
        raise UserError(f"transcribe.chunk_seconds={seconds:g} is more than "
                        f"{MAX_CHUNK_SECONDS}: the network's memory grows with the chunk (peak "
                        "with 8 chunks per batch, 15 s -> 60 s: 1.8 -> 3.7 GB for the 256 x 3 "
                        "model, 4.7 -> 8.9 GB at the zoo size) and the models are trained on "
                        "utterances of at most 15 s; use at most 60 (default 15)")


def audio_inputs(args):
    """Audio paths from files, folders (recursive, by AUDIO_EXTENSIONS) and manifests (.csv,
    .json). A path that does not exist is kept, for the transcription to name and skip."""
    paths = []
    for arg in args:
        if os.path.isdir(arg):
            for folder, _, files in sorted(os.walk(arg)):
                paths += [os.path.join(folder, f) for f in sorted(files)
                          if f.lower().endswith(AUDIO_EXTENSIONS)]
        elif arg.lower().endswith((".csv", ".json")) and os.path.isfile(arg):
            paths += manifest_audio(arg)
        else:
            paths.append(arg)
    return paths


def manifest_audio(path):
    """The audio paths of a manifest, whether or not they exist (a missing one is skipped and
    named later, like a missing file on the command line)."""
    return [e.audio for e in read_manifest(path, check_files=False)]


def chunk_sizes(rate, chunk_seconds, frame_seconds):
    """(chunk, step) in samples at `rate`: chunks of at most chunk_seconds start `step` apart,
    a whole number of output frames (so that the chunks' frame grids coincide), and overlap
    by about min(OVERLAP_SECONDS, chunk_seconds / 3)."""
    overlap = min(OVERLAP_SECONDS, chunk_seconds / 3)
    step_frames = max(1, round((chunk_seconds - overlap) / frame_seconds))
    return int(chunk_seconds * rate), round(step_frames * frame_seconds * rate)


def read_chunks(path, sample_rate, chunk_seconds, frame_seconds):
    """Yield (offset in seconds, mono float32 wave at `sample_rate`) of overlapping chunks of
    `path` (chunk_sizes); the last one ends with the file.

    Scaled and resampled as features.load_audio. Raises AudioError naming the file when it
    cannot be read or decoded.
    """
    try:
        with sf.SoundFile(path) as f:
            rate = f.samplerate
            size, step = chunk_sizes(rate, chunk_seconds, frame_seconds)
            buffer, offset = np.zeros(0, np.float32), 0
            for block in f.blocks(blocksize=step, dtype="float32", always_2d=True):
                buffer = np.concatenate([buffer, to_mono(pcm16(block, path))])
                while len(buffer) > size:  # more audio follows this chunk
                    yield offset / rate, resampled(buffer[:size], rate, sample_rate)
                    buffer, offset = buffer[step:], offset + step
            if len(buffer):
                yield offset / rate, resampled(buffer, rate, sample_rate)
    except READ_ERRORS as err:
        raise read_error(path, err) from None


def merge_frame(spans, low, high):
    """The output frame of the file at which the transcript passes from one chunk's words to
    the next one's, given both chunks' word spans [(start, end)] (file frames) and their
    overlap [low, high): in its middle half, the frame that the fewest spans straddle
    (start < frame < end; none: a stretch where neither chunk has a word), nearest the middle.
    The edges are avoided because there a chunk lacks the context on one side."""
    quarter = (high - low) // 4
    middle = (low + high) / 2
    return min(range(low + quarter, high - quarter + 1),
               key=lambda m: (sum(s < m < e for s, e in spans), abs(m - middle)))


def merged(chunks):
    """Overlapping Decoded chunks in file order -> (chunk, its words the transcript takes):
    those that start between the joins (merge_frame) with its neighbours."""
    earlier, low = None, -math.inf
    for chunk in chunks:
        if earlier is not None:
            spans = [(c.first + s, c.first + e) for c in (earlier, chunk) for _, s, e in c.words]
            join = merge_frame(spans, chunk.first, earlier.first + len(earlier.probs))
            yield earlier, _between(earlier, low, join)
            low = join
        earlier = chunk
    if earlier is not None:
        yield earlier, _between(earlier, low, math.inf)


def _between(chunk, low, high):
    return [w for w in chunk.words if low <= chunk.first + w[1] < high]


def cues(words):
    """Subtitle cues [(start, end, text)] of timed words: runs of consecutive words, a cue ending
    at a pause of CUE_PAUSE or more, or before it would last more than CUE_SECONDS or hold
    more than CUE_CHARS characters (a longer single word is a cue of its own)."""
    out = []
    for w in words:
        if out:
            start, end, text = out[-1]
            if (w["start"] - end < CUE_PAUSE and w["end"] - start <= CUE_SECONDS
                    and len(text) + 1 + len(w["word"]) <= CUE_CHARS):
                out[-1] = (start, w["end"], f"{text} {w['word']}")
                continue
        out.append((w["start"], w["end"], w["word"]))
    return out


def timestamp(seconds, separator):
    """01:02:03,456 (SRT, separator ",") or 01:02:03.456 (WebVTT, ".")."""
    ms = round(seconds * 1000)
    return (f"{ms // 3_600_000:02d}:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}"
            f"{separator}{ms % 1000:03d}")


def subtitles(words, fmt):
    """The SRT ("srt": numbered cues) or WebVTT ("vtt": WEBVTT header) document of timed words."""
    sep = "," if fmt == "srt" else "."
    blocks = [f"{timestamp(a, sep)} --> {timestamp(b, sep)}\n{text}\n" for a, b, text in cues(words)]
    if fmt == "srt":
        return "\n".join(f"{i}\n{block}" for i, block in enumerate(blocks, 1))
    return "\n".join(["WEBVTT\n", *blocks])


def _inference():
    """src.inference on first use: it loads MindSpore, which the ONNX streaming path (it takes
    audio_inputs from here) must not."""
    import src.inference
    return src.inference


class Transcriber:
    """Transcription of recordings with an inference network (checkpoint or MindIR) and the
    configured decoder (decode.*), which runs in decode.workers processes beside the network
    (close() ends them). At most two batches of chunks wait for their decoder, so memory stays
    bounded however long the file. `run(function, *args)` runs each network pass (serve.py: in
    the thread that runs all of its MindSpore graphs, src/batching.py)."""

    def __init__(self, net, cfg, run=None):
        self.net, self.cfg, self.run = net, cfg, run or (lambda function, *args: function(*args))
        self.seconds = Counter()  # time spent: "audio+features", "network", "decoding"
        self.labels = load_labels(cfg.labels_path)
        self.pool = DecoderPool(cfg.decode, self.labels, cfg.decode.workers)
        _, hop = stft_params(cfg.features)
        time_stride = int(np.prod([layer.stride[1] for layer in CONV_SPEC]))
        self.frame_seconds = hop * time_stride / cfg.features.sample_rate

    def close(self):
        self.pool.close()

    def transcribe(self, path):
        """{"path", "duration", "text", "words"} of one file. Raises AudioError naming it."""
        if not os.path.isfile(path):
            raise AudioError(f"audio file not found: {path}")
        samples, rate = audio_info(path)
        if samples == 0:
            raise AudioError(f"audio file {path} is empty")
        t = self.cfg.transcribe
        with _inference().eval_mode(self.net):
            chunks = read_chunks(path, self.cfg.features.sample_rate, t.chunk_seconds,
                                 self.frame_seconds)
            words = [w for chunk, kept in merged(self._decoded(chunks))
                     for w in timed_words(kept, chunk.probs, self.labels, self.frame_seconds,
                                          chunk.offset, samples / rate)]
        return {"path": path, "duration": round(samples / rate, 3),
                "text": " ".join(w["word"] for w in words), "words": words}

    def _decoded(self, chunks):
        """(offset, wave) chunks -> Decoded chunks in order; decoding runs beside the network,
        at most two batches of chunks waiting for it."""
        tasks = ((output, [self._submit(output[1])]) for output in self._outputs(chunks))
        window = 2 * self.cfg.transcribe.chunks_per_batch
        for (offset, probs), (future,) in _inference().in_order(tasks, window):
            t0 = time.perf_counter()
            words = future.result().words
            self.seconds["decoding"] += time.perf_counter() - t0
            yield Decoded(offset, round(offset / self.frame_seconds), probs, words)

    def _submit(self, probs):
        t0 = time.perf_counter()
        future = self.pool.submit(probs)  # an inline (greedy) decoder decodes here
        self.seconds["decoding"] += time.perf_counter() - t0
        return future

    def _outputs(self, chunks):
        """(offset, wave) chunks -> (offset, log-probabilities (T', C)), run in batches of
        transcribe.chunks_per_batch."""
        batch, size = [], self.cfg.transcribe.chunks_per_batch
        for chunk in self._read(chunks):
            batch.append(chunk)
            if len(batch) == size:
                yield from self._network(batch)
                batch = []
        if batch:
            yield from self._network(batch)

    def _read(self, chunks):
        """`chunks`, the time spent reading and resampling them counted as audio time."""
        while True:
            t0 = time.perf_counter()
            chunk = next(chunks, None)
            self.seconds["audio+features"] += time.perf_counter() - t0
            if chunk is None:
                return
            yield chunk

    def _network(self, chunks):
        """[(offset, wave)] -> [(offset, log-probabilities (T'_b, C))], the chunks run as one
        batch padded to a multiple of PAD_FRAMES (padding does not change the outputs)."""
        t0 = time.perf_counter()
        specs = [features_of(w, self.cfg.features) for _, w in chunks]
        longest = max(s.shape[1] for s in specs)
        # (B, 1, F, T), (B,)
        x, lengths = _inference().pad_batch(specs, -(-longest // PAD_FRAMES) * PAD_FRAMES)
        t1 = time.perf_counter()
        # (T', B, C), (B,)
        probs, out_lengths = self.run(_inference().log_probs, self.net, x, lengths)
        self.seconds["audio+features"] += t1 - t0
        self.seconds["network"] += time.perf_counter() - t1
        return [(offset, probs[:int(out_lengths[b]), b]) for b, (offset, _) in enumerate(chunks)]
