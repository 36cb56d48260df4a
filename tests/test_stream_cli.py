"""transcribe.py --stream / --microphone (the streaming engine on the command line) against the
offline network over the whole file: finals, partials, text and JSON output, real-time pacing,
models that cannot stream, the microphone's refusals and its capture loop with fake devices."""
import importlib.util
import json
import math
import os
import pty
import subprocess
import sys
import time

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, run
from src.word_times import clip_event
from transcribe import split_command_line

HIDDEN = 16
SIZE = ["--hidden_size=16", "--num_layers=2", "--blank_bias=0"]  # random read-outs below
STREAMING = [*SIZE, "--bidirectional=false", "--normalize=global", "--lookahead=2"]
SPACE_BIAS = 0.3  # the classifier's space logit gets about this much more: the greedy path has
                  # runs of spaces (measured ~50 % / 20 % of the frames of the two utterances)
FRAME = 0.02  # seconds per output frame


def tiny_network(ms, cfg, paths, seed=0, space_bias=0.0):
    """A tiny network in inference mode: random weights, non-trivial BatchNorm statistics and
    lookahead weights, the global statistics of `paths` (normalize=global); with space_bias
    its last LSTM's last unit is a constant that adds space_bias to the space logit."""
    from src.deepspeech2 import build_network
    from src.features import global_stats
    from src.text import load_labels
    ms.set_seed(seed)
    net = build_network(cfg)
    rng = np.random.default_rng(seed)
    params = {p.name: p for p in net.get_parameters()}
    for name, p in params.items():
        if name.endswith("moving_mean"):
            p.set_data(ms.Tensor(rng.normal(0, 0.3, p.shape).astype(np.float32)))
        elif name.endswith("moving_variance"):
            p.set_data(ms.Tensor(rng.uniform(0.5, 2.0, p.shape).astype(np.float32)))
        elif name == "lookahead.weight":
            p.set_data(ms.Tensor(rng.normal(0, 1, p.shape).astype(np.float32)))
    if net.norm is not None:
        mean, std, _ = global_stats(paths, cfg.features)
        net.norm.set_stats(mean, std)
    if space_bias:
        last, k = f"RNN.lstms.{cfg.model.num_layers - 1}.", HIDDEN - 1
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            value = params[last + name].asnumpy().copy()  # gates i, f, g, o of unit k
            rows = [k, HIDDEN + k, 2 * HIDDEN + k, 3 * HIDDEN + k]
            value[rows] = [10, -10, 10, 10] if name == "bias_ih_l0" else 0  # h_k = tanh(1)
            params[last + name].set_data(ms.Tensor(value))
        lookahead = params["lookahead.weight"].asnumpy().copy()
        lookahead[:, k] = 1 / lookahead.shape[0]
        params["lookahead.weight"].set_data(ms.Tensor(lookahead))
        fc = params["fc.module.weight"].asnumpy().copy()
        fc[:, k] = 0
        fc[load_labels(cfg.labels_path).index(" "), k] = space_bias / math.tanh(1)
        params["fc.module.weight"].set_data(ms.Tensor(fc))
    net.set_train(False)
    return net


@pytest.fixture(scope="module")
def models(ms_context, sample_data, tmp_path_factory):
    """(folder, streaming network, its config, 2 test utterances): stream.ckpt (unidirectional,
    global normalisation, lookahead 2), bidirectional.ckpt and utterance.ckpt (per-utterance
    normalisation), each saved with its feature settings."""
    from src.checkpoints import save_network
    from src.config import load_config
    from src.manifest import read_manifest
    root = tmp_path_factory.mktemp("stream_cli")
    corpus = [e.audio for e in read_manifest(str(sample_data / "libri_test_clean_manifest.csv"))]
    cfg = load_config(STREAMING)
    net = tiny_network(ms_context, cfg, corpus[:8], space_bias=SPACE_BIAS)
    save_network(net, str(root / "stream.ckpt"), cfg.features)
    for name, overrides in (("bidirectional", ["--normalize=global", "--lookahead=0"]),
                            ("utterance", ["--bidirectional=false", "--lookahead=2"])):
        other = load_config([*SIZE, *overrides])
        save_network(tiny_network(ms_context, other, corpus[:8]), str(root / f"{name}.ckpt"),
                     other.features)
    return root, net, cfg, corpus[:2]


def offline_probs(ms, net, cfg, path):
    """The offline pass (InferenceNet over the whole file) -> log-probabilities (T', C)."""
    from src.deepspeech2 import InferenceNet
    from src.features import features_of, load_audio
    from src.inference import log_probs, pad_batch
    spec = features_of(load_audio(path, cfg.features.sample_rate), cfg.features)
    x, lengths = pad_batch([spec], spec.shape[1])
    probs, out_lengths = log_probs(InferenceNet(net), x, lengths)  # (T', 1, C)
    return probs[:int(out_lengths[0]), 0]


def greedy(cfg, probs):
    from src.decoder import GreedyDecoder
    from src.text import load_labels
    return GreedyDecoder(load_labels(cfg.labels_path)).decode(probs).text


def frames(event):
    """The output frames [first, last + 1) of an event (its end may be clipped to the file's)."""
    return round(event["start"] / FRAME), math.ceil(event["end"] / FRAME - 1e-6)


def transcribe(root, *args, ok=True, **kw):
    return run([sys.executable, f"{REPO}/transcribe.py", f"--checkpoint={root}/stream.ckpt",
                *STREAMING, *map(str, args)], ok=ok, cwd=root, **kw)


def json_events(output):
    """The JSON lines of a program's output (a CompletedProcess or its stdout)."""
    text = output if isinstance(output, str) else output.stdout
    return [json.loads(line) for line in text.splitlines()]


@pytest.fixture(scope="module")
def streamed(models):
    """The JSON events of --stream --partials over the 2 utterances, segments ending after 2
    output frames without a character."""
    root, _, _, paths = models
    return json_events(transcribe(root, "--stream", *paths, "--format=json", "--partials",
                                  "--endpoint_silence=0.04"))


def test_finals_make_the_offline_greedy_text_and_partials_are_its_prefixes(models, streamed,
                                                                             ms_context):
    root, net, cfg, paths = models
    assert {e["path"] for e in streamed} == set(paths)
    several = False
    for path in paths:
        probs = offline_probs(ms_context, net, cfg, path)
        duration = round(sf.info(path).duration, 3)  # as the offline JSON gives it
        events = [e for e in streamed if e["path"] == path]
        finals = [e for e in events if e["event"] == "final"]
        partials = [e for e in events if e["event"] == "partial"]
        several |= len(finals) > 1
        assert " ".join(f["text"] for f in finals) == greedy(cfg, probs)
        for event in events:
            assert set(event) == {"event", "path", "text", "start", "end"} | (
                {"words"} if event["event"] == "final" else set())
            first, end = frames(event)
            assert event["text"] == greedy(cfg, probs[first:end])  # its frames, offline
        for final in finals:
            assert [w["word"] for w in final["words"]] == final["text"].split()
            times = [t for w in final["words"] for t in (w["start"], w["end"])]
            assert times == sorted(times) and all(0 <= t <= duration for t in times)
            assert final["start"] <= times[0] and times[-1] <= final["end"] <= duration
        assert partials
        for i, event in enumerate(events):  # a partial: a prefix of its segment's final
            if event["event"] == "partial":
                final = next(e for e in events[i:] if e["event"] == "final")
                assert final["start"] == event["start"]
                assert final["text"].startswith(event["text"]) and event["text"]
    assert several, "no segment ended at a pause: the test needs a few"
    without = json_events(transcribe(root, "--stream", *paths, "--format=json",
                                     "--endpoint_silence=0.04"))
    assert without == [e for e in streamed if e["event"] == "final"]


def test_text_off_a_terminal_is_one_line_per_final_and_missing_files_are_skipped(models,
                                                                                  streamed):
    root, _, _, paths = models
    proc = transcribe(root, "--stream", paths[0], "missing.wav", paths[1],
                      "--endpoint_silence=0.04", ok=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stdout.splitlines() == [f"{e['path']}\t{e['text']}" for e in streamed
                                        if e["event"] == "final"]
    assert f"skipped: audio file not found: {root}/missing.wav" in proc.stderr
    assert "1 of 3 files could not be read" in proc.stderr
    proc = transcribe(root, "--stream", "missing.wav", "--format=json", ok=False)
    assert json_events(proc) == [{"path": f"{root}/missing.wav",
                                  "error": f"audio file not found: {root}/missing.wav"}]


def test_a_terminal_shows_the_partial_text_in_place_and_finals_with_their_times(models,
                                                                                streamed):
    root, _, _, paths = models
    controller, terminal = pty.openpty()
    proc = subprocess.Popen([sys.executable, f"{REPO}/transcribe.py",
                             f"--checkpoint={root}/stream.ckpt", *STREAMING, "--stream",
                             paths[0], "--endpoint_silence=0.04"],
                            cwd=root, stdout=terminal, stderr=subprocess.PIPE,
                            env={**os.environ, "COLUMNS": "200"})  # no partial shortened
    os.close(terminal)
    shown = b""
    while True:
        try:
            data = os.read(controller, 4096)
        except OSError:  # EIO: the program ended and closed the terminal
            break
        if not data:
            break
        shown += data
    os.close(controller)
    assert proc.wait(timeout=120) == 0, proc.stderr.read()
    lines = shown.decode().replace("\r\n", "\n").split("\n")
    finals = [e for e in streamed if e["path"] == paths[0] and e["event"] == "final"]
    partials = [e for e in streamed if e["path"] == paths[0] and e["event"] == "partial"]
    assert [line.split("\x1b[K")[-1] for line in lines[:-1]] == [
        f"[{e['start']:.2f}-{e['end']:.2f}] {e['text']}" for e in finals]
    overwritten = [part for line in lines for part in line.split("\r\x1b[K")[1:-1]]
    assert overwritten == [p["text"] for p in partials]  # each partial, then erased
    assert lines[-1] == ""


def one_second_clip(path, folder):
    clip = str(folder / "one_second.wav")
    data, rate = sf.read(path, dtype="int16")
    sf.write(clip, data[:rate], rate)
    return clip


def test_realtime_feeds_the_pieces_no_faster_than_real_time(models, tmp_path, capsys):
    import transcribe as cli
    from src.config import load_config
    root, _, _, paths = models
    clip = one_second_clip(paths[0], tmp_path)
    cfg = load_config([f"--checkpoint={root}/stream.ckpt", *STREAMING, "--stream",
                       "--realtime", "--format=json", "--chunk_ms=160"], entry="transcribe")
    start = time.perf_counter()
    assert cli.run(cfg, [clip]) == 0
    assert time.perf_counter() - start >= 0.8  # 7 pieces of 160 ms, the last at 0.96 s
    events = json_events(capsys.readouterr().out)
    assert events and all(e["event"] == "final" and e["path"] == clip for e in events)

    now, slept = [10.0], []  # a clock that the sleeps move, and the pieces' feeding times

    def sleep(seconds):
        slept.append(seconds)
        now[0] += seconds
    fed = []
    for k in cli.paced(range(5), 0.16, clock=lambda: now[0], sleep=sleep):
        fed.append(now[0] - 10.0)
        now[0] += 0.05 if k != 2 else 0.4  # piece 2 takes longer than real time
    assert fed == pytest.approx([0, 0.16, 0.32, 0.72, 0.77])  # late: at once, not later
    assert all(s > 0 for s in slept)


def test_models_that_cannot_stream_are_refused_in_one_line(models):
    root, *_ = models
    wav = models[3][0]
    for name, flags, reason in (
            ("bidirectional", ["--normalize=global", "--lookahead=0"], "it is bidirectional"),
            ("utterance", ["--bidirectional=false", "--lookahead=2"],
             "its features are normalised per utterance")):
        proc = run([sys.executable, f"{REPO}/transcribe.py", f"--checkpoint={root}/{name}.ckpt",
                    *SIZE, *flags, "--stream", wav], ok=False, cwd=root)
        assert proc.returncode == 1 and proc.stdout == ""
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "this model cannot stream" in lines[0], proc.stderr
        assert reason in lines[0] and lines[0].startswith("transcribe.py: error: ")


@pytest.mark.skipif(importlib.util.find_spec("sounddevice") is not None,
                    reason="sounddevice is installed here")
def test_microphone_without_sounddevice_says_how_to_install_it(models):
    root, *_ = models
    proc = run([sys.executable, f"{REPO}/transcribe.py", f"--checkpoint={root}/stream.ckpt",
                *STREAMING, "--microphone"], ok=False, cwd=root)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert "--microphone needs the sounddevice package" in lines[0]
    assert "pip install sounddevice" in lines[0] and "apt-get install libportaudio2" in lines[0]


FAKE_SOUNDDEVICE = '''"""A stand-in for the sounddevice module (tests/test_stream_cli.py): the default input
device delivers the int16 samples of $FAKE_MICROPHONE in the blocks asked for, from a thread at
real-time pace as PortAudio does, then presses Ctrl-C (SIGINT); without it there is no device."""
import os
import signal
import sys
import threading
import time

import soundfile as sf


class PortAudioError(Exception):
    pass


def query_devices(kind=None):
    if not os.environ.get("FAKE_MICROPHONE"):
        raise PortAudioError("Error querying device -1")
    return {"name": "Fake microphone", "default_samplerate": 48000.0}


def check_input_settings(channels=None, dtype=None, samplerate=None):
    if samplerate != 16000:
        raise PortAudioError("Invalid sample rate [PaErrorCode -9997]")


class InputStream:
    def __init__(self, samplerate, blocksize, channels, dtype, callback):
        print(f"fake device opened: {samplerate} {blocksize} {channels} {dtype}", file=sys.stderr)
        self.size, self.callback, self.thread = blocksize, callback, None

    def start(self):
        self.thread = threading.Thread(target=self.deliver)
        self.thread.start()

    def deliver(self):
        wave, rate = sf.read(os.environ["FAKE_MICROPHONE"], dtype="int16")
        for i in range(0, len(wave), self.size):
            block = wave[i:i + self.size, None]
            self.callback(block, len(block), None, None)
            time.sleep(len(block) / rate)
        os.kill(os.getpid(), signal.SIGINT)

    def stop(self):
        self.thread.join()

    def close(self):
        self.thread.join()
'''


@pytest.fixture(scope="module")
def fake_sounddevice(tmp_path_factory):
    """A folder holding sounddevice.py (FAKE_SOUNDDEVICE), to put first on the path."""
    folder = tmp_path_factory.mktemp("fake_sounddevice")
    (folder / "sounddevice.py").write_text(FAKE_SOUNDDEVICE)
    return folder


def test_no_input_device_is_one_line(fake_sounddevice, monkeypatch):
    import transcribe as cli
    from src.errors import UserError
    spec = importlib.util.spec_from_file_location("sounddevice",
                                                  fake_sounddevice / "sounddevice.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setitem(sys.modules, "sounddevice", module)  # what `import sounddevice` gives
    monkeypatch.delenv("FAKE_MICROPHONE", raising=False)
    with pytest.raises(UserError) as err:
        cli.Microphone(16000, 160)
    assert "no audio input device (Error querying device -1)" in str(err.value)
    assert "\n" not in str(err.value)


def stream_finals(streamed, path):
    return [{k: v for k, v in e.items() if k != "path"} for e in streamed
            if e["path"] == path and e["event"] == "final"]


def test_the_capture_loop_on_fake_blocks_gives_the_finals_of_stream(models, streamed):
    """Blocks of odd sizes from an iterator that ends with Ctrl-C (KeyboardInterrupt while
    waiting for the next block): the finals of --stream on the same audio, the last one too."""
    import transcribe as cli
    from src.config import load_config
    from src.streaming import StreamingTranscriber
    root, _, _, paths = models
    cfg = load_config([f"--checkpoint={root}/stream.ckpt", *STREAMING, "--microphone",
                       "--endpoint_silence=0.04"], entry="transcribe")
    engine = StreamingTranscriber(cli.load_network(cfg), cfg)
    pcm, rate = sf.read(paths[1], dtype="int16")

    def blocks():
        for i in range(0, len(pcm), 777):
            yield pcm[i:i + 777]
        raise KeyboardInterrupt
    events = []
    assert cli.transcribe_live(engine, blocks(), rate, events.extend) is True
    finals = [e for e in events if e["event"] == "final"]
    want = stream_finals(streamed, paths[1])
    assert len(finals) == len(want)
    for got, final in zip(finals, want):  # the file's times are clipped to its duration
        assert clip_event(got, len(pcm) / rate) == final


def test_the_microphone_transcribes_until_ctrl_c_which_flushes_the_last_final(
        models, streamed, fake_sounddevice):
    """transcribe.py --microphone with a fake device (the utterance at real-time pace, then
    SIGINT, which MindSpore's own handler turns into SIGTERM after a network step): the finals
    of --stream on that audio, the last one flushed, exit status 0."""
    root, _, _, paths = models
    env = {**os.environ, "PYTHONPATH": str(fake_sounddevice), "FAKE_MICROPHONE": paths[0]}
    proc = transcribe(root, "--microphone", "--format=json", "--endpoint_silence=0.04",
                      "--chunk_ms=160", env=env)
    assert "fake device opened: 16000 2560 1 int16" in proc.stderr  # 160-ms blocks, mono
    assert "listening to Fake microphone at 16000 Hz" in proc.stderr
    events = json_events(proc)
    assert {e["path"] for e in events} == {None}
    duration = sf.info(paths[0]).duration
    assert [{k: v for k, v in clip_event(e, duration).items() if k != "path"}
            for e in events] == stream_finals(streamed, paths[0])


@pytest.mark.parametrize("argv,message", [
    (["--partials"], "transcribe.partials applies to streaming: add --stream"),
    (["--realtime", "--format=json"], "transcribe.realtime applies to streaming"),
    (["--stream", "--format=srt"], "streaming writes text or json"),
    (["--stream", "--partials"], "add --format=json"),
    (["--microphone", "--realtime"], "the microphone is live"),
    (["--stream", "--mindir=m.mindir", "--checkpoint="], "not an offline MindIR"),
])
def test_options_streaming_cannot_honour_are_refused_before_any_work(argv, message):
    import transcribe as cli
    from src.config import load_config
    from src.errors import UserError
    cfg = load_config(["--checkpoint=m.ckpt", *argv], entry="transcribe")
    with pytest.raises(UserError, match=message):
        cli.run(cfg, [] if "--microphone" in argv else ["a.wav"])
    cfg = load_config(["--checkpoint=m.ckpt", "--microphone"], entry="transcribe")
    with pytest.raises(UserError, match="not files"):
        cli.run(cfg, ["a.wav"])


def test_a_bare_switch_before_audio_is_true():
    assert split_command_line(["--checkpoint", "m.ckpt", "--stream", "a.wav", "--realtime",
                               "b.wav"]) == (
        ["--checkpoint=m.ckpt", "--stream=true", "--realtime=true"], ["a.wav", "b.wav"])
    assert split_command_line(["--stream", "false", "a.wav", "--transcribe.partials", "yes",
                               "--format", "json", "--microphone"]) == (
        ["--stream=false", "--transcribe.partials=yes", "--format=json", "--microphone=true"],
        ["a.wav"])
