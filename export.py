"""Export a DeepSpeech2 checkpoint for inference (log-probabilities and output lengths).

usage: python export.py --checkpoint CKPT [--file_name OUT] [--file_format MINDIR|AIR|ONNX]
                        [--frames N] [--verify] [--key=value ...]
  e.g. python export.py --pre_trained_model_path outputs/checkpoints/DeepSpeech-30_42.ckpt --verify
The exported graph takes x (B, 1, 161, T) float32 and lengths (B,) int32 with dynamic B and T
(with --export.frames=N: B = 1, T = N, as ONNX/AIR need), and returns log-probabilities
(T', B, 29) and output lengths (B,). OUT gets the format's extension (.mindir, ...); any file
name works, spaces included. --verify reloads the file (MINDIR: mindspore.load; ONNX:
onnxruntime), runs it on a real utterance and compares it with the checkpoint network. An ONNX
file is always loaded once by onnxruntime when that is installed: a file it refuses is removed
and reported, never left behind as a success.
"""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src.cli import check_output_dir, main  # noqa: E402  (after the path fix above)
from src.errors import UserError  # noqa: E402

VERIFY_TOLERANCE = 1e-4  # max absolute difference of log-probabilities


def first_audio(manifests):
    from src.manifest import read_manifest
    for manifest in manifests:
        entries = read_manifest(manifest)
        if entries:
            return entries[0].audio
    raise UserError("no audio to verify with: set --export.verify_audio")


def onnx_session(path):
    """An onnxruntime session of `path`; UserError when onnxruntime is missing or refuses it."""
    try:
        import onnxruntime
    except ImportError:
        raise UserError("running an ONNX file needs onnxruntime: pip install onnxruntime") from None
    try:
        return onnxruntime.InferenceSession(path, providers=["CPUExecutionProvider"])
    except Exception as err:  # onnxruntime raises its own exception types for invalid models
        raise UserError(f"onnxruntime cannot load {path}: {' '.join(str(err).split())[:300]}") \
            from None


def run_exported(path, fmt, x, lengths):
    """Log-probabilities (T', B, C) and lengths (B,) of the exported file on one batch."""
    if fmt == "ONNX":
        session = onnx_session(path)
        names = [i.name for i in session.get_inputs()]  # (x, lengths), in the graph's order
        probs, out_lengths = session.run(None, dict(zip(names, (x, lengths))))
        return probs, out_lengths
    import mindspore as ms
    from mindspore import nn

    from src.inference import log_probs
    return log_probs(nn.GraphCell(ms.load(path)), x, lengths)


def verify(path, fmt, network, cfg):
    """Run the exported file and the network on one utterance; return (audio, max difference)."""
    import numpy as np

    from src.features import featurize
    from src.inference import eval_mode, log_probs, pad_batch
    audio = cfg.export.verify_audio or first_audio(cfg.eval.manifests)
    spec = featurize(audio, cfg.features)  # (F, T)
    if cfg.export.frames:  # a fixed-length export: cut the utterance to its length, then pad
        spec = spec[:, :cfg.export.frames]
    x, lengths = pad_batch([spec], cfg.export.frames or spec.shape[1])  # (1, 1, F, T), (1,)
    got, got_len = run_exported(path, fmt, x, lengths)
    with eval_mode(network):
        want, want_len = log_probs(network, x, lengths)
    if got.shape != want.shape or not np.array_equal(got_len, want_len):
        raise UserError(f"exported output shape {got.shape} != network's {want.shape}")
    return audio, float(np.abs(got - want).max())


def export_file(net, cfg, fmt):
    """Export into a temporary folder of safe name (MindSpore rejects some file names, e.g. with
    spaces), then move the file to <file_name>.<ext>. Returns that path.

    ONNX goes through mindspore.onnx.export: MindSpore 2.10 deprecates ms.export for it.
    """
    import mindspore as ms
    import mindspore.onnx
    n_freq = int(round(cfg.features.sample_rate * cfg.features.window_size)) // 2 + 1
    frames = cfg.export.frames or None
    batch = 1 if frames else None
    x = ms.Tensor(shape=[batch, 1, n_freq, frames], dtype=ms.float32)
    lengths = ms.Tensor(shape=[batch], dtype=ms.int32)
    path = f"{cfg.export.file_name}.{fmt.lower()}"
    tmp = tempfile.mkdtemp(prefix="ds2_export_")
    try:
        if fmt == "ONNX":
            mindspore.onnx.export(net, x, lengths, file_name=os.path.join(tmp, "net"))
        else:
            ms.export(net, x, lengths, file_name=os.path.join(tmp, "net"), file_format=fmt)
        shutil.move(os.path.join(tmp, f"net.{fmt.lower()}"), path)
    except (RuntimeError, TypeError, ValueError) as err:
        raise UserError(f"MindSpore cannot export {fmt} on {cfg.device_target}: "
                        f"{str(err).strip().splitlines()[0]}") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return path


def check_onnx_loads(path):
    """Load the ONNX file once with onnxruntime (when installed); remove it if refused."""
    try:
        import onnxruntime  # noqa: F401  (only whether it is there)
    except ImportError:
        print(f"warning: onnxruntime is not installed, so {path} was not test-loaded "
              "(pip install onnxruntime, then export again with --verify)", file=sys.stderr)
        return
    try:
        onnx_session(path)
    except UserError:
        os.remove(path)
        raise


def run(cfg):
    fmt = cfg.export.file_format
    if fmt == "AIR" and cfg.device_target != "Ascend":
        raise UserError("AIR export needs device_target=Ascend (MindSpore supports it only there)")
    if cfg.export.verify and fmt == "AIR":
        raise UserError("--verify runs MINDIR (mindspore.load) or ONNX (onnxruntime) files, not AIR")
    if fmt != "MINDIR" and not cfg.export.frames:
        raise UserError(f"{fmt} export needs a fixed input length: set --export.frames=N (batch "
                        "1; MindSpore 2.10's exporter cannot keep batch or time dynamic for this "
                        "network, see README 'Export'; MINDIR takes any length)")
    check_output_dir(os.path.dirname(cfg.export.file_name), "export.file_name's folder")
    from src.checkpoints import network_from_checkpoint
    from src.context import setup_context
    from src.deepspeech2 import InferenceNet
    setup_context(cfg)
    net = InferenceNet(network_from_checkpoint(cfg, cfg.export.checkpoint))
    net.set_train(False)
    path = export_file(net, cfg, fmt)
    if fmt == "ONNX":
        check_onnx_loads(path)
    print(f"exported: {path} ({os.path.getsize(path) / 2**20:.1f} MiB)")
    if cfg.export.verify:
        audio, diff = verify(path, fmt, net, cfg)
        status = "OK" if diff <= VERIFY_TOLERANCE else "FAILED"
        print(f"verify {status}: max |log-prob difference| = {diff:.2e} on {audio} "
              f"(tolerance {VERIFY_TOLERANCE:g})")
        return 0 if status == "OK" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main("export", __doc__, run))
