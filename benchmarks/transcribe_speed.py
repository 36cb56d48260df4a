"""Real-time factor of transcription on CPU, greedy and beam+LM; one JSON line per configuration.

    python benchmarks/transcribe_speed.py --minutes 5 --sizes 256x3,1024x5
    python benchmarks/transcribe_speed.py --checkpoint outputs/checkpoints/DeepSpeech-10_83.ckpt \
        --lm outputs/lm/sample_train_3gram.arpa --alpha 1.0 --beta 2.5 --beam_widths 16,128

The recording is --minutes of the prepared sample's test sentences one after another (real
speech; a seeded speech-like noise when the sample is not prepared). Each size is transcribed
with random weights by transcribe.py's Transcriber (chunks of --chunk_seconds, batches of
--batch), greedy: the network costs the same whatever its weights. Beam search costs what the
outputs' shape makes it cost, and random weights give flat outputs that no trained model
produces (every label stays a candidate in every frame). So with --checkpoint (a trained model)
and --lm, the beam rows run each size's network for real (its time is what is measured) while
the decoder, in --workers processes beside it as transcribe.py runs it, gets the trained
model's outputs of the same chunk batches (recorded once).
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


class Recorded:
    """A network wrapper that keeps every output of the wrapped network (trained model)."""

    def __init__(self, net):
        self.net, self.outputs = net, []
        self.training = False

    def set_train(self, mode):
        self.net.set_train(mode)
        self.training = mode

    def __call__(self, x, lengths):
        out = self.net(x, lengths)
        self.outputs.append(out)
        return out


class Replayed(Recorded):
    """Runs the wrapped network (its time is the cost measured) but returns the recorded
    outputs of the trained model for the same chunk batches, so the decoder sees real outputs."""

    def __init__(self, net, outputs):
        super().__init__(net)
        self.replay = iter(outputs)

    def __call__(self, x, lengths):
        self.net(x, lengths)[0].asnumpy()  # wait for the computation
        return next(self.replay)


def timed_run(transcriber, audio):
    """(result, seconds, split) of one transcription after a warm-up (graph compiles)."""
    transcriber.transcribe(audio)
    transcriber.seconds.clear()
    t0 = time.perf_counter()
    result = transcriber.transcribe(audio)
    return result, time.perf_counter() - t0, dict(transcriber.seconds)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=5.0)
    p.add_argument("--sizes", default="256x3,1024x5", help="hidden x layers, comma-separated")
    p.add_argument("--chunk_seconds", type=float, default=15.0)
    p.add_argument("--batch", type=int, default=8, help="transcribe.chunks_per_batch")
    p.add_argument("--checkpoint", default="", help="trained model whose outputs beam decodes")
    p.add_argument("--lm", default="", help="ARPA/KenLM language model for the beam rows")
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument("--beta", type=float, default=1.0)
    p.add_argument("--beam_widths", default="16,128")
    p.add_argument("--workers", type=int, default=1, help="decode.workers of the beam rows")
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

    def config(hidden, layers, *decode):
        return load_config([f"--hidden_size={hidden}", f"--num_layers={layers}",
                            f"--chunks_per_batch={a.batch}",
                            f"--chunk_seconds={a.chunk_seconds}",
                            *decode], entry="transcribe")

    def row(hidden, layers, decoder, width, result, processing, split, greedy_s):
        return {"hidden": hidden, "layers": layers, "decoder": decoder, "beam_width": width,
                "workers": a.workers if width else 0, "mindspore": ms.__version__,
                "audio": source, "audio_s": result["duration"], "chunk_seconds": a.chunk_seconds,
                "batch": a.batch, "processing_s": round(processing, 3),
                "rtf": round(processing / result["duration"], 4),
                "vs_greedy": round(processing / greedy_s, 3),
                "seconds": {k: round(v, 3) for k, v in split.items()},
                "words": len(result["words"]),
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}

    with tempfile.TemporaryDirectory() as tmp:
        audio = os.path.join(tmp, "recording.wav")
        source = make_recording(audio, a.minutes)
        trained = []
        if a.checkpoint:  # the trained model's outputs of every chunk batch, in order
            cfg = config(256, 3)
            setup_context(cfg)
            recorder = Recorded(InferenceNet(network_from_checkpoint(cfg, a.checkpoint,
                                                                     log=lambda m: None)))
            Transcriber(recorder, cfg).transcribe(audio)
            trained = recorder.outputs
        for size in a.sizes.split(","):
            hidden, layers = map(int, size.split("x"))
            cfg = config(hidden, layers)
            setup_context(cfg)
            net = InferenceNet(build_network(cfg))
            result, greedy_s, split = timed_run(Transcriber(net, cfg), audio)
            print(json.dumps(row(hidden, layers, "greedy", None, result, greedy_s, split,
                                 greedy_s)), flush=True)
            for width in [int(w) for w in a.beam_widths.split(",")] if trained else []:
                beam_cfg = config(hidden, layers, "--decode.method=beam",
                                  f"--decode.beam_width={width}", f"--decode.lm_path={a.lm}",
                                  f"--decode.alpha={a.alpha}", f"--decode.beta={a.beta}",
                                  f"--decode.workers={a.workers}")
                transcriber = Transcriber(Replayed(net, trained * 2), beam_cfg)  # warm-up too
                try:
                    result, seconds, split = timed_run(transcriber, audio)
                finally:
                    transcriber.close()
                print(json.dumps(row(hidden, layers, "beam+lm", width, result, seconds, split,
                                     greedy_s)), flush=True)


if __name__ == "__main__":
    main()
