"""Transcribe recordings with a DeepSpeech2 checkpoint or an exported MindIR.

usage: python transcribe.py (--checkpoint CKPT | --mindir FILE.mindir) AUDIO... [--key=value ...]
  e.g. python transcribe.py --checkpoint outputs/checkpoints/DeepSpeech-10_83.ckpt talk.wav
       python transcribe.py --checkpoint CKPT talk.wav --decode.method=beam \
           --decode.lm_path=data/lm/3-gram.pruned.3e-7.arpa --decode.alpha=0.8 --decode.beta=1.5
       python transcribe.py --mindir outputs/DeepSpeech2.mindir recordings/ --format=json \
           --output=out.jsonl
AUDIO: files (wav, flac, ogg, mp3, ... whatever libsndfile reads; any rate and channel count),
folders (searched recursively) or manifests (.csv/.json). Output: one line of text per file, or
with --format=json one JSON object per line: path, duration, text, words [{word, start, end,
confidence}] (seconds of the original file). --chunk_seconds (default 15) cuts long recordings.
Decoding: --decode.method=greedy (default) or beam (with --decode.lm_path, see eval.py).
A file that cannot be read is named on stderr and skipped; the exit status is then 1.
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src.cli import main  # noqa: E402  (after the path fix above)
from src.errors import UserError  # noqa: E402


def load_network(cfg):
    """The inference network of --checkpoint, or the MindIR of --mindir, as a callable Cell."""
    t = cfg.transcribe
    if bool(t.checkpoint) == bool(t.mindir):
        raise UserError("give exactly one of --checkpoint CKPT or --mindir FILE.mindir")
    if t.checkpoint:
        from src.checkpoints import network_from_checkpoint
        from src.deepspeech2 import InferenceNet
        return InferenceNet(network_from_checkpoint(cfg, t.checkpoint,
                                                    log=lambda m: print(m, file=sys.stderr)))
    import mindspore as ms
    from mindspore import nn
    if not os.path.isfile(t.mindir):
        raise UserError(f"MindIR not found: {t.mindir}")
    try:
        return nn.GraphCell(ms.load(t.mindir))
    except (RuntimeError, ValueError, TypeError) as err:
        raise UserError(f"cannot load MindIR {t.mindir} (not a MindIR written by export.py?): "
                        f"{str(err).strip().splitlines()[0]}") from None


def run(cfg, audio):
    if not audio:
        raise UserError("no audio given: python transcribe.py --checkpoint CKPT AUDIO...")
    from src.context import setup_context
    from src.features import AudioError
    from src.progress import progress
    from src.transcription import Transcriber, audio_inputs
    paths = audio_inputs([os.path.abspath(a) for a in audio])
    out_path = cfg.transcribe.output
    if out_path:
        from src.cli import check_output_dir
        check_output_dir(os.path.dirname(out_path), "transcribe.output's folder")
    setup_context(cfg)
    transcriber = Transcriber(load_network(cfg), cfg)
    out = open(out_path, "w", encoding="utf-8") if out_path else sys.stdout
    failed = 0
    try:
        bar = progress(total=len(paths), desc="transcribe", unit="file",
                       disable=len(paths) <= 3)
        for path in paths:
            try:
                result = transcriber.transcribe(path)
            except AudioError as err:
                print(f"transcribe.py: skipped: {err}", file=sys.stderr)
                failed += 1
            else:
                line = json.dumps(result) if cfg.transcribe.format == "json" else result["text"]
                print(line, file=out, flush=True)
            bar.update(1)
        bar.close()
    finally:
        transcriber.close()
        if out_path:
            out.close()
    if out_path:
        print(f"transcripts: {out_path}", file=sys.stderr)
    if failed:
        print(f"transcribe.py: {failed} of {len(paths)} files could not be read", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from src.config import split_arguments
    pairs, audio_args = split_arguments(sys.argv[1:])
    options = [f"--{name}={value}" for name, value in pairs]
    if {"-h", "--help"} & set(sys.argv[1:]):
        options = ["--help"]
    sys.exit(main("transcribe", __doc__, lambda cfg: run(cfg, audio_args), options))
