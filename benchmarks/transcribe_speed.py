"""Real-time factor of transcription on CPU, greedy and beam+LM; one JSON line per configuration.

    python benchmarks/transcribe_speed.py --minutes 5 --sizes 256x3,1024x5
    python benchmarks/transcribe_speed.py --checkpoint outputs/checkpoints/DeepSpeech-10_83.ckpt \
        --lm outputs/lm/sample_train_3gram.arpa --alpha 1.0 --beta 2.5 --beam_widths 16,128

The recording is --minutes of the prepared sample's test sentences one after another (real
speech; a seeded speech-like noise when the sample is not prepared). Each size is transcribed
with random weights by transcribe.py's Transcriber (chunks of --chunk_seconds, batches of
--batch), greedy: the network costs the same whatever its weights. Beam search costs what the
outputs' shape makes it cost, and random weights give flat outputs that no trained model
produces (every label stays a candidate in every frame), so with --checkpoint (a trained model)
and --lm the beam rows decode that model's outputs of the same recording and add the time to
the size's greedy figures: processing_s = greedy processing - greedy decoding + beam decoding.
Fields: rtf = processing seconds / audio seconds; seconds split into audio+features, network
and decoding; peak_rss_mb of this process (it grows with the largest model measured so far).
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
SAMPLE_TEST = os.path.join(REPO, "data", "sample", "libri_test_clean_manifest.csv")


def make_recording(path, minutes, rate=16000, seed=0):
    """The sample-test utterances in a loop with 0.3-s pauses (or, without them, noise with
    a pause every ~4 s), as one 16-bit WAV of `minutes`. Returns what it is made of."""
    import numpy as np
    import soundfile as sf
    n = int(minutes * 60 * rate)
    if os.path.isfile(SAMPLE_TEST):
        from src.features import load_audio
        from src.manifest import read_manifest
        clips = [load_audio(e.audio, rate) for e in read_manifest(SAMPLE_TEST)]
        pause = np.zeros(int(0.3 * rate), np.float32)
        pieces, total, i = [], 0, 0
        while total < n:
            pieces += [clips[i % len(clips)], pause]
            total += len(clips[i % len(clips)]) + len(pause)
            i += 1
        wave, source = np.concatenate(pieces)[:n] * 32767, "sample-test speech"
    else:
        rng = np.random.default_rng(seed)
        t = np.arange(n) / rate
        wave = rng.standard_normal(n) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * 3000
        for start in np.arange(4.0, minutes * 60, 4.0):
            wave[int(start * rate):int((start + 0.3) * rate)] = 0
        source = "noise"
    sf.write(path, np.clip(wave, -32768, 32767).astype(np.int16), rate)
    return source


class KeepOutputs:
    """A decoder that keeps each chunk's log-probabilities (T', C) and outputs nothing."""

    name = "keep"

    def __init__(self):
        self.outputs = []

    def decode(self, log_probs):
        from src.decoder import Hypothesis
        self.outputs.append(log_probs.copy())
        return Hypothesis("")


def greedy_row(transcriber, audio):
    """Time one transcription after a warm-up (graph compiles for the chunk shapes)."""
    transcriber.transcribe(audio)
    transcriber.seconds.clear()
    t0 = time.perf_counter()
    result = transcriber.transcribe(audio)
    return result, time.perf_counter() - t0, dict(transcriber.seconds)


def beam_seconds(outputs, labels, width, a):
    """Seconds to beam-decode all chunk outputs with the LM (the LM load not counted)."""
    from src.decoder import BeamDecoder
    decoder = BeamDecoder(labels, width, a.lm, a.alpha, a.beta)
    t0 = time.perf_counter()
    words = sum(len(decoder.decode(o).words) for o in outputs)
    return time.perf_counter() - t0, words


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--sizes", default="256x3,1024x5", help="hidden x layers, comma-separated")
    p.add_argument("--chunk_seconds", type=float, default=15.0)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--checkpoint", default="", help="trained model whose outputs beam decodes")
    p.add_argument("--lm", default="", help="ARPA/KenLM language model for the beam rows")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--beam_widths", default="16,128")
    a = p.parse_args(argv)
    if bool(a.checkpoint) != bool(a.lm):
        p.error("beam rows need both --checkpoint and --lm")

    from src.config import load_config
    from src.env import prepare_environment
    prepare_environment("CPU", native_conv=False)
    import mindspore as ms

    from src.checkpoints import network_from_checkpoint
    from src.context import setup_context
    from src.deepspeech2 import InferenceNet, build_network
    from src.transcription import Transcriber

    def config(hidden, layers):
        return load_config([f"--hidden_size={hidden}", f"--num_layers={layers}",
                            f"--batch_size={a.batch}", f"--chunk_seconds={a.chunk_seconds}"],
                           entry="transcribe")

    with tempfile.TemporaryDirectory() as tmp:
        audio = os.path.join(tmp, "recording.wav")
        source = make_recording(audio, a.minutes)
        outputs = []
        if a.checkpoint:
            cfg = config(256, 3)
            setup_context(cfg)
            keeper = Transcriber(InferenceNet(network_from_checkpoint(
                cfg, a.checkpoint, log=lambda m: None)), cfg)
            keeper.decoder = KeepOutputs()
            keeper.transcribe(audio)
            outputs = keeper.decoder.outputs
        for size in a.sizes.split(","):
            hidden, layers = map(int, size.split("x"))
            cfg = config(hidden, layers)
            setup_context(cfg)
            transcriber = Transcriber(InferenceNet(build_network(cfg)), cfg)
            result, total, seconds = greedy_row(transcriber, audio)
            rows = [("greedy", None, total, seconds, len(result["words"]))]
            for width in [int(w) for w in a.beam_widths.split(",")] if outputs else []:
                decoding, words = beam_seconds(outputs, transcriber.labels, width, a)
                beam_total = total - seconds["decoding"] + decoding
                rows.append(("beam+lm", width, beam_total, {**seconds, "decoding": decoding},
                             words))
            greedy_total = total
            for decoder, width, processing, split, words in rows:
                print(json.dumps({
                    "hidden": hidden, "layers": layers, "decoder": decoder, "beam_width": width,
                    "mindspore": ms.__version__, "audio": source,
                    "audio_s": result["duration"], "chunk_seconds": a.chunk_seconds,
                    "batch": a.batch, "processing_s": round(processing, 3),
                    "rtf": round(processing / result["duration"], 4),
                    "vs_greedy": round(processing / greedy_total, 3),
                    "seconds": {k: round(v, 3) for k, v in split.items()}, "words": words,
                    "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}),
                    flush=True)


if __name__ == "__main__":
    main()
