"""serve.py's web application (aiohttp): the page and the API over the streaming engine.

    GET  /               the page (src/web/, everything served from here: no CDN)
    GET  /healthz        {"status": "ok", "model", "offline_model", "decoder", "decode_methods",
                         "streams": {"open", "limit"}, "limits"}
    WS   /v1/stream      text {"sample_rate": 16000, "format": "pcm_s16le" | "f32le"
                         [, "channels": 1, "partials": true, "decode": {"method", "beam_width"}]},
                         binary audio frames of any size, text {"event": "end"} -> the events of
                         transcribe.py --stream --format json ({"event": "partial" | "final",
                         "text", "start", "end"[, "words"]}), the last final, close 1000
    POST /v1/transcribe  an audio file, multipart (its first file) or the raw body
                         (?filename=NAME) -> transcribe.py --format json's object for it

Why aiohttp: HTTP, WebSocket, multipart and static files in one asyncio package (FastAPI needs
uvicorn, starlette and python-multipart for the same). Each stream's engine (src/streaming.py)
runs in a thread of its own, one message at a time, so the event loop only moves bytes; the
streams' chunk steps meet in one SharedStep (src/batching.py) that runs them as one batch.
A refused stream gets {"event": "error", "message"} and a close with a code and that reason
(src/stream_protocol.py); a refused upload a JSON {"error"} with 400 or 413. Every other
client is served on. One log line per stream and per upload, never the audio.
"""
import asyncio
import itertools
import json
import os
import re
import signal
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

from aiohttp import WSMsgType, web
from aiohttp.http_exceptions import HttpProcessingError

from src import stream_protocol as protocol
from src.errors import UserError
from src.serve_models import log
from src.stream_protocol import PcmDecoder, Refusal, parse_start

WEB = os.path.join(os.path.dirname(os.path.abspath(__file__)), "web")
OVERSIZE = 4  # aiohttp cuts a WebSocket message over this x max_message_kb unread (close 1009)
CHUNK = 1 << 16  # upload bytes read at a time
UPLOADS = 4  # uploads in progress or waiting (each on disk); more get 503
GOING_AWAY = 1001  # the server stops: its streams are closed with this code


class ClientGone(Exception):
    """The client closed or dropped the connection."""


class StreamLog:
    """What one stream's log line says."""

    def __init__(self, number, peer):
        self.number, self.peer, self.started = number, peer, time.monotonic()
        self.audio = self.processing = 0.0
        self.finals = self.characters = 0
        self.outcome = "no start message"

    def line(self):
        return (f"stream {self.number} ({self.peer}): {self.audio:.2f} s audio, "
                f"{self.processing:.2f} s processing, {time.monotonic() - self.started:.2f} s "
                f"open, {self.finals} finals, {self.characters} characters; {self.outcome}")


class Server:
    """The application over ServedModels (src/serve_models.py) with cfg.serve's limits."""

    def __init__(self, models, serve_cfg):
        self.models, self.limits = models, serve_cfg
        self.open_streams, self.numbers, self.sockets = 0, itertools.count(1), set()
        self.uploads, self.stopping = 0, False
        self.stream_threads = ThreadPoolExecutor(serve_cfg.max_streams, "stream")
        self.upload_thread = ThreadPoolExecutor(1, "upload")  # uploads one at a time

    def app(self):
        app = web.Application()
        app.add_routes([web.get("/", self.page), web.get("/healthz", self.health),
                        web.get("/v1/stream", self.stream),
                        web.post("/v1/transcribe", self.transcribe),
                        web.static("/static", WEB)])
        app.on_shutdown.append(self._close_streams)
        app.on_cleanup.append(self._close)
        return app

    async def _close_streams(self, app):
        """Ctrl-C / SIGTERM: every open stream is told and closed (1001), not cut."""
        self.stopping = True
        for ws in list(self.sockets):
            await _refuse(ws, Refusal("the server is stopping", GOING_AWAY))

    async def _close(self, app):
        self.stream_threads.shutdown(wait=False, cancel_futures=True)
        self.upload_thread.shutdown(wait=False, cancel_futures=True)
        self.models.close()

    async def page(self, request):
        return web.FileResponse(os.path.join(WEB, "index.html"))

    async def health(self, request):
        limits = {k: self.limits[k] for k in ("max_streams", "max_batch", "max_upload_mb",
                                              "max_stream_seconds", "idle_timeout",
                                              "max_message_kb")}
        return web.json_response({"status": "ok", **self.models.health(),
                                  "streams": {"open": self.open_streams,
                                              "limit": self.limits.max_streams},
                                  "limits": limits})

    # WS /v1/stream

    async def stream(self, request):
        ws = web.WebSocketResponse(max_msg_size=OVERSIZE * self._message_bytes())
        await ws.prepare(request)
        record = StreamLog(next(self.numbers), request.remote)
        self.sockets.add(ws)
        try:
            if self.open_streams >= self.limits.max_streams:
                raise Refusal(f"the server is busy: {self.limits.max_streams} streams at once "
                              "(serve.max_streams); try again later", protocol.TRY_LATER)
            self.open_streams += 1
            try:
                await self._serve_stream(ws, record)
            finally:
                self.open_streams -= 1
        except Refusal as refusal:
            record.outcome = f"refused ({refusal.code}): {refusal}"
            await _refuse(ws, refusal)
        except ClientGone:
            record.outcome = ("closed (1001): the server is stopping" if self.stopping else
                              f"client left (close code {ws.close_code})")
        except asyncio.CancelledError:  # the server stops
            record.outcome = "closed: the server is stopping"
            log(record.line())
            raise
        except Exception as err:  # a bug: that client is told, the others are served on
            record.outcome = f"server error: {type(err).__name__}: {err}"
            await _refuse(ws, Refusal(f"server error: {type(err).__name__}", protocol.SERVER_ERROR))
            log(record.line())
            raise
        finally:
            self.sockets.discard(ws)
        log(record.line())
        return ws

    async def _serve_stream(self, ws, record):
        settings = parse_start(await self._text(ws, "start"), self.models.decoders,
                               self.models.cfg.decode.beam_width)
        engine, pcm = self.models.engine(settings.decoder), PcmDecoder(settings.format,
                                                                       settings.channels)
        rate, longest = settings.sample_rate, self.limits.max_stream_seconds
        while True:
            try:
                message = await self._receive(ws)
            except Refusal as refusal:
                if refusal.code == protocol.POLICY:  # idle: what was said still gets its final
                    await self._finish(ws, record, settings, engine)
                raise
            if message.type == WSMsgType.TEXT:
                _end_message(message.data)
                break
            samples = pcm(message.data)
            events = await self._run(record, engine.accept, samples, rate)
            record.audio += len(samples) / rate  # refused samples (NaN) are not counted
            await self._send(ws, record, settings, events)
            if record.audio > longest:
                await self._finish(ws, record, settings, engine)
                raise Refusal(f"the stream reached {longest:g} s of audio (serve."
                              "max_stream_seconds): it is ended, its last final sent", protocol.POLICY)
        await self._finish(ws, record, settings, engine)
        record.outcome = "ended (1000)"
        await ws.close(code=protocol.NORMAL, message=b"end of stream")

    async def _finish(self, ws, record, settings, engine):
        from src.word_times import clip_event
        events = await self._run(record, engine.finish)
        await self._send(ws, record, settings, [clip_event(e, record.audio) for e in events])

    async def _run(self, record, function, *args):
        """function(*args) in a stream thread, its time counted; a UserError (NaN samples, a
        rate that changed) refuses the stream."""
        started = time.monotonic()
        try:
            return await asyncio.get_running_loop().run_in_executor(self.stream_threads,
                                                                    function, *args)
        except UserError as err:
            raise Refusal(str(err), protocol.INVALID_DATA) from None
        finally:
            record.processing += time.monotonic() - started

    async def _send(self, ws, record, settings, events):
        for event in events:
            if event["event"] == "final":
                record.finals += 1
                record.characters += len(event["text"])
            elif not settings.partials:
                continue
            try:
                await ws.send_str(json.dumps(event))
            except ConnectionError:
                raise ClientGone() from None

    def _message_bytes(self):
        return int(self.limits.max_message_kb * 1024)

    async def _receive(self, ws):
        """The next text or binary message; Refusal when the client idles or one is too big,
        ClientGone when it left."""
        try:
            message = await ws.receive(timeout=self.limits.idle_timeout)
        except asyncio.TimeoutError:
            raise Refusal(f"no message for {self.limits.idle_timeout:g} s (serve.idle_timeout): "
                          "the stream is closed", protocol.POLICY) from None
        if message.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED,
                             WSMsgType.ERROR):
            raise ClientGone()
        if len(message.data) > self._message_bytes():
            raise Refusal(f"a message of {len(message.data)} bytes is over serve.max_message_kb="
                          f"{self.limits.max_message_kb}: send audio in smaller frames", protocol.TOO_BIG)
        return message

    async def _text(self, ws, what):
        message = await self._receive(ws)
        if message.type != WSMsgType.TEXT:
            raise Refusal(f"the {what} message comes first, as JSON text: {{\"sample_rate\": "
                          "16000, \"format\": \"pcm_s16le\"}; binary audio only after it")
        return message.data

    # POST /v1/transcribe

    async def transcribe(self, request):
        upload = {"name": request.query.get("filename", "upload"), "started": time.monotonic()}
        if self.uploads >= UPLOADS:
            return _refused_upload(upload, UploadRefusal(
                503, f"the server is busy: {UPLOADS} uploads in progress or waiting; try "
                     "again later"))
        self.uploads += 1
        try:
            return await self._transcribe(request, upload)
        except ConnectionError:  # the client left while sending
            log(f"upload {upload['name']!r}: client left before its end")
            return web.Response(status=400)
        finally:
            self.uploads -= 1

    async def _transcribe(self, request, upload):
        try:
            path = await self._upload(request, upload)
            try:
                result = await asyncio.get_running_loop().run_in_executor(
                    self.upload_thread, self.models.transcribe_file, path, upload["name"])
            except UserError as err:  # not audio, empty, NaN: named in one line
                raise UploadRefusal(400, str(err)) from None
            finally:
                os.unlink(path)
        except UploadRefusal as refusal:
            return _refused_upload(upload, refusal)
        name, started = upload["name"], upload["started"]
        log(f"upload {name!r}: {result['duration']:.2f} s audio, "
            f"{time.monotonic() - started:.2f} s processing, {len(result['text'])} characters")
        return web.json_response(result)

    async def _upload(self, request, upload):
        """A temporary file holding the upload (the first file of a multipart body, or the
        raw body); upload["name"] its name. UploadRefusal for what cannot be transcribed."""
        limit = int(self.limits.max_upload_mb * 1024 * 1024)
        if (request.content_length or 0) > limit:
            raise UploadRefusal(413, _too_large(request.content_length, self.limits))
        read = request.content.read
        if request.content_type.startswith("multipart/"):
            try:
                part = await _first_file(await request.multipart())
            except (ValueError, AttributeError, AssertionError, HttpProcessingError) as err:
                raise UploadRefusal(400, "the multipart body cannot be read: "
                                    f"{_one_line(err)}") from None
            upload["name"], read = part.filename or "upload", part.read_chunk
        # the temporary file's extension (libsndfile may use it), of safe characters only
        suffix = os.path.splitext(os.path.basename(upload["name"]))[1]
        fd, path = tempfile.mkstemp(prefix="serve-", suffix=re.sub(r"[^A-Za-z0-9.]", "",
                                                                   suffix)[:10])
        try:
            size = await _copy(read, fd, limit, self.limits)
        except BaseException:
            os.unlink(path)
            raise
        if size == 0:
            os.unlink(path)
            raise UploadRefusal(400, f"{upload['name']}: the upload is empty")
        return path


class UploadRefusal(Exception):
    def __init__(self, status, message):
        super().__init__(message)
        self.status = status


def _too_large(size, limits):
    return (f"the upload is larger than serve.max_upload_mb={limits.max_upload_mb:g} MB"
            + (f" ({size / 2 ** 20:.1f} MB)" if size else ""))


async def _first_file(reader):
    async for part in reader:
        if part.filename is not None or part.name == "file":
            return part
    raise UploadRefusal(400, "the multipart body holds no file (a part named \"file\")")


def _refused_upload(upload, refusal):
    log(f"upload {upload['name']!r}: refused ({refusal.status}): {refusal}")
    return web.json_response({"error": str(refusal)}, status=refusal.status)


def _one_line(err):
    return " ".join(str(err).split())


async def _copy(read, fd, limit, limits):
    """read(CHUNK) until b"" into the file descriptor `fd` (closed after) -> bytes copied;
    UploadRefusal 413 past `limit`, 408 when the client sends nothing for serve.idle_timeout
    (a stalled upload would hold one of the UPLOADS places for ever), 400 for a body that
    breaks the multipart format."""
    size = 0
    with os.fdopen(fd, "wb") as f:
        while True:
            try:
                chunk = await asyncio.wait_for(read(CHUNK), limits.idle_timeout)
            except asyncio.TimeoutError:
                raise UploadRefusal(408, f"no data for {limits.idle_timeout:g} s "
                                         "(serve.idle_timeout): the upload is dropped") from None
            except (ValueError, HttpProcessingError) as err:
                raise UploadRefusal(400, f"the body cannot be read: {_one_line(err)}") from None
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise UploadRefusal(413, _too_large(None, limits))
            f.write(chunk)
    return size


def _end_message(text):
    """A text message after the start: {"event": "end"}, else Refusal."""
    try:
        message = json.loads(text)
    except (ValueError, RecursionError):
        message = None
    if message != {"event": "end"}:
        raise Refusal(f"unexpected message {text[:80]!r}: after the start message send binary "
                      "audio, then {\"event\": \"end\"}")


async def _refuse(ws, refusal):
    """Tell the client why, then close with the refusal's code (its reason cut to the 123 bytes
    a close frame holds)."""
    if ws.closed:
        return
    try:
        await ws.send_str(json.dumps({"event": "error", "message": str(refusal)}))
        await ws.close(code=refusal.code, message=str(refusal).encode()[:123])
    except ConnectionError:
        pass


def serve(models, cfg):
    """Serve until Ctrl-C / SIGTERM on cfg.serve.host:port (port 0: a free one; the URL is
    printed either way)."""
    server = Server(models, cfg.serve)
    runner = web.AppRunner(server.app(), access_log=None)

    async def main():
        stop = asyncio.Event()
        for name in ("SIGINT", "SIGTERM"):  # MindSpore turns Ctrl-C into SIGTERM (its
            asyncio.get_running_loop().add_signal_handler(getattr(signal, name), stop.set)
        await runner.setup()  # graph runs' SignalGuard): both end the server cleanly
        try:
            site = web.TCPSite(runner, cfg.serve.host, cfg.serve.port, shutdown_timeout=5)
            await site.start()
        except OSError as err:
            raise UserError(f"cannot listen on {cfg.serve.host}:{cfg.serve.port}: "
                            f"{err.strerror or err}") from None
        host, port = runner.addresses[0][:2]
        log(f"serving on http://{_url_host(host)}:{port}/ (Ctrl-C stops)")
        try:
            await stop.wait()
        finally:
            await runner.cleanup()
        log("stopped")

    asyncio.run(main())


def _url_host(host):
    return f"[{host}]" if ":" in host else host
