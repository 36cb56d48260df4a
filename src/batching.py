"""Concurrent streams' chunk steps through the network together: throughput grows with load.

    shared = SharedStep(step, max_batch=16)       # step: a ChunkStep (src/streaming.py)
    engine = StreamingTranscriber(shared, cfg)    # one per stream, each driven by its own thread
    ...
    shared.close()

Each stream's engine calls the shared step as it would its own, from its own thread; the call
waits while one runner thread runs the steps asked for meanwhile as one batch
(ChunkStep.run_batch: a MindSpore StreamingStep stacks them, B rows in one graph run; a runtime
of batch 1 runs them one after another). A stream has at most one step in flight (its engine
waits for the result), so a batch holds one step of each of up to max_batch streams, and a
stream's steps keep their order. With one stream there is no waiting for others: a step runs as
soon as the runner is free.

MindSpore runs one graph at a time per process (graphs run from two threads at once deadlock;
measured with 2.10 on CPU), so other network work of the same process goes through the runner
too: call(function, *args) runs it there, between two batches of steps.
"""
import threading
from concurrent.futures import Future

import numpy as np

from src.streaming import ChunkStep


class SharedStep(ChunkStep):
    """A ChunkStep shared by streams in several threads; see the module's docstring.
    steps / batches: counts of what ran (their ratio is the mean batch size)."""

    def __init__(self, step, max_batch):
        super().__init__(step.info)
        self.step, self.max_batch = step, max(1, int(max_batch))
        self.pending, self.jobs, self.closed = [], [], False  # [(inputs | job, Future)]
        self.steps = self.batches = 0
        self.wake = threading.Condition()
        self.runner = threading.Thread(target=self._run, name="chunk-steps", daemon=True)
        self.runner.start()

    def zeros(self, shape):
        """numpy: the streams' threads hold no MindSpore Tensor (made or freed only here)."""
        return np.zeros(shape, np.float32)

    def __call__(self, *inputs):
        return self._wait(self.pending, inputs)

    def call(self, function, *args):
        """function(*args), run by the runner thread (after the batch it is running)."""
        return self._wait(self.jobs, (function, args))

    def _wait(self, queue, item):
        future = Future()
        with self.wake:
            if self.closed:
                raise RuntimeError("the shared chunk step is closed")
            queue.append((item, future))
            self.wake.notify()
        return future.result()

    def close(self):
        """Run what is pending, then stop the runner thread."""
        with self.wake:
            self.closed = True
            self.wake.notify()
        self.runner.join(timeout=10)  # a daemon: a step that never returns cannot hold the exit

    def _next(self):
        """(the next batch of steps, the next job or None); ([], None) once closed."""
        with self.wake:
            while not self.pending and not self.jobs and not self.closed:
                self.wake.wait()
            batch = self.pending[:self.max_batch]
            self.pending = self.pending[self.max_batch:]
            return batch, self.jobs.pop(0) if self.jobs else None

    def _run(self):
        while True:
            batch, job = self._next()
            if not batch and job is None:
                return
            if batch:
                self._settle([future for _, future in batch], self._run_batch, batch)
            if job is not None:
                (function, args), future = job
                self._settle([future], _as_list, function, *args)

    def _run_batch(self, batch):
        outputs = self.step.run_batch([inputs for inputs, _ in batch])
        self.steps, self.batches = self.steps + len(batch), self.batches + 1
        return [tuple(x.asnumpy() if hasattr(x, "asnumpy") else x for x in output)
                for output in outputs]

    @staticmethod
    def _settle(futures, work, *args):
        """Each future gets its result of work(*args), or the exception it raised (a waiting
        stream gets it as its own)."""
        try:
            results = work(*args)
        except BaseException as err:  # noqa: BLE001
            for future in futures:
                future.set_exception(err)
            return
        for future, result in zip(futures, results):
            future.set_result(result)


def _as_list(function, *args):
    return [function(*args)]
