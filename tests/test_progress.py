"""Progress: plain lines at a bounded rate when the output is not a terminal, bars when it is."""
import io

from tqdm import tqdm

from src.progress import LineProgress, progress


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lines_at_most_one_per_interval_and_one_at_the_end():
    out, clock = io.StringIO(), Clock()
    bar = LineProgress(total=1000, desc="epoch 1/2", unit="step", file=out, interval=30.0,
                       clock=clock)
    for _ in range(1000):
        clock.now += 0.1  # 100 s of work
        bar.set_postfix(loss="1.234")
        bar.update(1)
    bar.close()
    bar.close()  # a second close writes nothing more
    lines = out.getvalue().splitlines()
    assert "\r" not in out.getvalue()
    assert len(lines) == 4  # at 30, 60, 90 s, and the end
    assert lines[0] == "epoch 1/2: 300/1000 step (30%), 10.00 step/s, loss=1.234"
    assert lines[-1].startswith("epoch 1/2: 1000/1000 step (100%)")


def test_iteration_and_resumed_counts():
    out, clock = io.StringIO(), Clock()
    bar = LineProgress(range(5), total=10, initial=5, desc="d", file=out, clock=clock)
    assert list(bar) == [0, 1, 2, 3, 4]
    assert out.getvalue() == "d: 10/10 it (100%)\n"  # no time passed: no rate


def test_terminal_gets_a_tqdm_bar_and_a_file_gets_lines():
    class Tty(io.StringIO):
        def isatty(self):
            return True
    assert isinstance(progress(total=3, file=Tty()), tqdm)
    assert isinstance(progress(total=3, file=io.StringIO()), LineProgress)
