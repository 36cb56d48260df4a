"""The messages of serve.py's WS /v1/stream, checked: the start message and the binary audio.

    settings = parse_start(text, decoders, beam_width)   # Refusal (one line) when it is wrong
    pcm = PcmDecoder(settings.format, settings.channels)
    samples = pcm(frame_bytes)                            # (N, channels) int16 or float32

A stream is refused with one {"event": "error", "message"} and a WebSocket close whose code
says what kind of refusal it is (Refusal.code; the reason repeats the message).
"""
import copy
import json
import math
from dataclasses import dataclass

import numpy as np

from src.errors import UserError

# WebSocket close codes (RFC 6455 section 7.4.1)
NORMAL, UNSUPPORTED, INVALID_DATA, POLICY, TOO_BIG, SERVER_ERROR, TRY_LATER = (
    1000, 1003, 1007, 1008, 1009, 1011, 1013)
FORMATS = {"pcm_s16le": "<i2", "f32le": "<f4"}  # format -> little-endian sample type
RATES = (1000, 384000)  # Hz: what a stream may be sent at (resampled to the model's)
MAX_CHANNELS = 8
START_KEYS = ("sample_rate", "format", "channels", "partials", "decode")
DECODE_KEYS = ("method", "beam_width")  # what a stream may change of the server's decoder


class Refusal(UserError):
    """A stream the server will not go on with: `message` to the client, then close `code`."""

    def __init__(self, message, code=UNSUPPORTED):
        super().__init__(message)
        self.code = code


@dataclass
class StreamSettings:
    sample_rate: int
    format: str
    channels: int
    partials: bool
    decoder: object  # the finals' decoder (src/decoder.py)


def parse_start(text, decoders, beam_width):
    """The start message (JSON text) -> StreamSettings. decoders: {method: decoder} a stream
    may ask for, the server's default first; beam_width: the most a stream may ask for."""
    try:
        start = json.loads(text)
    except (ValueError, RecursionError) as err:  # RecursionError: a deeply nested array
        raise Refusal(f"the start message is not JSON ({err}): send "
                      '{"sample_rate": 16000, "format": "pcm_s16le"} first') from None
    if not isinstance(start, dict):
        raise Refusal('the start message must be a JSON object: {"sample_rate": 16000, '
                      '"format": "pcm_s16le"}')
    unknown = sorted(set(start) - set(START_KEYS))
    if unknown:
        raise Refusal(f"unknown start message fields {unknown}: the fields are "
                      f"{', '.join(START_KEYS)}")
    fmt = start.get("format", "pcm_s16le")
    if not isinstance(fmt, str) or fmt not in FORMATS:
        raise Refusal(f"format {fmt!r} is not one of {', '.join(FORMATS)}")
    partials = start.get("partials", True)
    if not isinstance(partials, bool):
        raise Refusal(f"partials must be true or false, not {partials!r}")
    return StreamSettings(_whole(start, "sample_rate", *RATES), fmt,
                          _whole(start, "channels", 1, MAX_CHANNELS, default=1), partials,
                          _decoder(start.get("decode", {}), decoders, beam_width))


def _whole(start, key, low, high, default=None):
    """start[key] as an int in [low, high] (a float with no fraction is taken)."""
    value = start.get(key, default)
    ok = (isinstance(value, (int, float)) and not isinstance(value, bool)
          and math.isfinite(value) and value == int(value) and low <= value <= high)
    if not ok:
        raise Refusal(f"{key} must be a whole number from {low} to {high}, not {value!r}")
    return int(value)


def _decoder(decode, decoders, beam_width):
    """The decoder a start message's "decode" object asks for (a copy when it changes the
    beam width: the server's decoders, and an LM they hold, are shared by all streams)."""
    if not isinstance(decode, dict):
        raise Refusal(f"decode must be a JSON object such as {{\"method\": \"beam\"}}, not "
                      f"{decode!r}")
    unknown = sorted(set(decode) - set(DECODE_KEYS))
    if unknown:
        raise Refusal(f"decode settings {unknown} cannot be chosen per stream; a stream may set "
                      f"{', '.join(DECODE_KEYS)}")
    method = decode.get("method", next(iter(decoders)))
    if not isinstance(method, str) or method not in decoders:
        raise Refusal(f"decode method {method!r} is not allowed here: one of "
                      f"{', '.join(decoders)} (serve.decode_methods)")
    decoder = decoders[method]
    if "beam_width" in decode:
        if not hasattr(decoder, "beam_width"):
            raise Refusal(f"beam_width applies to beam search, not {method}")
        decoder = copy.copy(decoder)
        decoder.beam_width = _whole(decode, "beam_width", 1, beam_width)
    return decoder


class PcmDecoder:
    """Binary audio frames of any size -> samples (N, channels), int16 (pcm_s16le) or float32
    (f32le, -1 to 1 as Web Audio gives them); a sample cut between two frames is completed by
    the next frame (what is left of one at the end of the stream is dropped)."""

    def __init__(self, fmt, channels):
        self.dtype, self.channels = np.dtype(FORMATS[fmt]), channels
        self.frame_bytes, self.rest = self.dtype.itemsize * channels, b""

    def __call__(self, data):
        data = self.rest + bytes(data)
        whole = len(data) - len(data) % self.frame_bytes
        self.rest = data[whole:]
        return np.frombuffer(data[:whole], self.dtype).reshape(-1, self.channels)
