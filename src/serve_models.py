"""What serve.py runs: the streaming model (one chunk step shared by every stream, src/batching.py),
the offline model of uploads (optional), the decoders streams may choose, and uploads' transcripts.

    models = ServedModels(cfg)                # cfg.serve: checkpoint | onnx, offline_checkpoint
    engine = models.engine(decoder)           # a StreamingTranscriber of one stream
    result = models.transcribe_file(path, name)  # transcribe.py --format json's object
    models.health()                           # what GET /healthz reports of them

Each checkpoint runs with the feature settings it records (a streaming and a bidirectional
model differ in features.normalize); one without a record (the model zoo's) with the config's.
"""
import copy
import os
import sys

from easydict import EasyDict

from src.batching import SharedStep
from src.decoder import GreedyDecoder, decoder_settings, make_decoder
from src.errors import UserError
from src.features import AudioError, audio_info


def log(message):
    print(f"serve.py: {message}", file=sys.stderr, flush=True)


class ServedModels:
    """The models of cfg.serve, loaded (UserError, one line, for what cannot be served)."""

    def __init__(self, cfg):
        s = cfg.serve
        if bool(s.checkpoint) == bool(s.onnx):
            raise UserError("give exactly one of --checkpoint CKPT (a streaming checkpoint) or "
                            "--onnx FILE.onnx (its streaming export, export.py "
                            "--export.streaming=true)")
        self.cfg = cfg
        if s.checkpoint or s.offline_checkpoint:  # an ONNX export alone needs no MindSpore
            from src.context import setup_context
            setup_context(cfg)
        step, self.model = self._streaming_step(cfg)
        self._warm_up(step, s.max_batch)
        self.step = SharedStep(step, s.max_batch)
        self.labels = step.info["labels"]
        self.decoders = self._decoders(cfg.decode, s.decode_methods)
        self.offline, self.offline_model = None, None
        if s.offline_checkpoint:
            self.offline, self.offline_model = self._offline(cfg)

    def _streaming_step(self, cfg):
        """(the chunk step, what health() says of it)."""
        s = cfg.serve
        if s.onnx:
            from src.streaming_onnx import OnnxStep
            step, source, backend = OnnxStep(s.onnx), s.onnx, "onnxruntime"
        else:
            from src.checkpoints import network_from_checkpoint
            from src.streaming import chunk_frames
            from src.streaming_step import network_step
            self.cfg = copy.deepcopy(cfg)  # the checkpoint's own feature settings go into it
            net = network_from_checkpoint(self.cfg, s.checkpoint, log=log, fast_conv=False,
                                          recorded_features=True)
            chunk_frames(self.cfg)  # stream.chunk_ms against the checkpoint's own features
            step, source, backend = network_step(net, self.cfg), s.checkpoint, "mindspore"
        info = step.info
        model = {"source": os.path.basename(source), "backend": backend, "streaming": True,
                 **{k: info["model"][k] for k in ("hidden_size", "num_layers", "lookahead")},
                 "chunk_ms": info["chunk_ms"], "sample_rate": info["features"]["sample_rate"]}
        return step, model

    @staticmethod
    def _warm_up(step, max_batch):
        """Run the step once at each batch size it will see (powers of two up to max_batch,
        src/streaming_step.py's run_batch) before the first client: MindSpore compiles each
        size once, ~1.5 s at the quick-start size, which would stall every stream then."""
        import time

        import numpy as np

        from src.streaming import STEP_INPUTS
        started, size = time.monotonic(), 1
        zeros = [np.zeros(step.info["inputs"][name], np.float32) for name in STEP_INPUTS]
        while True:
            step.run_batch([zeros] * size)
            if size >= max_batch:
                break
            size *= 2
        log(f"chunk step ready for batches of 1 to {size} streams "
            f"({time.monotonic() - started:.1f} s)")

    def _decoders(self, decode_cfg, methods):
        """{method: decoder} of serve.decode_methods, decode.method's first; built once (an LM
        loads once) and shared by the streams."""
        order = [decode_cfg.method] + [m for m in methods if m != decode_cfg.method]
        return {m: GreedyDecoder(self.labels) if m == "greedy" else
                make_decoder(EasyDict({**decode_cfg, "method": m}), self.labels) for m in order}

    def _offline(self, cfg):
        """(the Transcriber of serve.offline_checkpoint, what health() says of it)."""
        from src.checkpoints import network_from_checkpoint
        from src.deepspeech2 import InferenceNet
        from src.transcription import Transcriber
        path = cfg.serve.offline_checkpoint
        offline_cfg = copy.deepcopy(cfg)
        net = network_from_checkpoint(offline_cfg, path, log=log, fast_conv=False,
                                      recorded_features=True)
        lstm = net.RNN.lstms[0]
        model = {"source": os.path.basename(path), "backend": "mindspore", "streaming": False,
                 "hidden_size": lstm.hidden_size, "num_layers": len(net.RNN.lstms),
                 "bidirectional": bool(lstm.bidirectional)}
        # its network passes in the streams' runner thread: one MindSpore graph at a time
        return Transcriber(InferenceNet(net), offline_cfg, run=self.step.call), model

    def engine(self, decoder=None):
        """A StreamingTranscriber of one stream (decoder: its finals'; default the server's)."""
        from src.streaming import StreamingTranscriber
        return StreamingTranscriber(self.step, self.cfg,
                                    decoder or next(iter(self.decoders.values())))

    def transcribe_file(self, path, name):
        """transcribe.py --format json's {"path", "duration", "text", "words"} of the audio
        file `path`, named `name` in it: by the offline model when there is one, else by the
        streaming engine (its finals joined). AudioError naming `name` when it is not audio,
        or holds more than serve.max_stream_seconds (a small file can decode to hours)."""
        try:
            frames, rate = audio_info(path)
            if frames == 0:
                raise AudioError(f"audio file {path} is empty")
            longest = self.cfg.serve.max_stream_seconds
            if frames / rate > longest:
                raise AudioError(f"{path} holds {frames / rate:.0f} s of audio, more than "
                                 f"serve.max_stream_seconds={longest:g}")
            if self.offline is None:
                return self._streamed(path, name)
            return {**self.offline.transcribe(path), "path": name}
        except AudioError as err:
            raise AudioError(str(err).replace(path, name)) from None

    def _streamed(self, path, name):
        """The streaming engine over the file in blocks of a second (memory stays bounded)."""
        import soundfile as sf

        from src.features import READ_ERRORS, pcm16, read_error
        from src.word_times import clip_event
        engine, events, frames = self.engine(), [], 0
        try:
            with sf.SoundFile(path) as f:
                rate = f.samplerate
                for block in f.blocks(blocksize=rate, dtype="float32", always_2d=True):
                    events += engine.accept(pcm16(block, path), rate)
                    frames += len(block)
        except READ_ERRORS as err:
            raise read_error(path, err) from None
        duration = frames / rate
        finals = [clip_event(e, duration) for e in events + engine.finish()
                  if e["event"] == "final" and e["text"]]
        return {"path": name, "duration": round(duration, 3),
                "text": " ".join(e["text"] for e in finals),
                "words": [w for e in finals for w in e["words"]]}

    def health(self):
        decoder = decoder_settings(EasyDict({**self.cfg.decode,
                                             "method": next(iter(self.decoders))}))
        if decoder.get("lm_path"):
            decoder["lm_path"] = os.path.basename(decoder["lm_path"])
        return {"model": self.model, "offline_model": self.offline_model, "decoder": decoder,
                "decode_methods": list(self.decoders),
                "chunk_steps": {"run": self.step.steps, "batches": self.step.batches}}

    def close(self):
        self.step.close()
        if self.offline is not None:
            self.offline.close()
