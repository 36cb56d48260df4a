"""serve.py under load: how many real-time WebSocket streams one server keeps up with.

    python benchmarks/serve_load.py --sizes 256x3,1024x5 --streams 1,2,4,8,16
    python benchmarks/serve_load.py --checkpoint tests/assets/streaming_sample.ckpt

For each model (a streamable checkpoint of each --sizes with random weights: the network costs
the same whatever its weights; or --checkpoint) one serve.py process (--max_batch, --onnx for
its ONNX export with --backend=onnx), then N clients at once for each N of --streams, each
sending --seconds of speech in 120-ms pieces at real-time pace, then the end message. One JSON
line per (model, N): "close_latency_s" (end message -> close, median and max: how far the
server is behind the audio; a server that keeps up only runs the last few chunk steps),
"event_delay_s" p95 (arrival of each event - the moment its end was sent), "mean_batch" (chunk
steps per network run), "kept_up" (every client's close within --max_latency s), the CPU.
A last line per model: "sustained_streams", the largest N that kept up (N doubles until one
does not). Clients and server share the machine's cores, as they would on one host.
"""
import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)
sys.path.insert(0, os.path.join(REPO, "benchmarks"))
from streaming_latency import SAMPLE_TEST, export_onnx, make_checkpoint, recording  # noqa: E402

from src.env import cpu_name  # noqa: E402  (after the path fix above)

PIECE_MS = 120  # what a live client sends at a time (the server's chunk is --chunk_ms)


def start_server(model_args, streams, args):
    """serve.py on a free 127.0.0.1 port -> (process, base URL)."""
    proc = subprocess.Popen([sys.executable, os.path.join(REPO, "serve.py"), *model_args,
                             "--port=0", f"--max_streams={streams}",
                             f"--max_batch={args.max_batch}", f"--chunk_ms={args.chunk_ms}",
                             "--idle_timeout=60"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:
        if "serving on" in line:
            url = line.split("serving on ")[1].split()[0].rstrip("/")
            threading_drain(proc)
            return proc, url
    raise SystemExit(f"serve.py did not start (exit {proc.wait()})")


def threading_drain(proc):
    """Keep reading the server's log so that its pipe never fills."""
    import threading
    threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()


async def client(url, pcm, rate):
    """One real-time stream -> (close latency, [event delays])."""
    import aiohttp
    piece = rate * PIECE_MS // 1000
    sent_at, delays = {}, []
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url) as ws:
            await ws.send_str(json.dumps({"sample_rate": rate, "format": "pcm_s16le"}))
            receiver = asyncio.create_task(_receive(ws, sent_at, delays))
            began = time.monotonic()
            for k, at in enumerate(range(0, len(pcm), piece)):
                await asyncio.sleep(max(0.0, began + k * PIECE_MS / 1000 - time.monotonic()))
                await ws.send_bytes(pcm[at:at + piece].tobytes())
                sent_at[k] = time.monotonic()
            ended = time.monotonic()
            await ws.send_str(json.dumps({"event": "end"}))
            await receiver
            return time.monotonic() - ended, delays


async def _receive(ws, sent_at, delays):
    async for message in ws:
        event = json.loads(message.data)
        piece = int(event["end"] * 1000 // PIECE_MS)  # the piece holding the event's end
        if piece in sent_at:
            delays.append(time.monotonic() - sent_at[piece])


def health(url):
    with urllib.request.urlopen(url + "/healthz", timeout=30) as r:
        return json.load(r)["chunk_steps"]


def measure(url, pcm, streams, max_latency):
    before = health(url)
    results = asyncio.run(_together(url, pcm, streams))
    after = health(url)
    closes = [r[0] for r in results]
    delays = sorted(d for r in results for d in r[1])
    batches = after["batches"] - before["batches"]
    return {"streams": streams,
            "close_latency_s": {"median": round(statistics.median(closes), 3),
                                "max": round(max(closes), 3)},
            "event_delay_s": {"p95": round(delays[int(0.95 * (len(delays) - 1))], 3)
                              if delays else None},
            "mean_batch": round((after["run"] - before["run"]) / max(batches, 1), 2),
            "kept_up": max(closes) <= max_latency}


async def _together(url, pcm, streams):
    return await asyncio.gather(*(client(url + "/v1/stream", pcm, 16000)
                                  for _ in range(streams)))


def model_args(args, size, folder):
    """serve.py's model flags for `size` (or --checkpoint), and the model's name."""
    ckpt = args.checkpoint
    if not ckpt:
        ckpt = os.path.join(folder, f"{size}.ckpt")
        make_checkpoint(ckpt, size)
    if args.backend == "onnx":
        onnx = export_onnx(ckpt, os.path.join(folder, os.path.basename(size)), False,
                           [f"--chunk_ms={args.chunk_ms}"])
        return [f"--onnx={onnx}"]
    return [f"--checkpoint={ckpt}"]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="256x3", help="HIDDENxLAYERS,... (random weights)")
    parser.add_argument("--checkpoint", default="", help="a streaming checkpoint instead")
    parser.add_argument("--backend", default="mindspore", choices=("mindspore", "onnx"))
    parser.add_argument("--streams", default="1,2,4,8,16", help="client counts, ascending")
    parser.add_argument("--seconds", type=float, default=12.0, help="audio per stream")
    parser.add_argument("--max_batch", type=int, default=16)
    parser.add_argument("--chunk_ms", type=int, default=120, help="the server's stream.chunk_ms")
    parser.add_argument("--max_latency", type=float, default=1.0,
                        help="seconds from end message to close that count as keeping up")
    parser.add_argument("--manifest", default=SAMPLE_TEST, help="speech to send (looped)")
    args = parser.parse_args(argv)
    counts = [int(n) for n in args.streams.split(",")]
    pcm = recording(args.seconds, args.manifest)
    from src.env import prepare_environment
    prepare_environment("CPU")
    for size in [args.checkpoint] if args.checkpoint else args.sizes.split(","):
        with tempfile.TemporaryDirectory() as folder:
            proc, url = start_server(model_args(args, size, folder), max(counts), args)
            try:
                best = 0
                for streams in counts:
                    line = {"model": os.path.basename(size), "backend": args.backend,
                            "chunk_ms": args.chunk_ms,
                            **measure(url, pcm, streams, args.max_latency), "cpu": cpu_name()}
                    print(json.dumps(line), flush=True)
                    if not line["kept_up"]:
                        break
                    best = streams
                print(json.dumps({"model": os.path.basename(size), "backend": args.backend,
                                  "chunk_ms": args.chunk_ms, "sustained_streams": best,
                                  "seconds": args.seconds,
                                  "max_batch": args.max_batch, "cpu": cpu_name()}), flush=True)
            finally:
                proc.terminate()
                proc.wait(60)


if __name__ == "__main__":
    main()
