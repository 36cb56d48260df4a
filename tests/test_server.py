"""serve.py against transcribe.py: WebSocket streams (s16le, f32le, another rate, frames of any
size, a per-stream decoder) give the finals of transcribe.py --stream for the same file; uploads
give transcribe.py --format json's object; concurrent real-time streams are batched and all get
their finals; 200 sessions leave memory where it was; and every kind of bad input or client is
refused to that client alone, the next one served. All traffic on 127.0.0.1."""
import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
import soundfile as sf

from conftest import REPO, run

aiohttp = pytest.importorskip("aiohttp")

MODEL = os.path.join(REPO, "tests", "assets", "streaming_sample.ckpt")
SUSTAINED = 16  # real-time streams one server kept up with, quick-start size (docs/serving.md)
LIMITS = [f"--max_streams={SUSTAINED}", f"--max_batch={SUSTAINED}", "--max_upload_mb=1",
          "--idle_timeout=3", "--max_message_kb=64", "--max_stream_seconds=30"]
PIECE = 1920  # samples: 120 ms at 16 kHz, what a live client sends


class Server:
    """serve.py in a subprocess on 127.0.0.1 and a free port; its stderr kept (self.log)."""

    def __init__(self, *args, ready_seconds=180, command=(sys.executable, "serve.py"),
                 cwd=REPO):
        program = [command[0], os.path.join(REPO, command[1])]
        self.proc = subprocess.Popen([*program, *map(str, args), "--port=0"], cwd=cwd,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.lines, self.ready = [], threading.Event()
        threading.Thread(target=self._drain, daemon=True).start()
        if not self.ready.wait(ready_seconds):
            self.stop()
            raise AssertionError("serve.py did not start:\n" + "".join(self.lines))
        self.url = re.search(r"serving on (http://\S+)/", "".join(self.lines)).group(1)
        self.ws = self.url.replace("http://", "ws://") + "/v1/stream"

    def _drain(self):
        for line in self.proc.stderr:
            self.lines.append(line)
            if "serving on" in line:
                self.ready.set()

    @property
    def log(self):
        return "".join(self.lines)

    def rss_kb(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"VmRSS:\s+(\d+)", f.read()).group(1))

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


@pytest.fixture(scope="module")
def clips(sample_data, tmp_path_factory):
    """Speech files: two single utterances and one of three with pauses (16 kHz), and the
    latter at 44.1 kHz."""
    from src.manifest import read_manifest
    folder = tmp_path_factory.mktemp("server_clips")
    paths = [e.audio for e in read_manifest(str(sample_data / "libri_test_clean_manifest.csv"))]
    waves = [sf.read(p, dtype="int16")[0] for p in paths[:3]]
    pause = np.zeros(8000, np.int16)
    clips = {"one": paths[0], "two": paths[1]}
    joined = np.concatenate([pause] + [x for w in waves for x in (w, pause)])
    clips["three"] = str(folder / "three.wav")
    sf.write(clips["three"], joined, 16000, subtype="PCM_16")
    import librosa
    resampled = librosa.resample(joined / 32768.0, orig_sr=16000, target_sr=44100)
    clips["three_44k"] = str(folder / "three_44k.wav")
    sf.write(clips["three_44k"], resampled, 44100, subtype="PCM_16")
    return clips


@pytest.fixture(scope="module")
def reference(clips):
    """{clip: the final events of transcribe.py --stream --format json} (path removed)."""
    names = list(clips)
    out = run([sys.executable, os.path.join(REPO, "transcribe.py"), f"--checkpoint={MODEL}",
               "--normalize=global", "--stream", "--format=json",
               *(clips[n] for n in names)]).stdout
    finals = {n: [] for n in names}
    by_path = {clips[n]: n for n in names}
    for line in out.splitlines():
        event = json.loads(line)
        finals[by_path[event.pop("path")]].append(event)
    return finals


@pytest.fixture(scope="module")
def server():
    srv = Server(f"--checkpoint={MODEL}", *LIMITS)
    yield srv
    assert srv.stop() == 0, srv.log
    assert "stopped" in srv.log


def pcm_pieces(path, sizes=(PIECE,), dtype="int16", scale=1.0):
    """The bytes of a file's samples in pieces cycling through `sizes` (in bytes if odd)."""
    data, rate = sf.read(path, dtype=dtype)
    raw = (data * scale).astype(data.dtype).tobytes() if scale != 1.0 else data.tobytes()
    pieces, at, k = [], 0, 0
    while at < len(raw):
        size = sizes[k % len(sizes)] * (1 if sizes[k % len(sizes)] % 2 else data.itemsize)
        pieces.append(raw[at:at + size])
        at, k = at + size, k + 1
    return rate, pieces


async def talk(url, start, pieces, end=True, pace=0.0, receive=True):
    """Open a stream, send `start` (a dict, or raw text/bytes), the pieces (every `pace`
    seconds), the end message -> (events, close code, close reason)."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(url, max_msg_size=0) as ws:
            if isinstance(start, dict):
                await ws.send_str(json.dumps(start))
            elif isinstance(start, bytes):
                await ws.send_bytes(start)
            elif start is not None:
                await ws.send_str(start)
            events, reason, began = [], None, time.monotonic()
            for k, piece in enumerate(pieces):
                if pace:
                    await asyncio.sleep(max(0.0, began + k * pace - time.monotonic()))
                await ws.send_bytes(piece)
                while reason is None and (message := await _poll(ws)) is not None:
                    if message.type != aiohttp.WSMsgType.TEXT:
                        reason = message.extra or ""
                        break
                    events.append(json.loads(message.data))
                if reason is not None:
                    break
            if end and reason is None:
                await ws.send_str(json.dumps({"event": "end"}))
            if receive and reason is None:
                more, reason = await drain(ws)
                events += more
            return events, ws.close_code, reason


async def _poll(ws):
    """A message already waiting (None if none), without blocking the sender."""
    try:
        return await ws.receive(timeout=0.001)
    except asyncio.TimeoutError:
        return None


async def drain(ws):
    """(the JSON messages of `ws` until it closes, the reason of its close)."""
    events = []
    while True:
        message = await ws.receive()
        if message.type != aiohttp.WSMsgType.TEXT:
            return events, message.extra or "" if message.type == aiohttp.WSMsgType.CLOSE else ""
        events.append(json.loads(message.data))


async def messages(ws):
    return (await drain(ws))[0]


def finals(events):
    return [e for e in events if e["event"] == "final"]


def stream(server, path, **kw):
    rate, pieces = pcm_pieces(path)
    return asyncio.run(talk(server.ws, {"sample_rate": rate, "format": "pcm_s16le"}, pieces, **kw))


def test_health_names_the_model_decoder_and_limits(server):
    import urllib.request
    with urllib.request.urlopen(server.url + "/healthz", timeout=10) as r:
        health = json.load(r)
    assert health["status"] == "ok"
    assert health["model"] == {"source": "streaming_sample.ckpt", "backend": "mindspore",
                               "streaming": True, "hidden_size": 256, "num_layers": 3,
                               "lookahead": 2, "chunk_ms": 120, "sample_rate": 16000}
    assert health["offline_model"] is None and health["decoder"] == {"method": "greedy"}
    assert health["limits"]["max_streams"] == SUSTAINED
    assert health["streams"]["limit"] == SUSTAINED
    with urllib.request.urlopen(server.url + "/", timeout=10) as r:
        page = r.read().decode()
    assert "/static/app.js" in page and "cdn" not in page.lower()


def test_a_stream_gives_the_finals_of_transcribe_stream(server, clips, reference):
    events, code, _ = stream(server, clips["three"])
    assert code == 1000
    assert finals(events) == reference["three"]
    assert len(reference["three"]) >= 2  # the pauses end segments
    partials = [e for e in events if e["event"] == "partial"]
    assert partials and all(set(e) == {"event", "text", "start", "end"} for e in partials)


def test_any_frame_size_f32le_and_another_rate_give_the_same_finals(server, clips, reference):
    rate, odd = pcm_pieces(clips["three"], sizes=(333, 1, 4097, 20))  # odd byte counts too
    events, code, _ = asyncio.run(talk(server.ws, {"sample_rate": rate, "format": "pcm_s16le"},
                                       odd))
    assert code == 1000 and finals(events) == reference["three"]
    # floats scaled as the engine reads int16 (/ 32767) are the same samples
    data, rate = sf.read(clips["one"], dtype="int16")
    floats = (data / 32767.0).astype("<f4").tobytes()
    pieces = [floats[i:i + 4 * PIECE] for i in range(0, len(floats), 4 * PIECE)]
    events, code, _ = asyncio.run(talk(server.ws, {"sample_rate": rate, "format": "f32le"},
                                       pieces))
    assert code == 1000 and finals(events) == reference["one"]
    events, code, _ = stream(server, clips["three_44k"])  # resampled by the server
    assert code == 1000 and finals(events) == reference["three_44k"]


def test_a_stream_may_choose_beam_search_and_nothing_outside_the_allowed_set(server, clips):
    data, rate = sf.read(clips["three"], dtype="int16")
    out = run([sys.executable, os.path.join(REPO, "transcribe.py"), f"--checkpoint={MODEL}",
               "--normalize=global", "--stream", "--format=json", "--decode.method=beam",
               "--beam_width=8", clips["three"]]).stdout
    want = [{k: v for k, v in json.loads(line).items() if k != "path"}
            for line in out.splitlines()]
    _, pieces = pcm_pieces(clips["three"])
    start = {"sample_rate": rate, "format": "pcm_s16le",
             "decode": {"method": "beam", "beam_width": 8}}
    events, code, _ = asyncio.run(talk(server.ws, start, pieces))
    assert code == 1000 and finals(events) == want
    for decode, words in (({"method": "viterbi"}, "not allowed"),
                          ({"lm_path": "/etc/passwd"}, "cannot be chosen per stream"),
                          ({"method": "beam", "beam_width": 100000}, "beam_width")):
        events, code, reason = asyncio.run(talk(server.ws, {**start, "decode": decode}, []))
        assert code == 1003 and words in events[-1]["message"] and events[-1]["event"] == "error"
        assert reason and words in reason


def test_uploads_give_transcribe_json_multipart_or_raw(server, clips, reference):
    import urllib.request
    with open(clips["three"], "rb") as f:
        body = f.read()
    request = urllib.request.Request(server.url + "/v1/transcribe?filename=talk.wav", data=body,
                                     headers={"Content-Type": "audio/wav"})
    with urllib.request.urlopen(request, timeout=60) as r:
        raw = json.load(r)
    want = reference["three"]
    assert raw["path"] == "talk.wav" and raw["duration"] == round(len(body[44:]) / 2 / 16000, 3)
    assert raw["text"] == " ".join(e["text"] for e in want if e["text"])
    assert raw["words"] == [w for e in want for w in e["words"]]
    multipart = asyncio.run(_post_multipart(server.url, "x.wav", body))
    assert multipart[0] == 200 and {**multipart[1], "path": "talk.wav"} == raw


async def _post_multipart(url, name, body, field="file"):
    async with aiohttp.ClientSession() as session:
        form = aiohttp.FormData()
        form.add_field(field, body, filename=name, content_type="audio/wav")
        async with session.post(url + "/v1/transcribe", data=form) as r:
            return r.status, await r.json()


async def _post_raw(url, body):
    async with aiohttp.ClientSession() as session:
        async with session.post(url + "/v1/transcribe", data=body) as r:
            return r.status, await r.json()


def test_bad_uploads_are_refused_in_one_line_and_the_server_goes_on(server, clips, tmp_path):
    with open(clips["one"], "rb") as f:
        wav = f.read()
    cases = {"not audio": (b"hello, this is not audio" * 50, 400, "cannot read audio"),
             "empty": (b"", 400, "empty"),
             "over the limit": (wav * 40, 413, "serve.max_upload_mb=1")}
    for what, (body, status, words) in cases.items():
        got_status, got = asyncio.run(_post_raw(server.url, body))
        assert (got_status, words in got["error"]) == (status, True), (what, got)
        assert "/tmp" not in got["error"]  # names the upload, not the server's files
    truncated = asyncio.run(_post_raw(server.url, wav[:len(wav) // 2 + 1]))  # header says more
    assert truncated[0] in (200, 400) and ("text" in truncated[1] or "error" in truncated[1])
    status, result = asyncio.run(_post_multipart(server.url, "ok.wav", wav))
    assert status == 200 and result["path"] == "ok.wav"


def test_refused_streams_get_an_error_event_and_a_close_reason(server, clips, reference):
    start = {"sample_rate": 16000, "format": "pcm_s16le"}
    nan = np.full(800, np.nan, "<f4").tobytes()
    cases = [  # (start message, pieces, close code, words of the message)
        (None, [b"\0\0" * 100], 1003, "start message comes first"),
        ("{not json", [], 1003, "not JSON"),
        ('["a list"]', [], 1003, "JSON object"),
        ({**start, "format": "mp3"}, [], 1003, "format 'mp3'"),
        ({**start, "sample_rate": 0}, [], 1003, "sample_rate"),
        ({**start, "sample_rate": -16000}, [], 1003, "sample_rate"),
        ({**start, "sample_rate": "fast"}, [], 1003, "sample_rate"),
        ({**start, "volume": 3}, [], 1003, "unknown start message fields"),
        ({**start, "format": ["pcm_s16le"]}, [], 1003, "format ['pcm_s16le']"),
        ({**start, "decode": {"method": ["beam"]}}, [], 1003, "not allowed"),
        ("[" * 20000 + "]" * 20000, [], 1003, "not JSON"),
        ({**start, "format": "f32le"}, [nan], 1007, "NaN"),
        (start, [b"\0" * (70 * 1024)], 1009, "serve.max_message_kb=64"),
    ]
    for first, pieces, code, words in cases:
        if first is None:
            events, got, reason = asyncio.run(talk(server.ws, pieces[0], [], end=False))
        else:
            events, got, reason = asyncio.run(talk(server.ws, first, pieces, end=False))
        assert got == code, (first, events)
        assert events[-1]["event"] == "error" and words in events[-1]["message"], events
        assert reason and words[:20] in reason, (first, reason, events)
    events, code, _ = asyncio.run(talk(server.ws, start, [], end=False, receive=False))
    events, code, _ = stream(server, clips["one"])  # served as before
    assert code == 1000 and finals(events) == reference["one"]
    assert "refused (1003)" in server.log and "refused (1007)" in server.log
    assert "Traceback" not in server.log


def test_stalled_broken_and_abandoned_uploads_are_dropped_and_logged(server, clips):
    """A client that stops sending its body (408 after serve.idle_timeout: it would hold an
    upload place for ever), a multipart header broken by a CR LF (400), a client that leaves
    mid-body (one log line): no traceback, and the next upload is served."""
    import socket
    with open(clips["one"], "rb") as f:
        wav = f.read()
    port = int(server.url.rsplit(":", 1)[1])

    def raw(request, wait):
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            sock.sendall(request)
            if not wait:
                return b""
            return sock.recv(65536)
    head = (f"POST /v1/transcribe?filename=stall.wav HTTP/1.1\r\nHost: x\r\n"
            f"Content-Length: {len(wav)}\r\n\r\n").encode()
    assert b" 408 " in raw(head + wav[:1000], wait=True).split(b"\r\n")[0]
    raw(head.replace(b"stall", b"gone") + wav[:1000], wait=False)  # closes mid-body
    body = (b'--XX\r\nContent-Disposition: form-data; name="file"; filename="a\r\nb.wav"'
            b'\r\n\r\nzz\r\n--XX--\r\n')
    broken = (f"POST /v1/transcribe HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; "
              f"boundary=XX\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body
    assert b" 400 " in raw(broken, wait=True).split(b"\r\n")[0]
    status, result = asyncio.run(_post_multipart(server.url, "after.wav", wav))
    assert status == 200 and result["path"] == "after.wav"
    deadline = time.monotonic() + 10
    while "'gone.wav': client left" not in server.log and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "'gone.wav': client left before its end" in server.log
    assert "'stall.wav': refused (408)" in server.log and "Traceback" not in server.log


def test_a_text_message_other_than_end_is_refused(server):
    start = {"sample_rate": 16000, "format": "pcm_s16le"}

    async def go():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(server.ws) as ws:
                await ws.send_str(json.dumps(start))
                await ws.send_str(json.dumps({"event": "pause"}))
                return await messages(ws), ws.close_code
    events, code = asyncio.run(go())
    assert code == 1003 and "unexpected message" in events[-1]["message"]


def test_idle_clients_and_streams_over_the_limit_are_closed_with_a_reason(server, clips,
                                                                           reference):
    async def go():
        async with aiohttp.ClientSession() as session:
            silent = [await session.ws_connect(server.ws) for _ in range(SUSTAINED)]  # the limit
            extra = await session.ws_connect(server.ws)
            refused = await messages(extra), extra.close_code
            started = time.monotonic()
            idle = [(await messages(ws), ws.close_code) for ws in silent]
            return refused, idle, time.monotonic() - started
    refused, idle, waited = asyncio.run(go())
    assert refused[1] == 1013 and "serve.max_streams" in refused[0][0]["message"]
    assert all(code == 1008 and "serve.idle_timeout" in events[0]["message"]
               for events, code in idle)
    assert waited < 3 + 5  # idle_timeout 3 s
    events, code, _ = stream(server, clips["two"], end=False)  # audio, then silence
    assert code == 1008 and "serve.idle_timeout" in events[-1]["message"]
    assert finals(events) == reference["two"]  # what was said still got its final
    events, code, _ = stream(server, clips["two"])
    assert code == 1000 and finals(events) == reference["two"]


def test_a_client_that_leaves_mid_stream_is_dropped_and_others_are_served(server, clips,
                                                                          reference):
    rate, pieces = pcm_pieces(clips["three"])

    async def leave():
        session = aiohttp.ClientSession()
        ws = await session.ws_connect(server.ws)
        await ws.send_str(json.dumps({"sample_rate": rate, "format": "pcm_s16le"}))
        for piece in pieces[:len(pieces) // 2]:
            await ws.send_bytes(piece)
        ws._response.connection.transport.abort()  # no close frame: the TCP connection drops
        await session.close()
    asyncio.run(leave())
    events, code, _ = stream(server, clips["three"])
    assert code == 1000 and finals(events) == reference["three"]
    deadline = time.monotonic() + 10
    while "client left" not in server.log and time.monotonic() < deadline:
        time.sleep(0.1)
    assert "client left" in server.log


def test_a_stream_or_upload_longer_than_the_limit_and_a_stop_with_streams_open(clips,
                                                                               reference):
    srv = Server(f"--checkpoint={MODEL}", "--max_stream_seconds=2", "--max_batch=1")
    rate, pieces = pcm_pieces(clips["three"])

    async def open_at_stop():
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(srv.ws) as ws:
                await ws.send_str(json.dumps({"sample_rate": rate, "format": "pcm_s16le"}))
                await ws.send_bytes(pieces[0])
                srv.proc.send_signal(signal.SIGTERM)
                return await drain(ws), ws.close_code
    try:
        events, code, reason = stream(srv, clips["three"], end=False)
        with open(clips["three"], "rb") as f:
            upload = asyncio.run(_post_raw(srv.url, f.read()))
        (stopped, why), stop_code = asyncio.run(open_at_stop())
    finally:
        assert srv.stop() == 0
    assert code == 1008 and "serve.max_stream_seconds" in events[-1]["message"]
    got = finals(events)
    assert got and got[0] == reference["three"][0]  # the first segment ends before 2 s
    assert upload[0] == 400 and "serve.max_stream_seconds=2" in upload[1]["error"]
    assert stop_code == 1001 and stopped[-1]["message"] == "the server is stopping"
    assert "the server is stopping" in why


def test_concurrent_real_time_streams_are_batched_and_all_get_their_finals(server, clips,
                                                                           reference):
    import urllib.request
    names = ["three", "one", "two", "three_44k"] * (SUSTAINED // 4)  # the sustained figure

    async def together():
        jobs = []
        for name in names:
            rate, pieces = pcm_pieces(clips[name])
            jobs.append(talk(server.ws, {"sample_rate": rate, "format": "pcm_s16le"}, pieces,
                             pace=PIECE / rate))
        return await asyncio.gather(*jobs)

    def steps():
        with urllib.request.urlopen(server.url + "/healthz", timeout=10) as r:
            return json.load(r)["chunk_steps"]
    before = steps()
    results = asyncio.run(together())
    after = steps()
    for name, (events, code, _) in zip(names, results):
        assert code == 1000 and finals(events) == reference[name], name
    ran, batches = after["run"] - before["run"], after["batches"] - before["batches"]
    assert ran > 0 and batches < ran  # steps of several streams ran as one batch


def test_200_sessions_leave_memory_where_it_was(server):
    piece = (np.random.default_rng(0).standard_normal(4000) * 3000).astype("<i2").tobytes()
    start = {"sample_rate": 16000, "format": "pcm_s16le"}

    async def sessions(count):
        for _ in range(count):
            events, code, _ = await talk(server.ws, start, [piece])
            assert code == 1000
    asyncio.run(sessions(30))  # allocator pools and caches reach their working size
    before = server.rss_kb()
    asyncio.run(sessions(200))
    growth = server.rss_kb() - before
    assert growth < 20 * 1024, f"RSS grew by {growth} kB over 200 sessions"


def test_serve_refuses_what_it_cannot_serve_in_one_line(tmp_path):
    cases = [([], "give exactly one of --checkpoint"),
             ([f"--checkpoint={MODEL}", "--onnx=x.onnx"], "give exactly one of --checkpoint"),
             ([f"--checkpoint={MODEL}", "--decode_methods=[greedy]", "--decode.method=beam"],
              "serve.decode_methods"),
             ([f"--checkpoint={MODEL}", "--max_streams=0"], "max_streams")]
    for args, words in cases:
        proc = run([sys.executable, os.path.join(REPO, "serve.py"), *args], ok=False)
        assert proc.returncode != 0 and words in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
    assert run([sys.executable, os.path.join(REPO, "serve.py"), "--help"]).returncode == 0


@pytest.fixture(scope="module")
def tiny(ms_context, sample_data, tmp_path_factory):
    """(folder, a tiny streaming model's ONNX export, a tiny bidirectional checkpoint)."""
    from test_stream_cli import SIZE, SPACE_BIAS, STREAMING, tiny_network

    from src.checkpoints import save_network
    from src.config import load_config
    from src.manifest import read_manifest
    folder = tmp_path_factory.mktemp("serve_tiny")
    corpus = [e.audio for e in read_manifest(str(sample_data / "libri_test_clean_manifest.csv"))]
    cfg = load_config(STREAMING)
    save_network(tiny_network(ms_context, cfg, corpus[:8], space_bias=SPACE_BIAS),
                 str(folder / "stream.ckpt"), cfg.features)
    other = load_config([*SIZE, "--lookahead=0"])
    save_network(tiny_network(ms_context, other, corpus[:8]), str(folder / "bidi.ckpt"),
                 other.features)
    run([sys.executable, os.path.join(REPO, "export.py"), f"--checkpoint={folder}/stream.ckpt",
         "--streaming=true", "--file_format=ONNX", f"--file_name={folder}/stream",
         *STREAMING])
    return folder, str(folder / "stream.onnx"), str(folder / "bidi.ckpt")


def test_onnx_streams_and_offline_uploads_match_transcribe(tiny, clips):
    folder, onnx, offline = tiny
    transcribe = [sys.executable, os.path.join(REPO, "transcribe.py"), "--format=json"]
    want_stream = [json.loads(line) for line in run(
        [*transcribe, f"--onnx={onnx}", "--stream", clips["three"]]).stdout.splitlines()]
    want_upload = json.loads(run([*transcribe, f"--checkpoint={offline}",
                                  clips["three"]]).stdout)
    srv = Server(onnx, f"--offline_checkpoint={offline}", command=("bash", "scripts/run_serve.sh"),
                 cwd=folder)  # the script, from another folder
    try:
        events, code, _ = stream(srv, clips["three"])
        with open(clips["three"], "rb") as f:
            status, got = asyncio.run(_post_multipart(srv.url, "three.wav", f.read()))
        import urllib.request
        with urllib.request.urlopen(srv.url + "/healthz", timeout=10) as r:
            health = json.load(r)
    finally:
        srv.proc.send_signal(signal.SIGINT)  # Ctrl-C stops it as cleanly as SIGTERM
        assert srv.proc.wait(30) == 0 and "stopped" in srv.log, srv.log
    assert code == 1000
    assert finals(events) == [{k: v for k, v in e.items() if k != "path"} for e in want_stream]
    assert status == 200 and got == {**want_upload, "path": "three.wav"}
    assert health["model"]["backend"] == "onnxruntime"
    assert health["offline_model"]["bidirectional"] is True


def test_a_model_that_cannot_stream_is_refused_in_one_line(tiny):
    _, _, offline = tiny
    proc = run([sys.executable, os.path.join(REPO, "serve.py"), f"--checkpoint={offline}"],
               ok=False)
    assert proc.returncode == 1 and "cannot stream" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_uploads_and_streams_at_once_share_mindspore_without_deadlock(tiny, clips):
    """MindSpore deadlocks when two threads run graphs at once: the offline model's passes run
    in the streams' runner thread, between their batches, and every answer is the one alone."""
    folder, _, offline = tiny
    names = ["one", "two", "three"]
    transcribe = [sys.executable, os.path.join(REPO, "transcribe.py"), "--format=json"]
    streamed = run([*transcribe, f"--checkpoint={folder}/stream.ckpt", "--normalize=global",
                    "--stream", *(clips[n] for n in names)]).stdout.splitlines()
    uploaded = run([*transcribe, f"--checkpoint={offline}",
                    *(clips[n] for n in names)]).stdout.splitlines()
    srv = Server(f"--checkpoint={folder}/stream.ckpt", f"--offline_checkpoint={offline}",
                 "--max_batch=2")

    async def together():
        jobs = []
        for name in names:
            rate, pieces = pcm_pieces(clips[name])
            jobs.append(talk(srv.ws, {"sample_rate": rate, "format": "pcm_s16le"}, pieces,
                             pace=0.02))
            with open(clips[name], "rb") as f:
                jobs.append(_post_multipart(srv.url, f"{name}.wav", f.read()))
        return await asyncio.wait_for(asyncio.gather(*jobs), 120)
    try:
        results = asyncio.run(together())
    finally:
        assert srv.stop() == 0
    for k, name in enumerate(names):
        want = [json.loads(line) for line in streamed if json.loads(line)["path"] == clips[name]]
        events, code, _ = results[2 * k]
        assert code == 1000
        assert finals(events) == [{key: v for key, v in e.items() if key != "path"} for e in want]
        status, got = results[2 * k + 1]
        assert status == 200 and got == {**json.loads(uploaded[k]), "path": f"{name}.wav"}
