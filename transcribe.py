"""Transcribe recordings with a DeepSpeech2 checkpoint or an exported MindIR.

usage: python transcribe.py (--checkpoint CKPT | --mindir FILE.mindir) AUDIO... [--key=value ...]
  e.g. python transcribe.py --checkpoint outputs/checkpoints/DeepSpeech-10_83.ckpt talk.wav
       python transcribe.py --checkpoint CKPT talk.wav --decode.method=beam \
           --decode.lm_path=data/lm/3-gram.pruned.3e-7.arpa --decode.alpha=0.8 --decode.beta=1.5
       python transcribe.py --mindir outputs/DeepSpeech2.mindir recordings/ --format=json \
           --output=out.jsonl
       python transcribe.py --checkpoint CKPT talks/ --format=srt --output=subtitles/
AUDIO: files (wav, flac, ogg, opus, mp3, aif, sph, ... whatever libsndfile reads; any rate and
channel count), folders (searched recursively by those formats' extensions; headerless .raw is
not taken) or manifests (.csv/.json). `--` ends the options: what follows is audio even if it
starts with --.
--format:
  text  one file: its text alone; more than one file (after folders and manifests are
        expanded): one line `PATH<TAB>TEXT` per file transcribed
  json  one JSON object per line: path, duration, text, words [{word, start, end, confidence}]
        (seconds of the original file); a skipped file gives {"path": ..., "error": ...}
  srt, vtt  subtitles (SubRip / WebVTT) of cues of consecutive words, a cue ending at a pause
        of 0.5 s or before it would last over 7 s or hold over 42 characters. One file: the
        document goes to --output (a file) or stdout. More than one file, or --output an
        existing folder: --output is a folder (created if needed) that gets one <stem>.srt/.vtt
        per file (<stem>-2.srt, ... when names collide, in input order; existing files are
        overwritten), and stdout one line `PATH<TAB>SUBTITLE FILE` per file written.
--output=FILE writes to a file instead of stdout. --chunk_seconds (default 15, at most 60) cuts
long recordings into overlapping chunks joined where no word is cut.
Decoding: --decode.method=greedy (default) or beam (with --decode.lm_path, see eval.py).
A file that cannot be read (missing, also in a manifest; empty; not audio) is named on stderr
and skipped; the exit status is then 1. A manifest that cannot be parsed stops the run before
any work, with one line naming it.

Streaming (src/streaming.py; a unidirectional checkpoint with features.normalize=global, e.g.
trained with --config_path=src/configs/streaming_sample.yaml, run with the same features):
  python transcribe.py --checkpoint CKPT --normalize=global --stream talk.wav [--realtime]
  python transcribe.py --checkpoint CKPT --normalize=global --microphone
--stream feeds each file to the streaming engine in pieces of --chunk_ms (stream.chunk_ms) as
a live source would; --realtime paces them at real time. --microphone transcribes the default
input device live (the optional sounddevice package: pip install sounddevice; Debian/Ubuntu:
apt-get install libportaudio2); Ctrl-C ends it, its last segment flushed (a second Ctrl-C
stops at once). A segment ends at a pause (stream.endpoint_silence) or at stream.max_segment.
  text  on a terminal: the partial text updating in place, each final segment on its own line
        `[START-END] TEXT` (seconds); elsewhere one line per final segment, `PATH<TAB>TEXT`
        when several files
  json  one JSON object per final: event ("final"), path (null for the microphone), text,
        start, end, words [{word, start, end, confidence}]; with --partials also the partial
        events (event "partial", no words); a skipped file gives {"path": ..., "error": ...}
"""
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from src.cli import check_output_dir, main  # noqa: E402  (after the path fix above)
from src.errors import UserError  # noqa: E402

SUBTITLES = ("srt", "vtt")


def load_network(cfg):
    """The inference network of --checkpoint, or the MindIR of --mindir, as a callable Cell; for
    --onnx (streaming only) the chunk step of that streaming export, run by onnxruntime
    (src.streaming_onnx.OnnxStep, which StreamingTranscriber takes in place of a network)."""
    t = cfg.transcribe
    if sum(bool(given) for given in (t.checkpoint, t.mindir, t.onnx)) != 1:
        raise UserError("give exactly one of --checkpoint CKPT, --mindir FILE.mindir or --onnx "
                        "FILE.onnx (a streaming export, with --stream)")
    if t.onnx:
        if not (t.stream or t.microphone):
            raise UserError("--onnx runs a streaming export (export.py --export.streaming=true): "
                            "add --stream")
        from src.streaming_onnx import OnnxStep
        return OnnxStep(t.onnx)
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


def subtitle_names(paths, ext):
    """{path: file name} of one subtitle per audio path: its stem + ext, then stem-2 + ext, ...
    for a name already given (compared ignoring case, for case-insensitive file systems)."""
    names, taken = {}, set()
    for path in dict.fromkeys(paths):  # a file given twice has one subtitle
        stem, n = os.path.splitext(os.path.basename(path))[0], 1
        while (name := f"{stem}{f'-{n}' if n > 1 else ''}{ext}").lower() in taken:
            n += 1
        names[path] = name
        taken.add(name.lower())
    return names


class Writer:
    """Writes each file's result in transcribe.format to stdout, transcribe.output or, for
    subtitles of several files, one file per input in the transcribe.output folder."""

    def __init__(self, t, paths):
        self.format, self.named, self.folder = t.format, len(paths) > 1, None
        if t.format in SUBTITLES and (len(paths) > 1 or os.path.isdir(t.output)):
            if not t.output or os.path.isfile(t.output):
                raise UserError(f"--format={t.format} of {len(paths)} files writes one file "
                                "each: give --output=FOLDER")
            self.folder = check_output_dir(t.output, "transcribe.output")
            self.names = subtitle_names(paths, f".{t.format}")
        elif os.path.isdir(t.output):
            raise UserError(f"transcribe.output {t.output} is a folder: --format={t.format} "
                            "writes one file (--output=FILE)")
        elif t.output:
            check_output_dir(os.path.dirname(t.output), "transcribe.output's folder")
        self.file = t.output if t.output and not self.folder else None
        self.out = sys.stdout

    def __enter__(self):
        """Opens --output (a file) only now, so that an error before (e.g. in the model) leaves
        an earlier file of that name as it was."""
        if self.file:
            self.out = open(self.file, "w", encoding="utf-8")
        return self

    def __exit__(self, *exc):
        if self.file:
            self.out.close()

    def result(self, result):
        if self.format == "json":
            line = json.dumps(result)
        elif self.format == "text":
            line = f"{result['path']}\t{result['text']}" if self.named else result["text"]
        else:
            from src.transcription import subtitles  # NumPy: after prepare_environment
            document = subtitles(result["words"], self.format)
            if not self.folder:
                self.out.write(document)
                return
            target = os.path.join(self.folder, self.names[result["path"]])
            with open(target, "w", encoding="utf-8") as f:
                f.write(document)
            line = f"{result['path']}\t{target}"
        self._line(line)

    def skipped(self, path, error):
        if self.format == "json":
            self._line(json.dumps({"path": path, "error": error}))

    def _line(self, line):
        print(line, file=self.out, flush=True)


def run(cfg, audio):
    t = cfg.transcribe
    if t.stream or t.microphone:
        return run_stream(cfg, audio)
    for key in ("partials", "realtime"):
        if t[key]:
            raise UserError(f"transcribe.{key} applies to streaming: add --stream")
    if not audio:
        raise UserError("no audio given: python transcribe.py --checkpoint CKPT AUDIO...")
    from src.context import setup_context
    from src.features import AudioError
    from src.progress import progress
    from src.transcription import Transcriber, audio_inputs, check_chunk_seconds
    check_chunk_seconds(cfg.transcribe.chunk_seconds)
    paths = audio_inputs([os.path.abspath(a) for a in audio])
    if not paths:
        raise UserError(f"no audio file found in {', '.join(audio)}")
    writer = Writer(cfg.transcribe, paths)
    setup_context(cfg)
    transcriber = Transcriber(load_network(cfg), cfg)
    failed = 0
    bar = progress(total=len(paths), desc="transcribe", unit="file", disable=len(paths) <= 3)
    try:
        with writer:
            for path in paths:
                try:
                    writer.result(transcriber.transcribe(path))
                except AudioError as err:
                    print(f"transcribe.py: skipped: {err}", file=sys.stderr)
                    writer.skipped(path, str(err))
                    failed += 1
                bar.update(1)
    finally:
        bar.close()
        transcriber.close()
    if cfg.transcribe.output:
        print(f"transcripts: {cfg.transcribe.output}", file=sys.stderr)
    if failed:
        print(f"transcribe.py: {failed} of {len(paths)} files could not be read", file=sys.stderr)
        return 1
    return 0


# Streaming: --stream (files in pieces, as a live source would) and --microphone.

PORTAUDIO = ("pip install sounddevice (Debian/Ubuntu: also apt-get install libportaudio2; "
             "macOS: brew install portaudio)")


def check_stream_options(t, audio):
    """UserError for what streaming cannot do, before any work."""
    if t.microphone and audio:
        raise UserError(f"--microphone transcribes the input device, not files ({audio[0]}): "
                        "use --stream for files")
    if not t.microphone and not audio:
        raise UserError("no audio given: python transcribe.py --checkpoint CKPT --stream "
                        "AUDIO... (or --microphone)")
    if t.mindir:
        raise UserError("streaming runs a checkpoint (--checkpoint CKPT) or a streaming ONNX "
                        "export (--onnx FILE.onnx), not an offline MindIR")
    if t.format not in ("text", "json"):
        raise UserError(f"--format={t.format}: streaming writes text or json (subtitles: "
                        "without --stream)")
    if t.partials and t.format != "json":
        raise UserError("transcribe.partials writes the partial events as JSON: add "
                        "--format=json (a terminal shows them in place in the text format)")
    if t.realtime and t.microphone:
        raise UserError("transcribe.realtime paces files (--stream): the microphone is live")


class EventWriter(Writer):
    """The streaming engine's events to stdout or transcribe.output: in the text format on a
    terminal the partial text updating in place and each final on its own line with its
    times; elsewhere one line per final (`PATH<TAB>TEXT` for several sources), or JSON lines
    (partial events too with transcribe.partials)."""

    def __init__(self, t, paths):
        super().__init__(t, paths)
        self.partials, self.terminal, self.shown = t.partials, False, False

    def __enter__(self):
        super().__enter__()
        self.terminal = self.format == "text" and self.out.isatty()
        return self

    def __exit__(self, *exc):
        self.clear()
        super().__exit__(*exc)

    def events(self, path, events, duration=None):
        """Write `events` of the source `path` (None: the microphone); times clipped to the
        file's `duration` (its last output frame can reach past its end)."""
        from src.word_times import clip_event
        for event in events:
            if duration is not None:
                event = clip_event(event, duration)
            final = event["event"] == "final"
            if self.format == "json":
                if final or self.partials:
                    self._line(json.dumps({"event": event["event"], "path": path,
                                           **{k: v for k, v in event.items() if k != "event"}}))
                continue
            prefix = f"{path}\t" if self.named else ""
            if self.terminal and not final:  # the file's name only: a line that fits
                self._show((f"{os.path.basename(path)}: " if self.named else "") + event["text"])
            elif self.terminal:
                self.clear()
                self._line(f"{prefix}[{event['start']:.2f}-{event['end']:.2f}] {event['text']}")
            elif final and event["text"]:
                self._line(prefix + event["text"])

    def _show(self, text):
        """`text` in place of the terminal's current line (its end when too long: no wrap)."""
        import shutil
        width = max(shutil.get_terminal_size().columns - 1, 10)
        if len(text) > width:
            text = "..." + text[len(text) - width + 3:]
        self.out.write(f"\r\x1b[K{text}")
        self.out.flush()
        self.shown = True

    def clear(self):
        """Erase the partial text shown on the terminal, if any."""
        if self.shown:
            self.out.write("\r\x1b[K")
            self.out.flush()
            self.shown = False


class CtrlC:
    """While active (in the main thread), the first Ctrl-C (or SIGTERM) only sets `pressed`:
    the stream ends after the piece in hand and its last final is flushed; a second one
    interrupts at once.

    SIGTERM too, because each MindSpore graph run installs its own SIGINT handler (its
    SignalGuard; not restored), which turns Ctrl-C into kill(getpid(), SIGTERM): a Ctrl-C
    during or after a network step arrives as SIGTERM."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self):
        self.pressed, self.previous = False, {}

    def __enter__(self):
        import signal
        import threading
        if threading.current_thread() is threading.main_thread():
            for name in self.SIGNALS:
                number = getattr(signal, name)
                self.previous[number] = signal.signal(number, self._handler)
        return self

    def _handler(self, signum, frame):
        self.pressed = True
        self._restore()  # the next one acts as it would without this

    def _restore(self):
        import signal
        for number, handler in self.previous.items():
            signal.signal(number, signal.SIG_DFL if handler is None else handler)
        self.previous = {}

    def __exit__(self, *exc):
        self._restore()

    def __call__(self):
        return self.pressed


def transcribe_live(engine, blocks, rate, show, stop=lambda: False):
    """Feed `blocks` (an iterable of int16 sample blocks (N,) or (N, channels) at `rate` Hz,
    e.g. a microphone's) to `engine` (a StreamingTranscriber), show(events) as they come, until
    the blocks end, stop() is true or a KeyboardInterrupt comes while waiting for a block; then
    the end of the stream (engine.finish(): the last final, a new stream next). Returns
    whether it was stopped."""
    blocks, stopped = iter(blocks), False
    while not stopped:
        try:
            block = next(blocks)
        except StopIteration:
            break
        except KeyboardInterrupt:
            stopped = True
            break
        show(engine.accept(block, rate))
        stopped = stop()
    show(engine.finish())
    return stopped


def paced(blocks, seconds, clock=None, sleep=None):
    """`blocks` at real-time pace: block k no earlier than k x `seconds` after block 0."""
    import time
    clock, sleep = clock or time.monotonic, sleep or time.sleep
    start = None
    for k, block in enumerate(blocks):
        if start is None:
            start = clock()
        elif (wait := start + k * seconds - clock()) > 0:
            sleep(wait)
        yield block


def file_blocks(path, chunk_ms):
    """(rate, duration in seconds, iterator of int16 blocks (N, channels) of chunk_ms each) of
    an audio file. AudioError naming it when it is missing, empty or unreadable."""
    import soundfile as sf

    from src.features import READ_ERRORS, AudioError, audio_info, pcm16, read_error
    if not os.path.isfile(path):
        raise AudioError(f"audio file not found: {path}")
    frames, rate = audio_info(path)
    if frames == 0:
        raise AudioError(f"audio file {path} is empty")

    def blocks():
        try:
            with sf.SoundFile(path) as f:
                for block in f.blocks(blocksize=max(1, round(rate * chunk_ms / 1000)),
                                      dtype="float32", always_2d=True):
                    yield pcm16(block, path)
        except READ_ERRORS as err:
            raise read_error(path, err) from None
    return rate, frames / rate, blocks()


def import_sounddevice():
    """The sounddevice module (PortAudio), an optional dependency: UserError saying how to
    install it when it (or the PortAudio library) is missing."""
    try:
        import sounddevice
    except ImportError:
        raise UserError(f"--microphone needs the sounddevice package: {PORTAUDIO}") from None
    except OSError as err:  # the package is there, the PortAudio library is not
        raise UserError(f"--microphone needs the PortAudio library ({one_line(err)}): "
                        f"{PORTAUDIO}") from None
    return sounddevice


class Microphone:
    """The default input device (sounddevice), mono int16 at the model's rate if it takes it,
    else at its own (the engine resamples), in blocks of chunk_ms; UserError when there is none.

        with Microphone(16000, 160) as mic:
            for block in mic.blocks(stop): ...   # until stop(), then what was captured before
    """

    def __init__(self, sample_rate, chunk_ms):
        sd = self.sd = import_sounddevice()
        try:
            device = sd.query_devices(kind="input")
        except (sd.PortAudioError, ValueError) as err:
            raise UserError(f"--microphone: no audio input device ({one_line(err)}): connect "
                            "one or make one the system's default input") from None
        self.name = device["name"]
        try:
            sd.check_input_settings(channels=1, dtype="int16", samplerate=sample_rate)
            self.rate = sample_rate
        except (sd.PortAudioError, ValueError):
            self.rate = int(device["default_samplerate"])
        self.size = max(1, round(self.rate * chunk_ms / 1000))
        self.queue, self.stream = None, None
        self.overflows, self.most_queued = 0, 0  # how far the transcription fell behind

    def __enter__(self):
        import queue
        self.queue = queue.Queue()
        try:
            self.stream = self.sd.InputStream(samplerate=self.rate, blocksize=self.size,
                                              channels=1, dtype="int16", callback=self._callback)
            self.stream.start()
        except (self.sd.PortAudioError, ValueError) as err:
            raise UserError(f"--microphone: cannot open {self.name} ({one_line(err)})") from None
        return self

    def __exit__(self, *exc):
        self.stream.close()

    def _callback(self, indata, frames, time_info, status):
        if status:
            self.overflows += 1  # the engine fell behind the device: samples were lost
        self.queue.put(indata.copy())

    def blocks(self, stop):
        """The captured blocks (N, 1) as they come until stop(); then the device is stopped and
        what it captured before is given too."""
        import queue
        while not stop():
            self.most_queued = max(self.most_queued, self.queue.qsize())
            try:
                yield self.queue.get(timeout=0.1)
            except queue.Empty:
                continue
        self.stream.stop()
        while not self.queue.empty():
            yield self.queue.get_nowait()


def one_line(err):
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def run_stream(cfg, audio):
    """--stream / --microphone: the streaming engine's events as audio arrives. Exit status 0,
    1 when a file was skipped, 130 when Ctrl-C stopped files before their end."""
    t = cfg.transcribe
    check_stream_options(t, audio)
    microphone, paths = None, []
    if t.microphone:  # refused (no sounddevice, no device) before the model loads
        microphone = Microphone(cfg.features.sample_rate, cfg.stream.chunk_ms)
    else:
        from src.transcription import audio_inputs
        paths = audio_inputs([os.path.abspath(a) for a in audio])
        if not paths:
            raise UserError(f"no audio file found in {', '.join(audio)}")
    writer = EventWriter(t, paths)
    from src.streaming import StreamingTranscriber, chunk_frames
    chunk_frames(cfg)  # stream.chunk_ms: whole output frames, before the model loads
    if not t.onnx:  # an ONNX export runs on onnxruntime alone: MindSpore is never imported
        from src.context import setup_context
        setup_context(cfg)
    engine = StreamingTranscriber(load_network(cfg), cfg)  # refuses a model that cannot stream
    try:
        with CtrlC() as stop, writer:
            if microphone:
                return listen(engine, microphone, writer, stop)
            return stream_files(engine, paths, cfg, writer, stop)
    except KeyboardInterrupt:  # a second Ctrl-C: at once
        print("transcribe.py: interrupted", file=sys.stderr)
        return 130
    finally:
        if t.output:
            print(f"transcripts: {t.output}", file=sys.stderr)


def listen(engine, microphone, writer, stop):
    """The microphone's events until Ctrl-C (stop()), its last final flushed."""
    import numpy as np
    engine.accept(np.zeros(microphone.size, np.int16), microphone.rate)  # compiled before
    engine.finish()  # the device opens: its first blocks do not wait for that
    with microphone:
        print(f"transcribe.py: listening to {microphone.name} at {microphone.rate} Hz; Ctrl-C "
              "ends", file=sys.stderr)
        transcribe_live(engine, microphone.blocks(stop), microphone.rate,
                        lambda events: writer.events(None, events))  # the blocks end at stop()
    lag = microphone.most_queued * microphone.size / microphone.rate
    if microphone.overflows or lag > 1:
        print(f"transcribe.py: the transcription fell behind the microphone (by up to {lag:.1f} "
              f"s; {microphone.overflows} input overflows): a larger --chunk_ms runs fewer, "
              "longer steps", file=sys.stderr)
    return 0


def stream_files(engine, paths, cfg, writer, stop):
    """Each file through the engine in pieces of stream.chunk_ms (at real-time pace with
    transcribe.realtime); unreadable ones named and skipped; Ctrl-C ends the file in hand."""
    from src.features import AudioError
    failed = 0
    for done, path in enumerate(paths, 1):
        try:
            rate, duration, blocks = file_blocks(path, cfg.stream.chunk_ms)
            if cfg.transcribe.realtime:
                blocks = paced(blocks, cfg.stream.chunk_ms / 1000)
            stopped = transcribe_live(engine, blocks, rate,
                                      lambda events, p=path, d=duration: writer.events(p, events, d),
                                      stop)
        except AudioError as err:
            engine.finish()  # what was read of it is dropped: a new stream for the next
            writer.clear()
            print(f"transcribe.py: skipped: {err}", file=sys.stderr)
            writer.skipped(path, str(err))
            failed, stopped = failed + 1, stop()
        if stopped:
            writer.clear()
            print(f"transcribe.py: interrupted in {path}: {len(paths) - done} more of "
                  f"{len(paths)} files not transcribed", file=sys.stderr)
            return 130
    if failed:
        print(f"transcribe.py: {failed} of {len(paths)} files could not be read", file=sys.stderr)
        return 1
    return 0


BOOLEAN_WORDS = ("true", "false", "yes", "no", "on", "off")  # what YAML reads as a bool


def switches():
    """{name: whether it is a true/false key}: a function of the command-line names of the
    transcribe entry point, resolved as src.config does (full keys, unique leaf names)."""
    from src.config import DEFAULT_CONFIG, ConfigError, _flatten, _read_yaml, _resolve
    flat = _flatten(_read_yaml(DEFAULT_CONFIG))

    def is_switch(name):
        try:
            return isinstance(flat[_resolve(name.replace("-", "_"), flat, "transcribe")], bool)
        except (ConfigError, KeyError):
            return False
    return is_switch


def split_command_line(argv):
    """(options ["--key=value"], audio paths) of the command line; after `--` everything is
    audio, and -h/--help before it asks for the help alone. A bare true/false switch takes
    the next argument as its value only if that is true/false/yes/no/on/off: `--stream a.wav`
    is --stream=true and the file a.wav."""
    from src.config import split_arguments
    end = argv.index("--") if "--" in argv else len(argv)
    if {"-h", "--help"} & set(argv[:end]):
        return ["--help"], []
    options, is_switch = list(argv[:end]), None
    for i, arg in enumerate(options[:-1]):
        following = options[i + 1]
        if (arg.startswith("--") and len(arg) > 2 and "=" not in arg
                and not following.startswith("--") and following.lower() not in BOOLEAN_WORDS):
            is_switch = is_switch or switches()
            if is_switch(arg[2:]):
                options[i] = f"{arg}=true"
    pairs, audio = split_arguments(options)
    return [f"--{name}={value}" for name, value in pairs], audio + argv[end + 1:]


if __name__ == "__main__":
    options, audio_args = split_command_line(sys.argv[1:])
    sys.exit(main("transcribe", __doc__, lambda cfg: run(cfg, audio_args), options))
