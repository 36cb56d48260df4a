"""Export a DeepSpeech2 checkpoint for inference (log-probabilities and output lengths).

usage: python export.py --checkpoint CKPT [--file_name OUT] [--file_format MINDIR|AIR|ONNX]
                        [--frames N] [--verify] [--key=value ...]
  e.g. python export.py --pre_trained_model_path outputs/checkpoints/DeepSpeech-30_42.ckpt --verify
The exported graph takes x (B, 1, 161, T) float32 and lengths (B,) int32 with dynamic B and T
(with --export.frames=N: B = 1, T = N, as ONNX/AIR need), and returns log-probabilities
(T', B, 29) and output lengths (B,). OUT gets the format's extension (.mindir, ...) unless it
already ends in it; any file name works, spaces included; the file is written atomically with
the usual mode (0644 under umask 022). --verify reloads the file (MINDIR: mindspore.load; ONNX:
onnxruntime), runs it on a real utterance and compares it with the checkpoint network. An ONNX
file is always loaded once by onnxruntime when that is installed: a file it refuses is removed
and reported, never left behind as a success.

--export.streaming=true (a unidirectional, globally normalised checkpoint) exports instead the
chunk step of streaming recognition (src/streaming.py) at stream.chunk_ms, fixed shapes,
its states as inputs and outputs: inputs feats, feat_mask, conv_cache, conv_mask, rnn_mask,
h, c, la_cache; outputs log_probs, conv_cache_out, h_out, c_out, la_cache_out (ONNX names; a
MindIR takes and gives them in that order). The file also holds what a runtime needs (chunk,
geometry, feature settings, labels, model size, shapes: src.streaming.step_info) as ONNX
metadata_props or MindIR user_info, JSON values; StreamingTranscriber.from_onnx(FILE, cfg)
runs an ONNX one without MindSpore. --verify then streams a real utterance through the file
in pieces and compares with the checkpoint's offline pass over the whole utterance.
--export.quantize=int8 (streaming ONNX) also writes NAME.int8.onnx beside NAME.onnx
(src.streaming_onnx.quantize_int8: its convolutions calibrated on the first
export.calibration_utterances of data.train_manifest). A streaming ONNX export needs the onnx
package (pip install onnx) for its metadata and the int8 file.
"""
import os
import shutil
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src.cli import check_output_dir, main  # noqa: E402  (after the path fix above)
from src.errors import UserError  # noqa: E402

# --verify's bound on the max |log-prob difference| from the checkpoint network, by format. A
# MindIR runs MindSpore's own kernels (measured: <= 1e-5 streamed). onnxruntime's differ from
# MindSpore's CPU kernels by up to 1.5e-4 on the trained quick-start streaming model, offline
# and streamed alike, MindSpore's being the less exact: its conv1 + bn1 + tanh was 1.0e-4 off a
# float64 computation, onnxruntime's 7.5e-6.
VERIFY_TOLERANCE = {"MINDIR": 1e-4, "ONNX": 1e-3}
CALIBRATION_STEPS = 300  # chunk steps whose inputs calibrate the int8 convolutions (at most ~)


def first_audio(manifests):
    from src.manifest import read_manifest
    for manifest in manifests:
        entries = read_manifest(manifest)
        if entries:
            return entries[0].audio
    raise UserError("no audio to verify with: set --export.verify_audio")


def run_exported(path, fmt, x, lengths):
    """Log-probabilities (T', B, C) and lengths (B,) of the exported file on one batch."""
    if fmt == "ONNX":
        from src.streaming_onnx import onnx_session
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


def output_path(file_name, fmt):
    """<file_name>.<ext>, the extension added only when file_name does not end in it."""
    ext = f".{fmt.lower()}"
    return file_name if file_name.lower().endswith(ext) else file_name + ext


def export_file(net, cfg, fmt):
    """Export the offline graph (x, lengths) of `net` to output_path (write_atomically)."""
    import mindspore as ms
    import mindspore.onnx

    from src.features import freq_bins
    n_freq = freq_bins(cfg.features)
    frames = cfg.export.frames or None
    batch = 1 if frames else None
    x = ms.Tensor(shape=[batch, 1, n_freq, frames], dtype=ms.float32)
    lengths = ms.Tensor(shape=[batch], dtype=ms.int32)

    def save(base):
        if fmt == "ONNX":
            mindspore.onnx.export(net, x, lengths, file_name=base)
        else:
            ms.export(net, x, lengths, file_name=base, file_format=fmt)
    return write_atomically(save, output_path(cfg.export.file_name, fmt), fmt,
                            f"MindSpore cannot export {fmt} on {cfg.device_target}")


def write_atomically(save, path, fmt, failure):
    """save(base) writes base.<ext> into a temporary folder of safe name (MindSpore rejects some
    file names, e.g. with spaces); the file is then moved beside `path` and renamed to it
    (atomic: a kill leaves the previous file or the new one), with the usual mode. Returns
    path. An exporter's error becomes UserError(`failure`: its first line).

    ONNX goes through mindspore.onnx.export: MindSpore 2.10 deprecates ms.export for it.
    """
    from src.checkpoints import file_mode
    tmp = tempfile.mkdtemp(prefix="ds2_export_")
    try:
        save(os.path.join(tmp, "net"))
        beside = os.path.join(os.path.dirname(path), f".{os.path.basename(path)}.tmp{os.getpid()}")
        shutil.move(os.path.join(tmp, f"net.{fmt.lower()}"), beside)
        os.chmod(beside, file_mode())  # MindSpore writes it read-only (0400)
        os.replace(beside, path)
    except (RuntimeError, TypeError, ValueError) as err:
        raise UserError(f"{failure}: {str(err).strip().splitlines()[0]}") from None
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
    from src.streaming_onnx import onnx_session
    try:
        onnx_session(path)
    except UserError:
        os.remove(path)
        raise


def streamed(engine, wave, piece=1000):
    """The log-probabilities (T', C) of StreamingRecognizer `engine` fed `wave` in pieces of
    `piece` samples (not a multiple of a chunk: as audio arrives), then finished."""
    import numpy as np
    out = [p for i in range(0, len(wave), piece) for p in engine.accept(wave[i:i + piece])]
    return np.concatenate(out + engine.finish())


def offline_log_probs(network, wave, cfg):
    """The checkpoint network's offline pass (InferenceNet) over the whole of `wave`: (T', C)."""
    from src.deepspeech2 import InferenceNet
    from src.features import features_of
    from src.inference import eval_mode, log_probs, pad_batch
    spec = features_of(wave, cfg.features)  # (F, T)
    x, lengths = pad_batch([spec], spec.shape[1])
    net = InferenceNet(network)
    with eval_mode(net):
        probs, out_lengths = log_probs(net, x, lengths)  # (T', 1, C)
    return probs[:out_lengths[0], 0]


def calibration_feeds(path, cfg):
    """Step inputs of the streaming ONNX file `path` over the first
    export.calibration_utterances utterances of data.train_manifest (every few steps, at most
    about CALIBRATION_STEPS): the activation ranges of its int8 convolutions."""
    from src.features import load_audio
    from src.manifest import read_manifest
    from src.streaming import StreamingRecognizer
    from src.streaming_onnx import OnnxStep, RecordedStep
    waves = [load_audio(e.audio, cfg.features.sample_rate) for e in read_manifest(
        cfg.data.train_manifest, check_files=False)[:cfg.export.calibration_utterances]]
    fp32 = OnnxStep(path)
    steps = sum(len(w) for w in waves) / cfg.features.sample_rate / (fp32.info["chunk_ms"] / 1000)
    step = RecordedStep(fp32, every=max(1, round(steps / CALIBRATION_STEPS)))
    engine = StreamingRecognizer(step)
    for wave in waves:
        streamed(engine, wave)
    return step.feeds, len(waves)


def export_streaming(network, cfg, fmt):
    """Export the chunk step of `network` (src.streaming_step.StreamingStep at stream.chunk_ms)
    with its settings in the file; --export.quantize=int8 adds NAME.int8.onnx; --verify streams
    a real utterance through each file. Returns the exit status."""
    import mindspore as ms
    import mindspore.onnx

    from src.streaming import STEP_INPUTS, STEP_OUTPUTS, Geometry, check_streamable, step_info
    from src.streaming_onnx import quantize_int8, write_metadata
    from src.streaming_step import StreamingStep, example_inputs, mindir_user_info
    check_streamable(network)
    info = step_info(network, cfg)
    step = StreamingStep(network, Geometry(**info["geometry"]))
    step.set_train(False)
    inputs = example_inputs(info)

    def save(base):
        if fmt == "ONNX":
            mindspore.onnx.export(step, *inputs, file_name=base, input_names=list(STEP_INPUTS),
                                  output_names=list(STEP_OUTPUTS))
            write_metadata(f"{base}.onnx", info)
        else:
            ms.export(step, *inputs, file_name=base, file_format=fmt,
                      custom_func=mindir_user_info(info))
    path = write_atomically(save, output_path(cfg.export.file_name, fmt), fmt,
                            f"MindSpore cannot export the {fmt} chunk step on {cfg.device_target}")
    if fmt == "ONNX":
        check_onnx_loads(path)
    g = info["geometry"]
    print(f"exported: {path} ({os.path.getsize(path) / 2**20:.1f} MiB), chunk step of "
          f"{info['chunk_ms']:g} ms: {g['chunk']} feature frames in (window {g['window']}), "
          f"{g['outputs']} output frames out")
    files = [path]
    if cfg.export.quantize == "int8":
        feeds, utterances = calibration_feeds(path, cfg)
        int8 = path[:-len(".onnx")] + ".int8.onnx"
        write_atomically(lambda base: quantize_int8(path, f"{base}.onnx", feeds, utterances),
                         int8, fmt, "onnxruntime cannot quantize the chunk step")
        check_onnx_loads(int8)
        print(f"exported: {int8} ({os.path.getsize(int8) / 2**20:.1f} MiB), int8")
        files.append(int8)
    if not cfg.export.verify:
        return 0
    return verify_streaming(files, fmt, network, cfg)


def verify_streaming(files, fmt, network, cfg):
    """Stream a real utterance through the exported step (MINDIR: GraphCell; ONNX: onnxruntime),
    driven by StreamingRecognizer with the file's own settings, against the checkpoint's
    offline pass over the whole utterance: max |difference| within VERIFY_TOLERANCE. An int8
    file (files[1]) is compared too, without a tolerance: how many frames keep their best
    label. Returns the exit status."""
    import numpy as np

    from src.features import load_audio
    from src.streaming import StreamingRecognizer
    audio = cfg.export.verify_audio or first_audio(cfg.eval.manifests)
    wave = load_audio(audio, cfg.features.sample_rate)
    want = offline_log_probs(network, wave, cfg)
    results = []
    for path in files:
        if fmt == "ONNX":
            from src.streaming_onnx import OnnxStep
            step = OnnxStep(path)
        else:
            from src.streaming_step import mindir_step
            step = mindir_step(path)
        got = streamed(StreamingRecognizer(step), wave)
        if got.shape != want.shape:
            raise UserError(f"{path}: streamed output shape {got.shape} != the offline pass's "
                            f"{want.shape}")
        results.append((float(np.abs(got - want).max()), got.argmax(axis=1) == want.argmax(axis=1)))
    diff = results[0][0]
    status = "OK" if diff <= VERIFY_TOLERANCE[fmt] else "FAILED"
    print(f"verify {status}: max |log-prob difference| = {diff:.2e} on {audio} streamed chunk "
          f"by chunk against the checkpoint's offline pass (tolerance {VERIFY_TOLERANCE[fmt]:g})")
    if len(results) > 1:
        diff, same = results[1]
        print(f"int8 ({os.path.basename(files[1])}): max |log-prob difference| = {diff:.2e} "
              f"against the same offline pass, best label kept on {same.sum()} of {len(same)} "
              f"output frames ({100 * same.mean():.1f}%; no tolerance: compare the CER of both "
              "files on a test set)")
    return 0 if status == "OK" else 1


def check_options(cfg):
    """UserError for options that cannot go together, before any work."""
    fmt, streaming = cfg.export.file_format, cfg.export.streaming
    if fmt == "AIR" and cfg.device_target != "Ascend":
        raise UserError("AIR export needs device_target=Ascend (MindSpore supports it only there)")
    if cfg.export.verify and fmt == "AIR":
        raise UserError("--verify runs MINDIR (mindspore.load) or ONNX (onnxruntime) files, not AIR")
    if cfg.export.quantize != "none" and not (streaming and fmt == "ONNX"):
        raise UserError(f"--export.quantize={cfg.export.quantize} quantizes the streaming ONNX "
                        "chunk step: add --export.streaming=true --export.file_format=ONNX")
    manifest = cfg.data.train_manifest
    if cfg.export.quantize == "int8" and not (manifest and os.path.isfile(manifest)):
        raise UserError(f"--export.quantize=int8 calibrates on the first "
                        f"{cfg.export.calibration_utterances} utterances of data.train_manifest, "
                        f"which is not found ({manifest or 'not set'}): set "
                        "--data.train_manifest=MANIFEST (audio like the model's training data)")
    if streaming:
        if fmt == "AIR":
            raise UserError("a streaming export is MINDIR or ONNX, not AIR")
        if cfg.export.frames:
            raise UserError("--export.frames fixes the offline graph's length; a streaming "
                            "export's input is one chunk (stream.chunk_ms): leave it 0")
        return
    if fmt != "MINDIR" and not cfg.export.frames:
        raise UserError(f"{fmt} export needs a fixed input length: set --export.frames=N (batch "
                        "1; MindSpore 2.10's exporter cannot keep batch or time dynamic for this "
                        "network, see docs/inference.md 'Export'; MINDIR takes any length)")
    from src.conv_spec import receptive_field
    if 0 < cfg.export.frames < receptive_field():
        raise UserError(f"--export.frames={cfg.export.frames} is shorter than one output step of "
                        f"the convolution front-end ({receptive_field()} frames, "
                        f"{receptive_field() * cfg.features.window_stride:g} s): use 0 (dynamic, "
                        "MINDIR) or a clip length such as 1000 (10 s)")


def run(cfg):
    fmt = cfg.export.file_format
    check_options(cfg)
    check_output_dir(os.path.dirname(cfg.export.file_name), "export.file_name's folder")
    from src.checkpoints import network_from_checkpoint
    from src.context import setup_context
    from src.deepspeech2 import InferenceNet
    setup_context(cfg)
    network = network_from_checkpoint(cfg, cfg.export.checkpoint, fast_conv=False,
                                      onnx=fmt == "ONNX")
    if cfg.export.streaming:
        return export_streaming(network, cfg, fmt)
    net = InferenceNet(network)
    net.set_train(False)
    path = export_file(net, cfg, fmt)
    if fmt == "ONNX":
        check_onnx_loads(path)
    print(f"exported: {path} ({os.path.getsize(path) / 2**20:.1f} MiB)")
    if cfg.export.verify:
        audio, diff = verify(path, fmt, net, cfg)
        status = "OK" if diff <= VERIFY_TOLERANCE[fmt] else "FAILED"
        print(f"verify {status}: max |log-prob difference| = {diff:.2e} on {audio} "
              f"(tolerance {VERIFY_TOLERANCE[fmt]:g})")
        return 0 if status == "OK" else 1
    return 0


if __name__ == "__main__":
    sys.exit(main("export", __doc__, run))
