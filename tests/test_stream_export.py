"""Streaming exports (export.py --export.streaming=true): the chunk step as MindIR and ONNX (and
its int8 version) with its settings in the file, driven by the engine of src/streaming.py, against
the checkpoint's offline pass; the ONNX engine without MindSpore."""
import json
import subprocess
import sys

import numpy as np
import pytest
from test_streaming import (
    offline,
    random_model,
    silence_speaks_space,
    speech_or_silence,
    stream_cfg,
    streamed,
)

from conftest import REPO, run


@pytest.fixture(scope="module")
def corpus(sample_data):
    from src.manifest import read_manifest
    return [e.audio for e in read_manifest(str(sample_data / "libri_test_clean_manifest.csv"))]


@pytest.fixture(scope="module")
def model(ms_context, corpus, tmp_path_factory):
    """(net, checkpoint, stream, gap): a tiny streamable network (unidirectional, global
    normalisation with the statistics of real audio, lookahead 2, random BatchNorm statistics)
    that answers the space on silence, saved with its feature settings; a stream of two
    utterances with 1 s of silence between them."""
    from src.checkpoints import save_network
    from src.features import load_audio
    cfg = stream_cfg()
    net = random_model(ms_context, cfg, corpus[:8], seed=1)
    first, second = load_audio(corpus[0], 16000), load_audio(corpus[1], 16000)
    stream = np.concatenate([first, np.zeros(16000, np.float32), second])
    gap = (len(first), len(first) + 16000)
    silence_speaks_space(ms_context, net, cfg, stream,
                         speech_or_silence(np.arange(1 + len(stream) // 320) * 320, gap,
                                           len(stream)))
    # The classifier / 4 (the same best labels): the least-squares read-out's weights (up to
    # ~80) would amplify the float rounding of another runtime's kernels (ONNX: 1.3e-4) more
    # than a trained classifier does.
    fc = net.fc.module.weight
    fc.set_data(ms_context.Tensor(fc.asnumpy() / 4))
    checkpoint = tmp_path_factory.mktemp("stream_export") / "net.ckpt"
    save_network(net, str(checkpoint), cfg.features)
    return net, checkpoint, stream, gap


def export(checkpoint, sample_data, file_name, *options, ok=True):
    """python export.py --export.streaming=true on `checkpoint`, verified on the sample corpus."""
    return run([sys.executable, f"{REPO}/export.py", f"--checkpoint={checkpoint}",
                "--streaming=true", "--normalize=global", f"--file_name={file_name}",
                f"--eval.manifests={sample_data}/libri_test_clean_manifest.csv",
                f"--data.train_manifest={sample_data}/libri_train_manifest.csv", *options], ok=ok)


@pytest.fixture(scope="module")
def exported(model, sample_data):
    """{"MINDIR": path, "ONNX": path, "INT8": path, "stdout": {format: export.py's output}}:
    the chunk step of `model` exported at 120 ms with --verify, ONNX also as int8."""
    _, checkpoint, _, _ = model
    folder = checkpoint.parent / "out dir"  # a space: any file name works
    out = {"stdout": {}}
    for fmt, options in (("MINDIR", ()), ("ONNX", ("--quantize=int8",))):
        proc = export(checkpoint, sample_data, folder / "ds2 step", f"--file_format={fmt}",
                      "--verify", *options)
        out[fmt] = str(folder / f"ds2 step.{fmt.lower()}")
        out["stdout"][fmt] = proc.stdout
    out["INT8"] = str(folder / "ds2 step.int8.onnx")
    return out


def step_of(path):
    if path.endswith(".mindir"):
        from src.streaming_step import mindir_step
        return mindir_step(path)
    from src.streaming_onnx import OnnxStep
    return OnnxStep(path)


@pytest.mark.parametrize("fmt", ["MINDIR", "ONNX"])
def test_the_exported_chunk_step_streams_the_offline_pass(model, exported, corpus, ms_context,
                                                          fmt):
    """export.py's own --verify passes; then the file, driven by the engine with the settings
    stored in it, fed a real utterance in random pieces (float samples and int16 bytes cut at
    odd byte counts), gives the offline pass's log-probabilities over the whole utterance
    (measured: 7e-6 MINDIR, 4e-5 ONNX, whose kernels differ from MindSpore's)."""
    from src.features import load_audio
    from src.streaming import StreamingRecognizer
    net, _, _, _ = model
    verified = [line for line in exported["stdout"][fmt].splitlines() if line.startswith("verify")]
    assert len(verified) == 1 and verified[0].startswith("verify OK"), exported["stdout"][fmt]
    assert f"tolerance {dict(MINDIR='0.0001', ONNX='0.001')[fmt]})" in verified[0]
    wave = load_audio(corpus[2], 16000)
    want = offline(ms_context, net, stream_cfg(), [wave])[0]
    engine = StreamingRecognizer(step_of(exported[fmt]))
    rng = np.random.default_rng(7)
    pcm = np.round(wave * 32767).astype(np.int16).tobytes()
    for got in (streamed(engine, wave, rng.integers(1, 5000, 30)),
                streamed(engine, pcm, rng.integers(1, 999, 60) * 2 + 1)):
        assert got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-4


def test_the_onnx_file_names_its_states_and_holds_its_settings(exported):
    """Inputs and outputs by name with the shapes of the metadata, which holds what a runtime
    needs: chunk, geometry, features, labels, model size."""
    import onnxruntime

    from src.streaming import STEP_INPUTS, STEP_OUTPUTS
    from src.text import load_labels
    session = onnxruntime.InferenceSession(exported["ONNX"], providers=["CPUExecutionProvider"])
    meta = {k: json.loads(v) for k, v in session.get_modelmeta().custom_metadata_map.items()}
    assert [i.name for i in session.get_inputs()] == list(STEP_INPUTS)
    assert [o.name for o in session.get_outputs()] == list(STEP_OUTPUTS)
    assert {i.name: i.shape for i in session.get_inputs()} == meta["inputs"]
    assert {o.name: o.shape for o in session.get_outputs()} == meta["outputs"]
    assert meta["inputs"]["feats"] == [1, 1, 161, 21]  # 120 ms: 12 new frames + 9 of context
    assert meta["outputs"]["log_probs"] == [6, 29] and meta["inputs"]["h"] == [2, 1, 16]
    assert meta["chunk_ms"] == 120 and meta["geometry"]["chunk"] == 12
    assert meta["geometry"]["lookahead"] == 2 and meta["geometry"]["lag"] == 7
    assert meta["features"] == {"sample_rate": 16000, "window_size": 0.02, "window_stride": 0.01,
                                "window": "hamming", "normalize": "global"}
    assert meta["labels"] == list(load_labels(stream_cfg().labels_path))
    assert meta["model"] == {"hidden_size": 16, "num_layers": 2, "bidirectional": False,
                             "lookahead": 2, "n_class": 29}


def test_the_onnx_engine_runs_without_mindspore_and_gives_the_checkpoint_engines_events(
        model, exported, tmp_path):
    """StreamingTranscriber.from_onnx in a fresh process: mindspore never imported; its events
    (partials, the two finals cut in the pause, word times) are those of the checkpoint's
    engine in MindSpore."""
    from src.streaming import StreamingTranscriber
    net, _, stream, _ = model
    np.save(tmp_path / "stream.npy", stream)
    script = f"""
import json, sys
sys.path.insert(0, {REPO!r})
import numpy as np
from src.config import load_config
from src.streaming import StreamingTranscriber
engine = StreamingTranscriber.from_onnx({exported["ONNX"]!r}, load_config([]))
stream = np.load({str(tmp_path / "stream.npy")!r})
events = [e for i in range(0, len(stream), 1600) for e in engine.accept(stream[i:i + 1600])]
print(json.dumps({{"events": events + engine.finish(),
                  "mindspore": sorted(m for m in sys.modules if m.startswith("mindspore"))}}))
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=tmp_path, check=False)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout.splitlines()[-1])
    assert out["mindspore"] == []
    engine = StreamingTranscriber(net, stream_cfg())
    want = [e for i in range(0, len(stream), 1600) for e in engine.accept(stream[i:i + 1600])]
    want += engine.finish()
    assert sum(e["event"] == "final" for e in want) == 2
    assert without_confidences(out["events"]) == without_confidences(want)
    confidences = [[w["confidence"] for e in events for w in e.get("words", [])]
                   for events in (out["events"], want)]
    np.testing.assert_allclose(*confidences, atol=2e-4)  # rounded to 4 places, from 1e-5 apart


def without_confidences(events):
    return [{**e, "words": [{k: v for k, v in w.items() if k != "confidence"}
                            for w in e.get("words", [])]} for e in events]


def test_the_int8_file_loads_and_decodes_like_the_float_one(model, exported):
    """The int8 file (convs static, LSTMs and classifier dynamic int8): same settings, same
    number of output frames; its best labels those of float32 on nearly every frame of a
    network that answers the space on silence, its log-probabilities close (loose bounds:
    measured 0.17 and 99%)."""
    import onnx

    from src.streaming import StreamingRecognizer
    _, _, stream, _ = model
    fp32, int8 = (StreamingRecognizer(step_of(exported[k])) for k in ("ONNX", "INT8"))
    assert int8.step.info["quantization"].startswith("int8")
    assert {k: v for k, v in int8.step.info.items() if k != "quantization"} == fp32.step.info
    ops = {node.op_type for node in onnx.load(exported["INT8"]).graph.node}
    assert {"QLinearConv", "DynamicQuantizeLSTM", "MatMulInteger"} <= ops
    assert not {"Conv", "LSTM", "Gemm", "MatMul"} & ops
    want, got = (streamed(engine, stream, [16000] * 5) for engine in (fp32, int8))
    assert got.shape == want.shape
    assert (got.argmax(axis=1) == want.argmax(axis=1)).mean() >= 0.9
    assert np.abs(got - want).max() < 1.0
    line = [s for s in exported["stdout"]["ONNX"].splitlines() if s.startswith("int8 (")]
    assert len(line) == 1 and "best label kept on" in line[0]


def test_a_file_without_the_stream_settings_is_refused(exported, tmp_path):
    import onnx

    from src.errors import UserError
    from src.streaming import StreamingRecognizer
    model = onnx.load(exported["ONNX"])
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "bare.onnx"))
    with pytest.raises(UserError, match="is not a streaming export of export.py"):
        StreamingRecognizer.from_onnx(str(tmp_path / "bare.onnx"))


def test_a_bidirectional_checkpoint_is_refused_in_one_line(ms_context, sample_data, tmp_path):
    from src.checkpoints import save_network
    from src.deepspeech2 import build_network
    cfg = stream_cfg("--bidirectional=true")
    save_network(build_network(cfg), str(tmp_path / "bi.ckpt"), cfg.features)
    proc = export(tmp_path / "bi.ckpt", sample_data, tmp_path / "bi", "--file_format=ONNX",
                  ok=False)
    assert proc.returncode == 1
    assert proc.stderr.strip().count("\n") == 0
    assert "cannot stream: it is bidirectional" in proc.stderr
    assert not list(tmp_path.glob("bi.*onnx"))


@pytest.mark.parametrize("options, message", [
    (["--quantize=int8"], "quantizes the streaming ONNX chunk step"),
    (["--file_format=MINDIR", "--quantize=int8"], "quantizes the streaming ONNX chunk step"),
    (["--streaming=true", "--file_format=AIR", "--device_target=Ascend"], "MINDIR or ONNX"),
    (["--streaming=true", "--frames=300"], "leave it 0"),
    (["--streaming=true", "--file_format=ONNX", "--quantize=int8", "--train_manifest=nowhere.csv"],
     "calibrates on the first 8 utterances of data.train_manifest, which is not found"),
])
def test_options_that_do_not_go_together(options, message):
    import export as export_py
    from src.config import load_config
    from src.errors import UserError
    with pytest.raises(UserError, match=message):
        export_py.check_options(load_config(options, entry="export"))


def test_transcribe_runs_an_onnx_export_without_mindspore_and_gives_the_checkpoints_text(
        model, exported, tmp_path, sample_data):
    """python transcribe.py --onnx FILE --stream AUDIO: a deployment without MindSpore (never
    imported, checked at exit) whose finals equal those of --checkpoint --stream."""
    import soundfile as sf
    _, checkpoint, stream, _ = model
    audio = tmp_path / "two utterances.wav"
    sf.write(audio, (stream * 32767).astype(np.int16), 16000)
    probe = (f"import atexit, runpy, sys; sys.argv = sys.argv[1:]; atexit.register(lambda: "
             f"print('MINDSPORE', any(m.startswith('mindspore') for m in sys.modules), "
             f"file=sys.stderr)); runpy.run_path({REPO + '/transcribe.py'!r}, "
             f"run_name='__main__')")
    finals = {}
    for model_flag in (f"--onnx={exported['ONNX']}", f"--checkpoint={checkpoint}"):
        proc = run([sys.executable, "-c", probe, "transcribe.py", model_flag, "--stream",
                    "--normalize=global", "--format=json", str(audio)])
        finals[model_flag.split("=")[0]] = [json.loads(line)["text"]
                                            for line in proc.stdout.splitlines()]
        loaded = proc.stderr.strip().splitlines()[-1]
        assert loaded == f"MINDSPORE {model_flag.startswith('--checkpoint')}", proc.stderr
    assert len(finals["--onnx"]) == 2 and finals["--onnx"] == finals["--checkpoint"]
