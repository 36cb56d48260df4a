"""Streaming recognition: latency, compute per chunk, real-time factor and concurrent streams.

    python benchmarks/streaming_latency.py --sizes 256x3,1024x5 --backends mindspore,onnx,int8
    python benchmarks/streaming_latency.py --checkpoint outputs/streaming/checkpoints/X.ckpt

One JSON line per (size, backend): "algorithmic_latency_ms" (src/streaming.py, from the conv
spec), "step_ms" median and p95 (one chunk step, features and bookkeeping included), "rtf"
(processing seconds / audio seconds, one stream fed as fast as it goes), "streams": the most
concurrent real-time streams (one process each, up to --max_streams, doubling) that all kept up
on this machine, and the CPU. Sizes run with random weights (the network costs the same whatever
its weights) of a streamable model: unidirectional, global normalisation, lookahead 2.
Backends: mindspore (the checkpoint's StreamingStep), onnx and int8 (the chunk step exported by
export.py --streaming --file_format=ONNX [--quantize=int8], run by onnxruntime).
With --checkpoint (a trained streaming model), one more line: "partial_latency_ms" median and
p95, the time from the end of a word in the audio to the first partial result that holds it, the
audio fed at real time; words and their end times come from the offline pass of that model.
The audio is the sample-test sentences one after another (run_data_prep.sh --sample).
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
from src.env import cpu_name  # noqa: E402  (after the path fix above)

SAMPLE_TEST = os.path.join(REPO, "data", "sample", "libri_test_clean_manifest.csv")
# A streamable model, run as transcribe.py --stream runs it (MindSpore's own Conv2D, not the
# CPU fast path's numpy callback: src/env.py uses_fast_conv).
STREAM_FLAGS = ["--bidirectional=false", "--normalize=global", "--lookahead=2", "--stream=true"]


def recording(seconds, manifest=SAMPLE_TEST, rate=16000):
    """int16 samples (N,): the manifest's utterances in a loop with 0.5-s pauses."""
    import numpy as np

    from src.features import load_audio
    from src.manifest import read_manifest
    pause = np.zeros(rate // 2, np.float32)
    pieces, total = [], 0
    for entry in read_manifest(manifest) * 100:
        pieces += [load_audio(entry.audio, rate), pause]
        total += len(pieces[-2]) + len(pause)
        if total >= seconds * rate:
            break
    return (np.concatenate(pieces)[:int(seconds * rate)] * 32767).astype(np.int16)


def make_checkpoint(path, size):
    """A random-weight streamable checkpoint of `size` ("HIDDENxLAYERS")."""
    from src.checkpoints import save_network
    from src.config import load_config
    from src.deepspeech2 import build_network
    hidden, layers = size.split("x")
    cfg = load_config([f"--hidden_size={hidden}", f"--num_layers={layers}", *STREAM_FLAGS])
    save_network(build_network(cfg, fast_conv=False), path, cfg.features)


def export_onnx(ckpt, out, int8, extra=()):
    """The chunk step of `ckpt` as ONNX (export.py, with `extra` flags); returns the file."""
    cmd = [sys.executable, os.path.join(REPO, "export.py"), f"--checkpoint={ckpt}",
           "--streaming=true", "--file_format=ONNX", f"--file_name={out}", *STREAM_FLAGS[1:2],
           *extra]
    if int8:
        cmd.append("--quantize=int8")
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    return f"{out}.int8.onnx" if int8 else f"{out}.onnx"


def recognizer(backend, ckpt, onnx_file, cfg):
    from src.streaming import StreamingRecognizer
    if backend == "mindspore":
        from src.checkpoints import network_from_checkpoint
        from src.context import setup_context
        setup_context(cfg)  # graph mode, as transcribe.py runs it (PyNative is the default)
        return StreamingRecognizer(network_from_checkpoint(cfg, ckpt, log=lambda m: None), cfg)
    return StreamingRecognizer.from_onnx(onnx_file, threads=1)


def timed_steps(engine, audio, piece):
    """(step seconds [...], total seconds): `audio` fed in pieces of `piece` samples at once."""
    steps, start = [], time.perf_counter()
    for i in range(0, len(audio), piece):
        t0 = time.perf_counter()
        if engine.accept(audio[i:i + piece]):
            steps.append(time.perf_counter() - t0)
    engine.finish()
    return steps, time.perf_counter() - start


def keeps_up(args, n, seconds):
    """The largest lag (s) of n processes, each one real-time stream (realtime_worker)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--_realtime_worker", args, str(seconds)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(n)]
    lags = [float(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
    return max(lags)


def realtime_worker(spec, seconds):
    """One stream paced at real time; prints how late (s) its last piece was done after the
    audio's end."""
    backend, ckpt, onnx_file, chunk_ms, manifest = json.loads(spec)
    from src.config import load_config
    cfg = load_config([*STREAM_FLAGS, f"--chunk_ms={chunk_ms}"], entry="transcribe")
    engine = recognizer(backend, ckpt, onnx_file, cfg)
    audio = recording(seconds, manifest)
    piece = cfg.features.sample_rate * chunk_ms // 1000
    engine.accept(audio[:piece])  # compiled before the clock starts
    engine.finish()
    start = time.perf_counter()
    for k, i in enumerate(range(0, len(audio), piece)):
        time.sleep(max(0.0, start + k * chunk_ms / 1000 - time.perf_counter()))
        engine.accept(audio[i:i + piece])
    # how far behind the audio the last piece was done (the end-of-stream flush is not counted)
    print(time.perf_counter() - start - len(audio) / cfg.features.sample_rate)


def most_streams(spec, chunk_ms, limit, seconds):
    """The largest n in 1, 2, 4, ... <= limit whose streams all kept within one chunk of the
    audio."""
    best, n = 0, 1
    while n <= limit and keeps_up(spec, n, seconds) <= chunk_ms / 1000:
        best, n = n, n * 2
    return best


def partial_latency(ckpt, cfg, audio):
    """[ms] from each word's end in `audio` (int16) to the first partial holding it, the audio
    fed at real time."""
    import numpy as np

    from src.checkpoints import network_from_checkpoint
    from src.context import setup_context
    from src.conv_spec import CONV_SPEC, total_stride
    from src.decoder import GreedyDecoder
    from src.deepspeech2 import InferenceNet
    from src.features import features_of
    from src.inference import log_probs
    from src.streaming import StreamingTranscriber
    from src.text import load_labels
    setup_context(cfg)  # graph mode, as transcribe.py runs it
    net = network_from_checkpoint(cfg, ckpt, log=lambda m: None)
    spec = features_of(audio.astype(np.float32) / 32767, cfg.features)[None, None]
    probs, _ = log_probs(InferenceNet(net), spec, np.array([spec.shape[-1]], np.int32))
    hyp = GreedyDecoder(load_labels(cfg.labels_path)).decode(probs[:, 0])
    frame_s = total_stride(1, CONV_SPEC) * cfg.features.window_stride  # one output frame
    word_ends = [end * frame_s for _, _, end in hyp.words]  # seconds of audio
    engine, shown = StreamingTranscriber(net, cfg), []
    piece = cfg.features.sample_rate * cfg.stream.chunk_ms // 1000
    engine.accept(audio[:piece])
    engine.finish()
    done, start = 0, time.perf_counter()
    for k, i in enumerate(range(0, len(audio), piece)):
        time.sleep(max(0.0, start + k * cfg.stream.chunk_ms / 1000 - time.perf_counter()))
        for event in engine.accept(audio[i:i + piece]):
            words = done + len(event["text"].split())
            now = time.perf_counter() - start
            shown += [now] * max(0, words - len(shown))
            done += len(event["text"].split()) if event["event"] == "final" else 0
    pairs = zip(word_ends, shown)
    return [1000 * (seen - end) for end, seen in pairs]


def percentile(values, q):
    import numpy as np
    return round(float(np.percentile(values, q)), 1)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sizes", default="256x3,1024x5")
    p.add_argument("--backends", default="mindspore,onnx,int8")
    p.add_argument("--chunk_ms", type=int, default=0, help="default: stream.chunk_ms")
    p.add_argument("--seconds", type=float, default=20.0, help="audio per measurement")
    p.add_argument("--max_streams", type=int, default=16)
    p.add_argument("--stream_seconds", type=float, default=10.0, help="audio per concurrent run")
    p.add_argument("--checkpoint", default="", help="a trained streaming model (partial latency)")
    p.add_argument("--manifest", default=SAMPLE_TEST, help="the utterances played")
    p.add_argument("--_realtime_worker", nargs=2, help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    from src.env import prepare_environment
    prepare_environment("CPU", native_conv=True)  # the step runs MindSpore's own Conv2D
    if a._realtime_worker:
        return realtime_worker(a._realtime_worker[0], float(a._realtime_worker[1]))
    if not os.path.isfile(a.manifest):
        p.error(f"manifest not found: {a.manifest} (bash scripts/run_data_prep.sh --sample)")
    from src.config import load_config
    from src.streaming import algorithmic_latency_ms
    cfg = load_config([*STREAM_FLAGS] + ([f"--chunk_ms={a.chunk_ms}"] if a.chunk_ms else []),
                      entry="transcribe")
    chunk_ms = cfg.stream.chunk_ms
    latency = algorithmic_latency_ms(cfg)["total"]
    audio = recording(a.seconds, a.manifest)
    piece = cfg.features.sample_rate * chunk_ms // 1000
    with tempfile.TemporaryDirectory() as tmp:
        for size in a.sizes.split(","):
            ckpt = os.path.join(tmp, f"{size}.ckpt")
            make_checkpoint(ckpt, size)
            for backend in a.backends.split(","):
                onnx_file = (export_onnx(ckpt, os.path.join(tmp, f"{size}-{backend}"),
                                         backend == "int8") if backend != "mindspore" else "")
                engine = recognizer(backend, ckpt, onnx_file, cfg)
                timed_steps(engine, audio[:piece * 4], piece)  # compile / warm up
                steps, total = timed_steps(engine, audio, piece)
                spec = json.dumps([backend, ckpt, onnx_file, chunk_ms, a.manifest])
                print(json.dumps({
                    "size": size, "backend": backend, "chunk_ms": chunk_ms, "cpu": cpu_name(),
                    "algorithmic_latency_ms": latency,
                    "step_ms": {"median": round(1000 * statistics.median(steps), 2),
                                "p95": percentile([1000 * s for s in steps], 95)},
                    "rtf": round(total / (len(audio) / cfg.features.sample_rate), 4),
                    "streams": most_streams(spec, chunk_ms, a.max_streams, a.stream_seconds),
                }), flush=True)
    if a.checkpoint:
        lat = partial_latency(a.checkpoint, cfg, recording(a.seconds, a.manifest))
        print(json.dumps({"checkpoint": a.checkpoint, "chunk_ms": chunk_ms, "cpu": cpu_name(),
                          "words": len(lat), "partial_latency_ms": {
                              "median": percentile(lat, 50), "p95": percentile(lat, 95)}
                          if lat else None}))


if __name__ == "__main__":
    main()
