"""Export a DeepSpeech2 checkpoint for inference (log-probabilities and output lengths).

usage: python export.py --checkpoint CKPT [--file_name OUT] [--file_format MINDIR|AIR|ONNX]
                        [--verify] [--key=value ...]
  e.g. python export.py --pre_trained_model_path outputs/checkpoints/DeepSpeech-30_42.ckpt --verify
The exported graph takes x (B, 1, 161, T) float32 and lengths (B,) int32 with dynamic B and T
(with --export.frames=N: B = 1, T = N, as ONNX/AIR need), and returns log-probabilities
(T', B, 29) and output lengths (B,). --verify reloads the file, runs it
on a real utterance and compares it with the checkpoint network.
"""
import os
import sys

from src.cli import fail, start

VERIFY_TOLERANCE = 1e-4  # max absolute difference of log-probabilities


def first_audio(manifests):
    from src.dataset import read_manifest
    for manifest in manifests:
        entries = read_manifest(manifest)
        if entries:
            return entries[0].audio
    raise ValueError("no audio to verify with: set --export.verify_audio")


def verify(path, network, cfg):
    """Run the exported file and the network on one utterance; return the max difference."""
    import mindspore as ms
    import numpy as np
    from mindspore import nn
    from src.features import load_audio, spectrogram, stft_params
    audio = cfg.export.verify_audio or first_audio(cfg.eval.manifests)
    n_fft, hop = stft_params(cfg.features)
    spec = spectrogram(load_audio(audio, cfg.features.sample_rate), n_fft, hop,
                       cfg.features.window)  # (F, T)
    n = spec.shape[1]
    if cfg.export.frames:  # a fixed-length export: pad (or cut) the utterance to its length
        n = min(n, cfg.export.frames)
        spec = np.pad(spec[:, :n], ((0, 0), (0, cfg.export.frames - n)))
    x = ms.Tensor(spec[None, None])  # (1, 1, F, T)
    lengths = ms.Tensor(np.array([n], np.int32))
    graph = nn.GraphCell(ms.load(path))
    got, got_len = graph(x, lengths)
    want, want_len = network(x, lengths)
    if got.shape != want.shape or int(got_len.asnumpy()[0]) != int(want_len.asnumpy()[0]):
        raise ValueError(f"exported output shape {got.shape} != network's {want.shape}")
    return audio, float(np.abs(got.asnumpy() - want.asnumpy()).max())


def main():
    cfg = start("export")
    if cfg is None:
        print(__doc__)
        return
    import mindspore as ms
    from src.builders import CheckpointError, network_from_checkpoint, setup_context
    from src.deepspeech2 import InferenceNet
    from src.features import AudioError
    fmt = cfg.export.file_format.upper()
    if fmt not in ("MINDIR", "AIR", "ONNX"):
        fail("export", f"file_format must be MINDIR, AIR or ONNX, got '{cfg.export.file_format}'")
    if fmt == "AIR" and cfg.device_target != "Ascend":
        fail("export", "AIR export needs device_target=Ascend (MindSpore supports it only there)")
    if cfg.export.verify and fmt != "MINDIR":
        fail("export", "--verify reloads the file with mindspore.load, which reads MINDIR only")
    try:
        setup_context(cfg)
        net = InferenceNet(network_from_checkpoint(cfg, cfg.export.checkpoint, fast_conv=False))
        net.set_train(False)
        n_freq = int(round(cfg.features.sample_rate * cfg.features.window_size)) // 2 + 1
        frames = cfg.export.frames or None
        if fmt != "MINDIR" and frames is None:
            fail("export", f"{fmt} export needs a fixed input length: set --export.frames=N "
                           "(MINDIR takes any length)")
        batch = 1 if frames else None
        x = ms.Tensor(shape=[batch, 1, n_freq, frames], dtype=ms.float32)
        lengths = ms.Tensor(shape=[batch], dtype=ms.int32)
        out_dir = os.path.dirname(os.path.abspath(cfg.export.file_name))
        os.makedirs(out_dir, exist_ok=True)
        try:
            ms.export(net, x, lengths, file_name=cfg.export.file_name, file_format=fmt)
        except (RuntimeError, TypeError) as err:
            fail("export", f"MindSpore cannot export {fmt} on {cfg.device_target}: "
                           f"{str(err).splitlines()[0]}")
        path = f"{cfg.export.file_name}.{fmt.lower()}"
        print(f"exported: {os.path.abspath(path)} ({os.path.getsize(path) / 2**20:.1f} MiB)")
        if cfg.export.verify:
            audio, diff = verify(path, net, cfg)
            status = "OK" if diff <= VERIFY_TOLERANCE else "FAILED"
            print(f"verify {status}: max |log-prob difference| = {diff:.2e} on {audio} "
                  f"(tolerance {VERIFY_TOLERANCE:g})")
            if status != "OK":
                return 1
    except (CheckpointError, AudioError, ValueError) as err:
        fail("export", err)


if __name__ == "__main__":
    sys.exit(main())
