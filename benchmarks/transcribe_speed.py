"""Real-time factor of transcription on CPU (random weights); one JSON line per configuration.

    python benchmarks/transcribe_speed.py --minutes 5 --sizes 256x3,1024x5

Makes one recording of --minutes of speech-like noise (a seeded amplitude-modulated noise at
16 kHz, with short pauses, so chunks are cut as in real speech), then transcribes it with
transcribe.py's Transcriber (chunks of --chunk_seconds, batches of --batch) and greedy decoding.
Fields: rtf = processing seconds / audio seconds; seconds split into audio+features, network
and decoding; peak_rss_mb of this process (it grows with the largest model measured so far, so
give one size per run for clean memory figures). Random weights are fine for speed.
"""
import argparse
import json
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def make_recording(path, minutes, rate=16000, seed=0):
    """Amplitude-modulated noise with a 0.3 s pause every ~4 s, written as 16-bit WAV."""
    import numpy as np
    import soundfile as sf
    rng = np.random.default_rng(seed)
    n = int(minutes * 60 * rate)
    t = np.arange(n) / rate
    wave = rng.standard_normal(n) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t)) * 3000
    for start in np.arange(4.0, minutes * 60, 4.0):
        wave[int(start * rate):int((start + 0.3) * rate)] = 0
    sf.write(path, wave.astype(np.int16), rate)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--sizes", default="256x3,1024x5", help="hidden x layers, comma-separated")
    p.add_argument("--chunk_seconds", type=float, default=15.0)
    p.add_argument("--batch", type=int, default=4)
    a = p.parse_args(argv)

    from src.config import load_config
    from src.env import prepare_environment
    prepare_environment("CPU", native_conv=False)
    import mindspore as ms

    from src.context import setup_context
    from src.deepspeech2 import InferenceNet, build_network
    from src.transcription import Transcriber

    with tempfile.TemporaryDirectory() as tmp:
        audio = os.path.join(tmp, "recording.wav")
        make_recording(audio, a.minutes)
        for size in a.sizes.split(","):
            hidden, layers = map(int, size.split("x"))
            cfg = load_config([f"--hidden_size={hidden}", f"--num_layers={layers}",
                               f"--batch_size={a.batch}", f"--chunk_seconds={a.chunk_seconds}"],
                              entry="transcribe")
            setup_context(cfg)
            transcriber = Transcriber(InferenceNet(build_network(cfg)), cfg)
            transcriber.transcribe(audio)  # warm-up: graph compiles for the chunk shapes
            transcriber.seconds.clear()
            t0 = time.perf_counter()
            result = transcriber.transcribe(audio)
            total = time.perf_counter() - t0
            print(json.dumps({
                "hidden": hidden, "layers": layers, "decoder": "greedy", "mindspore": ms.__version__,
                "audio_s": result["duration"], "chunk_seconds": a.chunk_seconds,
                "batch": a.batch, "processing_s": round(total, 3),
                "rtf": round(total / result["duration"], 4),
                "seconds": {k: round(v, 3) for k, v in transcriber.seconds.items()},
                "words": len(result["words"]),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}),
                flush=True)


if __name__ == "__main__":
    main()
