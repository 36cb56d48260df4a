"""Streaming recognition: audio as it arrives -> CTC log-probabilities -> partial and final text.

    engine = StreamingTranscriber(net, cfg)           # a unidirectional, globally normalised model
    events = engine.accept(pcm_bytes, 16000)          # any piece size; int16 PCM or float samples
    events += engine.finish()                         # end of stream: the last frames, last final
    # {"event": "partial", "text", "start", "end"}, {"event": "final", ..., "words": [...]}
    engine = StreamingTranscriber.from_onnx("ds2.onnx", cfg)  # an export: onnxruntime + numpy

StreamingRecognizer gives the network's log-probabilities (T_new, n_class) as soon as they are
final, EQUAL to the offline pass over the whole stream (InferenceNet) up to float rounding. It runs
the network one chunk at a time with a step of fixed shapes, all state explicit (a ChunkStep:
src/streaming_step.py's StreamingStep, a Cell of the network's own modules and weights, in
MindSpore or as its exported MindIR; or its ONNX export in onnxruntime, src/streaming_onnx.py,
with no MindSpore import: this module imports none) and carries between chunks exactly the
context the offline pass sees, derived from src/conv_spec.py (stream_geometry):

- features: SpectrogramStream (src/features.py), frame j final once sample j * hop + n_fft/2 - 1 is
  in; normalised in the network (GlobalNorm) with the training set's statistics;
- conv1 (time kernel 11, stride 2, pad 5): each step takes C new frames plus 5 before and 4 after
  them; frames outside the stream are the zeros of its padding (a validity mask);
- conv2 (kernel 11, stride 1, pad 5): a cache of the last 10 conv1 outputs (after bn1, tanh and the
  length mask: zeros outside the stream, as conv2's padding), so conv2's outputs trail conv1's by 5;
- the LSTMs carry their states and only ever step over frames of the stream: the steps are
  placed so that each one's LSTM frames are all before the stream (the first "priming" steps,
  which fill the conv caches and keep the states as they are) or all in it but for frames after
  its end (the last step), so each layer runs the fused kernel over a chunk at a time;
- the lookahead: a cache of the last L LSTM outputs; outputs trail by L more frames.

At the end of the stream (finish) the last feature frames are computed with the STFT's zero
padding and steps run on zero frames masked as outside the stream until every output frame of
the offline pass (output_lengths(T)) is out. Memory is bounded: a few frames of audio and
features, the fixed caches, and the current segment (at most stream.max_segment).

StreamingTranscriber cuts the stream into segments (Segmenter): one ends at an endpoint, when no
character (only CTC blank or space) has been the best label for stream.endpoint_silence seconds,
or once it is stream.max_segment long (then before its last word). Cuts therefore fall where the
best path emits no character, so the greedy label sequences of the segments, concatenated, are
the offline one's (without stream.reset_state), and the final texts joined by spaces are the
offline greedy text wherever that has a word break in the pause. A model trained on single
utterances often emits only blanks there: offline greedy then glues the words on either side
of the pause into one, the finals keep them apart.
"""
from collections import namedtuple
from types import SimpleNamespace

import numpy as np

from src.conv_spec import CONV_SPEC, conv_out_size, output_lengths, right_context, total_stride
from src.decoder import GreedyDecoder, make_decoder
from src.errors import UserError
from src.features import SpectrogramStream, stft_params, to_mono
from src.text import load_labels
from src.word_times import timed_words

# A network step (feature frames but for `outputs`, `first` and the lags: output frames):
# chunk C new frames, window W = C + kernel - stride frames from `left` frames before the chunk,
# `outputs` n = C / stride new conv1 outputs; conv_cache conv1 outputs kept; conv_lag: conv2
# outputs trail conv1's; lag: emitted outputs trail conv1's (conv_lag + lookahead); `first`: the
# first conv1 output of a stream's first step (<= 0), which puts every step's conv2 outputs
# (the LSTM's frames) on multiples of n: wholly before the stream or starting in it.
Geometry = namedtuple("Geometry",
                      "chunk window left outputs conv_cache conv_lag lookahead lag first")


def stream_geometry(chunk, lookahead, spec=CONV_SPEC):
    """The Geometry of steps of `chunk` feature frames (a multiple of conv1's time stride)."""
    (k1, s1, p1), (k2, s2, p2) = ((c.kernel[1], c.stride[1], c.padding[1]) for c in spec)
    if s2 != 1 or chunk % s1:
        raise ValueError(f"streaming needs conv2's time stride 1 and chunks of a multiple of {s1}")
    n, conv_lag = chunk // s1, k2 - 1 - p2
    return Geometry(chunk, chunk + k1 - s1, p1, n, k2 - 1, conv_lag, lookahead,
                    conv_lag + lookahead, conv_lag - -(-conv_lag // n) * n)


def chunk_frames(cfg):
    """stream.chunk_ms in feature frames; UserError unless a whole number of output frames."""
    _, hop = stft_params(cfg.features)
    stride = total_stride(1, CONV_SPEC)
    output_ms = 1000 * hop * stride / cfg.features.sample_rate
    outputs = cfg.stream.chunk_ms / output_ms
    if abs(outputs - round(outputs)) > 1e-6 or round(outputs) < 1:
        raise UserError(f"stream.chunk_ms={cfg.stream.chunk_ms:g} must be a multiple of "
                        f"{output_ms:g} ms (one network output frame)")
    return round(outputs) * stride


def algorithmic_latency_ms(cfg, lookahead=None):
    """Worst-case delay (ms) from a moment of the stream to the emission of the output frame at
    that moment, when the computation itself takes no time, by part: {"features": the STFT
    window's half after a frame's centre, "front_end": the conv layers' right context
    (conv_spec.right_context), "lookahead": L output frames,
    "chunk": the first output of a step waits for the rest of its chunk, "total"}.
    `lookahead` defaults to cfg.model.lookahead."""
    lookahead = cfg.model.lookahead if lookahead is None else lookahead
    n_fft, hop = stft_params(cfg.features)
    frame_ms = 1000 * hop / cfg.features.sample_rate
    stride = total_stride(1, CONV_SPEC)
    parts = {"features": 1000 * (n_fft // 2) / cfg.features.sample_rate,
             "front_end": right_context(1, CONV_SPEC) * frame_ms,
             "lookahead": lookahead * stride * frame_ms,
             "chunk": (chunk_frames(cfg) - stride) * frame_ms}
    return {**parts, "total": sum(parts.values())}


def check_streamable(network):
    """UserError (one line) unless `network` (a DeepSpeechModel) can run as audio arrives."""
    reasons = []
    if network.RNN.lstms[0].bidirectional:
        reasons.append("it is bidirectional (its backward LSTMs read each utterance from its end)")
    if network.norm is None:
        reasons.append("its features are normalised per utterance (which needs the whole "
                       "utterance's mean and std before its first frame)")
    if reasons:
        raise UserError(f"this model cannot stream: {' and '.join(reasons)}; train a streaming "
                        "one with --model.bidirectional=false --features.normalize=global "
                        "(src/configs/streaming_sample.yaml)")


# The chunk step's inputs and outputs, in order (names of a streaming export's graph).
STEP_INPUTS = ("feats", "feat_mask", "conv_cache", "conv_mask", "rnn_mask", "h", "c", "la_cache")
STEP_OUTPUTS = ("log_probs", "conv_cache_out", "h_out", "c_out", "la_cache_out")
STEP_FORMAT = "deepspeech2-stream-step/1"  # step_info's "format": what the engine can drive
FEATURE_KEYS = ("sample_rate", "window_size", "window_stride", "window", "normalize")


def step_shapes(geometry, features, model):
    """({input: shape}, {output: shape}) of the chunk step (STEP_INPUTS, STEP_OUTPUTS order)."""
    g = geometry
    n_fft, _ = stft_params(SimpleNamespace(**features))
    n_freq, conv1 = n_fft // 2 + 1, CONV_SPEC[0]
    conv_cache = [1, conv1.out_channels, conv_out_size(n_freq, 0, (conv1,)), g.conv_cache]
    state = [model["num_layers"], 1, model["hidden_size"]]
    inputs = dict(zip(STEP_INPUTS, ([1, 1, n_freq, g.window], [1, g.window], conv_cache,
                                    [g.outputs], [g.outputs], state, state,
                                    [g.lookahead, 1, model["hidden_size"]])))
    outputs = {"log_probs": [g.outputs, model["n_class"]],
               **{f"{name}_out": inputs[name] for name in ("conv_cache", "h", "c", "la_cache")}}
    return inputs, outputs


def step_info(network, cfg):
    """What a runtime needs to drive the chunk step of `network` (a streamable DeepSpeechModel)
    at cfg's stream.chunk_ms, all JSON values: format (STEP_FORMAT), chunk_ms, geometry
    (Geometry's fields, in feature frames), features (FEATURE_KEYS), labels (CTC blank last),
    model (hidden_size, num_layers, bidirectional, lookahead, n_class), inputs and outputs
    ({name: shape}). export.py stores it in a streaming export (ONNX metadata_props, MindIR
    user_info: one entry per key, JSON text)."""
    lookahead = 0 if network.lookahead is None else network.lookahead.context
    geometry = stream_geometry(chunk_frames(cfg), lookahead)
    lstms = network.RNN.lstms
    model = {"hidden_size": lstms[0].hidden_size, "num_layers": len(lstms),
             "bidirectional": bool(lstms[0].bidirectional), "lookahead": lookahead,
             "n_class": network.fc.module.out_channels}
    features = {k: cfg.features[k] for k in FEATURE_KEYS}
    inputs, outputs = step_shapes(geometry, features, model)
    return {"format": STEP_FORMAT, "chunk_ms": cfg.stream.chunk_ms,
            "geometry": geometry._asdict(), "features": features,
            "labels": list(load_labels(cfg.labels_path)), "model": model,
            "inputs": inputs, "outputs": outputs}


def check_info(info, source):
    """`info` (step_info's dict, read from the file `source`) when this engine can drive it;
    UserError (one line) for a file that is not a streaming export or one of another
    geometry (a front-end this version does not have)."""
    if info.get("format") != STEP_FORMAT:
        raise UserError(f"{source} is not a streaming export of export.py (its metadata has no "
                        f"format {STEP_FORMAT!r}): export one with --export.streaming=true")
    geometry = Geometry(**info["geometry"])
    expected = stream_geometry(geometry.chunk, geometry.lookahead)
    shapes = step_shapes(geometry, info["features"], info["model"])
    if geometry != expected or [info["inputs"], info["outputs"]] != list(shapes):
        raise UserError(f"{source} was exported for another front-end geometry ({geometry}) "
                        "than this version's: export it again")
    return info


class ChunkStep:
    """A runtime of the chunk step, the part of StreamingRecognizer that runs the network:
    src/streaming_step.py's MindSporeStep (a StreamingStep in-process, or a MindIR) or
    src/streaming_onnx.py's OnnxStep (onnxruntime, no MindSpore).

    info: step_info's dict. zeros(shape): a state array of the runtime (the caches and LSTM
    states stay the runtime's arrays between steps). step(feats, feat_mask, conv_cache,
    conv_mask, rnn_mask, h, c, la_cache) (a call), the first two and the masks numpy float32
    -> (numpy log-probabilities (n, n_class), conv_cache, h, c, la_cache).
    """

    def __init__(self, info):
        self.info = info

    def zeros(self, shape):
        return np.zeros(shape, np.float32)

    def __call__(self, feats, feat_mask, conv_cache, conv_mask, rnn_mask, h, c, la_cache):
        raise NotImplementedError

    def run_batch(self, steps):
        """[the inputs of one step of each of several streams] -> [each one's outputs]: here one
        after another; a runtime that takes a batch runs them together (batch_inputs)."""
        return [self(*inputs) for inputs in steps]


# The batch axis of each step input (STEP_INPUTS order) and output (STEP_OUTPUTS order but
# log_probs); None: the masks, (n,) per stream, stacked into (B, n).
INPUT_BATCH_AXES = (0, 0, 0, None, None, 1, 1, 1)
OUTPUT_BATCH_AXES = (0, 1, 1, 1)


def batch_inputs(steps):
    """The numpy inputs of one step of each of B streams -> the inputs of one step of the batch:
    (B, 1, F, W), (B, W), (B, 32, F1, 10), (B, n), (B, n), (layers, B, H) x 2, (L, B, H)."""
    return [np.stack(arrays) if axis is None else np.concatenate(arrays, axis=axis)
            for axis, arrays in zip(INPUT_BATCH_AXES, zip(*steps))]


def split_outputs(outputs, size):
    """The numpy outputs of a batch of `size` streams' steps (log_probs (n B, C), time-major,
    then the states) -> each stream's outputs, shaped as a step of that stream alone."""
    log_probs, *states = outputs
    per_frame = log_probs.reshape(-1, size, log_probs.shape[-1])  # (n, B, C)
    return [(per_frame[:, i], *(np.take(x, [i], axis=axis)
                                for axis, x in zip(OUTPUT_BATCH_AXES, states)))
            for i in range(size)]


class StreamingRecognizer:
    """Audio in pieces -> the network's CTC log-probabilities, each output frame as soon as it
    is final; concatenated, they equal the offline pass over the whole stream.

        engine = StreamingRecognizer(net, cfg)       # DeepSpeechModel or InferenceNet
        for probs in engine.accept(samples, 16000):  # one (T_new, n_class) array per step
            ...
        rest = engine.finish()                       # the last ones; then a new stream starts
        engine = StreamingRecognizer.from_onnx(path) # an ONNX streaming export, no MindSpore

    Samples: int16 PCM (little-endian bytes, any length, or an array) or float arrays scaled as
    int16 / 32767, (N,) or (N, channels) averaged to mono as features.load_audio does; at any
    sample rate, resampled to the model's with a streaming resampler (soxr; exact against the
    offline pass only at the model's rate). UserError for a model that cannot stream.

    `net` may also be a ChunkStep (a step backend: src/streaming_step.py's network_step or
    mindir_step, src/streaming_onnx.py's OnnxStep), whose info gives the chunk, features and
    labels; cfg is then not needed. With a network, cfg gives them (stream.chunk_ms,
    features.*, labels_path) and the step runs in MindSpore.
    """

    def __init__(self, net, cfg=None):
        if not isinstance(net, ChunkStep):
            from src.streaming_step import network_step  # MindSpore: only for a network
            net = network_step(net, cfg)
        self.step, info = net, net.info
        self.g = Geometry(**info["geometry"])
        self.labels = info["labels"]
        features = SimpleNamespace(**info["features"])
        self.rate, self.window = features.sample_rate, features.window
        self.n_fft, self.hop = stft_params(features)
        self.frame_seconds = self.hop * total_stride(1, CONV_SPEC) / self.rate
        self.state_shapes = {name: tuple(info["inputs"][name])
                             for name in ("conv_cache", "h", "la_cache")}
        self.reset()

    @classmethod
    def from_onnx(cls, path, threads=0):
        """The engine of an ONNX streaming export (export.py --export.streaming=true), run by
        onnxruntime with `threads` threads (0: its default); never imports MindSpore."""
        from src.streaming_onnx import OnnxStep
        return cls(OnnxStep(path, threads))

    def reset(self):
        """Start a new stream: every buffer and state empty."""
        self.features = SpectrogramStream(self.n_fft, self.hop, self.window)
        self.input_rate, self.resampler, self.odd_byte = None, None, b""
        self.first = self.g.first  # a: the first conv1 output of the next step
        # feature frames of the next window (from frame 2a - left on) and their validity
        before = self.g.left - 2 * self.first  # frames before the stream's first
        self.frames = np.zeros((self.n_fft // 2 + 1, before), np.float32)  # (F, k)
        self.valid = np.zeros(before, np.float32)  # (k,)
        self.emitted = 0  # output frames given out
        self.conv_cache = self.step.zeros(self.state_shapes["conv_cache"])
        self.la_cache = self.step.zeros(self.state_shapes["la_cache"])
        self.reset_recurrent()

    def reset_recurrent(self):
        """Zero the LSTM states (stream.reset_state at an endpoint)."""
        self.h = self.c = self.step.zeros(self.state_shapes["h"])

    def accept(self, samples, sample_rate=None):
        """Samples of the stream at `sample_rate` (default: the model's) -> [(T_new, n_class)
        log-probabilities of the output frames now final], one array per network step run."""
        return list(self.steps(samples, sample_rate))

    def steps(self, samples, sample_rate=None):
        """accept() as a generator: the caller may act between steps (reset_recurrent)."""
        wave = self._at_model_rate(self._mono(samples), sample_rate or self.rate)
        self._add_frames(self.features.feed(wave))
        while self.frames.shape[1] >= self.g.window:
            yield self._run(np.inf, np.inf)

    def finish(self):
        """The remaining log-probabilities of the stream, [(T_new, n_class)], computed with the
        offline pass's zero padding after its end; then the engine is ready for a new stream."""
        if self.resampler is not None:
            self._add_frames(self.features.feed(self.resampler.resample_chunk(
                np.zeros(0, np.float32), last=True)))
        out = []
        if self.features.samples:
            self._add_frames(self.features.finish())
            total = self.features.frames  # T
            conv1_frames, outputs = conv_out_size(total, 1, CONV_SPEC[:1]), output_lengths(total)
            while self.emitted < outputs:
                pad = self.g.window - self.frames.shape[1]
                if pad > 0:  # the frames after the end: zeros, outside the stream
                    self.frames = np.pad(self.frames, ((0, 0), (0, pad)))
                    self.valid = np.pad(self.valid, (0, pad))
                out.append(self._run(conv1_frames, outputs))
        self.reset()
        return out

    def _mono(self, samples):
        """int16 PCM bytes / int16 or float arrays -> mono float32 scaled as load_audio."""
        if isinstance(samples, (bytes, bytearray, memoryview)):
            data = self.odd_byte + bytes(samples)
            even = len(data) - len(data) % 2
            self.odd_byte = data[even:]  # half a sample: completed by the next piece
            samples = np.frombuffer(data[:even], "<i2")
        samples = np.asarray(samples)
        samples = samples[:, None] if samples.ndim == 1 else samples  # (N, channels)
        if samples.dtype == np.int16:
            return to_mono(samples)
        if samples.dtype.kind == "f":
            if not np.isfinite(samples).all():  # one NaN would poison every later state
                raise UserError("audio samples hold NaN or infinite values: the stream is "
                                "refused (nothing of this piece was used)")
            return samples.astype(np.float32).mean(axis=1)
        raise UserError(f"audio samples must be int16 PCM (bytes or array) or float, "
                        f"not {samples.dtype}")

    def _at_model_rate(self, wave, rate):
        if self.input_rate is None:
            self.input_rate = rate
            if rate != self.rate:
                import soxr  # librosa's resampler, here in its streaming form
                self.resampler = soxr.ResampleStream(rate, self.rate, 1, dtype="float32",
                                                     quality="HQ")
        elif rate != self.input_rate:
            raise UserError(f"the sample rate of a stream cannot change: it started at "
                            f"{self.input_rate} Hz, this piece is {rate} Hz")
        return wave if self.resampler is None else self.resampler.resample_chunk(wave)

    def _add_frames(self, spec):
        """New final feature frames (F, k) of the stream into the next windows."""
        self.frames = np.concatenate([self.frames, spec], axis=1)
        self.valid = np.concatenate([self.valid, np.ones(spec.shape[1], np.float32)])

    def _run(self, conv1_frames, outputs):
        """One chunk step over the first window of frames -> its new final log-probabilities
        (k, n_class). conv1_frames, outputs: the stream's conv1 and output frame counts once it
        has ended, else inf."""
        g, a = self.g, self.first
        conv1_times = a + np.arange(g.outputs)  # this step's new conv1 outputs
        conv_mask = (conv1_times >= 0) & (conv1_times < conv1_frames)
        rnn_mask = (conv1_times - g.conv_lag >= 0) & (conv1_times - g.conv_lag < outputs)
        probs, self.conv_cache, self.h, self.c, self.la_cache = self.step(
            np.ascontiguousarray(self.frames[None, None, :, :g.window]),
            np.ascontiguousarray(self.valid[None, :g.window]), self.conv_cache,
            conv_mask.astype(np.float32), rnn_mask.astype(np.float32), self.h, self.c,
            self.la_cache)
        self.frames, self.valid = self.frames[:, g.chunk:], self.valid[g.chunk:]
        self.first += g.outputs
        start = a - g.lag  # the output frame of probs[0]
        end = min(start + g.outputs, outputs)
        new = probs[max(self.emitted - start, 0):max(end - start, 0)]  # (k, n_class)
        self.emitted = max(self.emitted, end)
        return new


class Segmenter:
    """CTC log-probabilities of a stream -> partial and final events of its segments.

    A segment starts at its first frame whose best label is a character (frames before it are
    released at once) and ends at an endpoint: `silence` frames in a row whose best label is the
    blank or the space (no character), or when it reaches `longest` frames, then before its last
    word (its first frame), so that no word is cut. A final is decoded with `decoder` (default:
    the configured one, decode.*) with word times in seconds of the stream.
    """

    def __init__(self, cfg, labels, frame_seconds, decoder=None):
        self.labels, self.frame_seconds = labels, frame_seconds
        self.decoder = decoder or make_decoder(cfg.decode, labels)
        self.greedy = GreedyDecoder(labels)
        self.quiet_labels = (len(labels) - 1, labels.index(" "))  # blank, space
        self.silence = max(1, round(cfg.stream.endpoint_silence / frame_seconds))
        self.longest = max(1, round(cfg.stream.max_segment / frame_seconds))
        self.rows, self.start, self.quiet, self.partial = [], 0, 0, ""

    def push(self, probs):
        """probs (k, n_class), the stream's next output frames -> (events, whether an endpoint
        of silence was reached)."""
        events, endpoint = [], False
        for row in probs:
            quiet = int(row.argmax()) in self.quiet_labels
            if quiet and not self.rows:
                self.start += 1  # nothing said yet
                continue
            self.rows.append(row)
            self.quiet = self.quiet + 1 if quiet else 0
            if self.quiet >= self.silence:
                events.append(self._final(len(self.rows)))
                endpoint = True
            elif len(self.rows) >= self.longest:
                events.append(self._final(self._last_word_start()))
        text = self.greedy.decode(np.stack(self.rows)).text if self.rows else ""
        if text != self.partial:
            self.partial = text
            if text:
                events.append(self._event("partial", text, len(self.rows)))
        return events, endpoint

    def finish(self):
        """The final of the segment in progress at the end of the stream ([] or [event])."""
        events = [self._final(len(self.rows))] if self.rows else []
        self.start, self.quiet, self.partial = 0, 0, ""
        return events

    def _last_word_start(self):
        words = self.greedy.decode(np.stack(self.rows)).words
        return words[-1][1] if len(words) > 1 else len(self.rows)

    def _event(self, kind, text, frames):
        seconds = self.start * self.frame_seconds
        return {"event": kind, "text": text, "start": round(seconds, 3),
                "end": round(seconds + frames * self.frame_seconds, 3)}

    def _final(self, cut):
        """The final event of the first `cut` frames of the segment, which are released."""
        probs = np.stack(self.rows[:cut])  # (cut, n_class)
        hyp = self.decoder.decode(probs)
        event = self._event("final", hyp.text, cut)
        event["words"] = timed_words(hyp.words, probs, self.labels, self.frame_seconds,
                                     event["start"])
        self.rows, self.start, self.partial = self.rows[cut:], self.start + cut, ""
        self.quiet = min(self.quiet, len(self.rows))
        return event


class StreamingTranscriber:
    """Audio in pieces -> events: {"event": "partial" | "final", "text", "start", "end"} (+
    "words" [{word, start, end, confidence}] on finals), times in seconds of the stream.

        engine = StreamingTranscriber(net, cfg)           # or a ChunkStep (StreamingRecognizer)
        engine = StreamingTranscriber.from_onnx(path, cfg)  # an ONNX export, no MindSpore
        for event in engine.accept(samples, sample_rate) + engine.finish(): ...

    With stream.reset_state the LSTM states are zeroed at each endpoint of silence. cfg gives
    stream.* and decode.* (or `decoder` the finals' decoder); with a network also the chunk,
    features and labels (with an export those are the file's).
    """

    def __init__(self, net, cfg, decoder=None):
        self.recognizer = StreamingRecognizer(net, cfg)
        self.segmenter = Segmenter(cfg, self.recognizer.labels, self.recognizer.frame_seconds,
                                   decoder)
        self.reset_state = cfg.stream.reset_state

    @classmethod
    def from_onnx(cls, path, cfg, threads=0):
        """The transcriber of an ONNX streaming export (its chunk, features and labels are the
        file's; cfg's stream.* and decode.*), run by onnxruntime; never imports MindSpore."""
        from src.streaming_onnx import OnnxStep
        return cls(OnnxStep(path, threads), cfg)

    def accept(self, samples, sample_rate=None):
        events = []
        for probs in self.recognizer.steps(samples, sample_rate):
            new, endpoint = self.segmenter.push(probs)
            events += new
            if endpoint and self.reset_state:
                self.recognizer.reset_recurrent()
        return events

    def finish(self):
        """The events of the end of the stream; then a new stream starts."""
        events = [e for probs in self.recognizer.finish() for e in self.segmenter.push(probs)[0]]
        return events + self.segmenter.finish()
