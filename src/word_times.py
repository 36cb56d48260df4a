"""Word times and confidences of decoded CTC output (numpy only: no framework import, so the
ONNX streaming engine, src/streaming_onnx.py, runs without MindSpore).

The same functions as src/transcription.py's, which imports MindSpore (src/inference.py) at
its top: that module can import them from here instead.
"""
import math

import numpy as np


def word_confidence(probs, start, end, blank, space):
    """Mean probability of the characters the best path emits in frames [start, end) of one
    utterance's log-probabilities (T', C) (repeats of the previous frame's label are not new
    emissions); without any there (a word only a beam found), the mean best non-blank
    probability over the span."""
    best = probs.argmax(axis=1)  # (T',)
    frames = [t for t in range(start, end) if best[t] not in (blank, space)
              and (t == 0 or best[t] != best[t - 1])]
    if frames:
        return float(np.exp(probs[frames, best[frames]]).mean())
    span = np.delete(probs[start:max(end, start + 1)], blank, axis=1)  # (frames, C - 1)
    return float(np.exp(span.max(axis=1)).mean())


def timed_words(words, probs, labels, frame_seconds, offset=0.0, duration=math.inf):
    """[{"word", "start", "end", "confidence"}] of decoded words [(word, start frame, end
    frame)] of one utterance's log-probabilities (T', C): times in seconds (offset + frames x
    frame_seconds, end after the word's last character frame), at most `duration` (the last
    output frame can reach past the end of the audio)."""
    blank, space = len(labels) - 1, labels.index(" ")
    return [{"word": word,
             "start": round(min(offset + start * frame_seconds, duration), 3),
             "end": round(min(offset + end * frame_seconds, duration), 3),
             "confidence": round(word_confidence(probs, start, end, blank, space), 4)}
            for word, start, end in words]


def clip_event(event, duration):
    """A streaming event with its times and its words' times at most `duration` seconds (the
    last output frame of a stream can reach past the end of its audio)."""
    def clip(item):
        return {**item, "start": round(min(item["start"], duration), 3),
                "end": round(min(item["end"], duration), 3)}
    event = clip(event)
    if "words" in event:
        event["words"] = [clip(w) for w in event["words"]]
    return event
