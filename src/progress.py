"""Progress display: tqdm bars on a terminal, plain lines at a bounded rate everywhere else.

A bar's carriage-return redraws turn a log file into one huge line (and hide the lines logged
between them), so when the stream is not a terminal, progress is written as ordinary lines: at
most one every `interval` seconds, and one when the work ends.
"""
import sys
import time

from tqdm import tqdm

LOG_INTERVAL = 30.0  # seconds between progress lines in a log file


class LineProgress:
    """The part of tqdm's interface used here (iteration, update, set_postfix, close)."""

    def __init__(self, iterable=None, total=None, desc="", unit="it", initial=0, file=None,
                 interval=LOG_INTERVAL, clock=time.monotonic):
        self.iterable, self.total, self.desc, self.unit = iterable, total, desc, unit
        self.n = self.start = initial
        self.file, self.interval, self.clock = file or sys.stderr, interval, clock
        self.t0 = self.last = clock()
        self.postfix = ""
        self.closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def set_postfix(self, **values):
        self.postfix = ", ".join(f"{k}={v}" for k, v in values.items())

    def update(self, n=1):
        self.n += n
        now = self.clock()
        if now - self.last >= self.interval:
            self.last = now
            self._write(now)

    def _write(self, now):
        of = f"/{self.total}" if self.total else ""
        pct = f" ({100 * self.n / self.total:.0f}%)" if self.total else ""
        elapsed = now - self.t0
        rate = f", {(self.n - self.start) / elapsed:.2f} {self.unit}/s" if elapsed > 0 else ""
        extra = f", {self.postfix}" if self.postfix else ""
        print(f"{self.desc}: {self.n}{of} {self.unit}{pct}{rate}{extra}", file=self.file,
              flush=True)

    def close(self):
        if not self.closed:
            self.closed = True
            self._write(self.clock())


def progress(iterable=None, total=None, desc="", unit="it", initial=0, leave=True, file=None,
             disable=False):
    """A tqdm bar when `file` (default stderr) is a terminal, else a LineProgress."""
    stream = file or sys.stderr
    if disable:
        return tqdm(iterable, total=total, disable=True)
    if stream.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave,
                    file=stream, dynamic_ncols=True)
    return LineProgress(iterable, total, desc, unit, initial, stream)
