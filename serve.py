"""Serve live recognition: a web page to talk to and an API (src/server.py), over the streaming
engine of transcribe.py --stream.

usage: python serve.py (--checkpoint CKPT | --onnx FILE.onnx) [--offline_checkpoint CKPT2]
                       [--host 127.0.0.1] [--port 8000] [--key=value ...]
  e.g. python serve.py --checkpoint outputs/streaming_sample/checkpoints/DeepSpeech-best.ckpt
       python serve.py --onnx outputs/streaming_sample/DeepSpeech2.onnx --port 8080
       python serve.py --checkpoint STREAM.ckpt --offline_checkpoint BIDIRECTIONAL.ckpt \
           --decode.method=beam --decode.lm_path=outputs/lm/3-gram.arpa --decode.alpha=1.0
Open http://127.0.0.1:8000/ and press Record (or pick a file). The API:
  GET /healthz, WS /v1/stream (live audio -> partial and final events), POST /v1/transcribe
  (a file -> transcribe.py --format json's object); docs/serving.md has the messages.
--checkpoint: a streaming checkpoint (unidirectional, features.normalize=global, e.g. trained
with --config_path=src/configs/streaming_sample.yaml), run with the feature settings it records;
--onnx: its streaming export (export.py --export.streaming=true), run by onnxruntime without
MindSpore. --offline_checkpoint: uploads are decoded by this (bidirectional, more accurate)
model instead. serve.* keys set the limits; stream.* and decode.* apply as in transcribe.py.
The server has no authentication: it binds 127.0.0.1 unless --host says otherwise (see
docs/serving.md before exposing it). Ctrl-C stops it.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src.cli import main  # noqa: E402  (after the path fix above)


def run(cfg):
    from src.serve_models import ServedModels
    from src.server import serve
    serve(ServedModels(cfg), cfg)


if __name__ == "__main__":
    sys.exit(main("serve", __doc__, run))
