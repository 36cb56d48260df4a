"""The epoch planner alone (pure NumPy): batches, pad lengths, order, shards, micro-batches."""
import itertools
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO
from src.conv_spec import output_lengths
from src.errors import UserError
from src.planner import Batching, EpochPlanner, bucket_bounds, fits_ctc, make_batches

HOP = 160
SPEEDS = (0.9, 1.0, 1.1)


def corpus(n, longest=0.25):
    """(frames (n,), labels): 0.6-17 s, labels of up to `longest` x frames (CTC fits about 0.5)."""
    rng = np.random.default_rng(0)
    frames = rng.integers(60, 1700, n)
    labels = [rng.integers(1, 29, int(rng.integers(1, f * longest))).tolist() for f in frames]
    return frames, labels


def planner(n=61, factors=SPEEDS, longest=0.25, **batching):
    frames, labels = corpus(n, longest)
    settings = dict(batch_size=4, num_buckets=3, epochs=3, shuffle=True, seed=7) | batching
    return EpochPlanner(frames, labels, HOP, Batching(**settings), factors)


def epoch_items(p, epoch):
    """Utterance indices of each micro-batch `p` visits in `epoch`, through its optimizer steps."""
    steps = range(epoch * p.steps_per_epoch, (epoch + 1) * p.steps_per_epoch)
    return [p.item_batch(item)[0] for step in steps for item in p.micro_batches(step)]


@pytest.mark.parametrize("factors", [(1.0,), SPEEDS])
def test_every_utterance_once_per_epoch(factors):
    p = planner(factors=factors, accumulate=3)
    assert len(p) == 3 * p.micro_per_epoch
    for epoch in range(3):
        seen = np.concatenate(epoch_items(p, epoch))
        assert sorted(seen.tolist()) == list(range(61))


def test_planned_pads_fit_every_batch_and_its_labels():
    frames, labels = corpus(61, longest=0.45)
    p = planner(factors=(0.8, 1.0, 1.25), longest=0.45)
    assert p.speed_kept > 0  # some labels do not fit CTC at 1.25: those keep 1.0
    for epoch in range(3):
        plan = p.plan(epoch)
        assert set(plan.pads.tolist()) <= set(p.bounds.tolist()) and len(p.bounds) <= 3
        for batch, pad in zip(plan.batches, plan.pads):
            assert plan.frames[batch].max() < pad  # one frame of slack for resampled audio
            assert max(len(labels[n]) for n in batch) <= p.label_width[int(pad)]
        faster = np.flatnonzero(plan.factors > 1.0)
        assert all(fits_ctc(plan.frames[n] - 3, labels[n]) for n in faster)
        unchanged = plan.factors == 1.0
        np.testing.assert_array_equal(plan.frames[unchanged], frames[unchanged])


@pytest.mark.parametrize("group_size", [2, 3])
def test_shards_are_disjoint_and_cover_each_epoch(group_size):
    shards = [planner(rank=r, group_size=group_size, accumulate=2) for r in range(group_size)]
    assert len({s.steps_per_epoch for s in shards}) == 1
    for epoch in range(3):
        per_rank = [np.concatenate(epoch_items(s, epoch)).tolist() for s in shards]
        for a, b in itertools.combinations(per_rank, 2):
            assert not set(a) & set(b)
        assert sorted(sum(per_rank, [])) == list(range(61))


def test_same_seed_and_epoch_same_plan_whatever_was_planned_before():
    fresh, used = planner(), planner()
    for epoch in (0, 1, 2, 1, 0):  # a resumed run plans epoch 2 first: the cache must not matter
        used.plan(epoch)
    for epoch in (2, 0, 1):
        a, b = fresh.plan(epoch), used.plan(epoch)
        assert [x.tolist() for x in a.batches] == [x.tolist() for x in b.batches]
        for got, want in zip(a[1:], b[1:]):
            np.testing.assert_array_equal(got, want)
        np.testing.assert_array_equal(fresh.epoch_order(epoch), used.epoch_order(epoch))
    other = planner(seed=8)
    assert any(not np.array_equal(other.epoch_order(e), fresh.epoch_order(e)) for e in range(3))
    assert any(not np.array_equal(other.plan(e).factors, fresh.plan(e).factors) for e in range(3))


def test_speed_perturbation_starts_at_its_epoch():
    """speed_from 2: epochs 0 and 1 play everything at 1.0 (the batches of an unperturbed run),
    epoch 2 draws the factors a run perturbed from the start draws in that epoch."""
    frames, labels = corpus(61)
    settings = Batching(batch_size=4, num_buckets=3, epochs=3, shuffle=True, seed=7)
    late = EpochPlanner(frames, labels, HOP, settings, SPEEDS, speed_from=2)
    plain = EpochPlanner(frames, labels, HOP, settings, (1.0,))
    always = EpochPlanner(frames, labels, HOP, settings, SPEEDS)
    for epoch in (0, 1):
        assert (late.epoch_factors(epoch) == 1.0).all()
        assert [b.tolist() for b in late.plan(epoch).batches] == \
               [b.tolist() for b in plain.plan(epoch).batches]
    np.testing.assert_array_equal(late.epoch_factors(2), always.epoch_factors(2))
    assert len(set(late.epoch_factors(2).tolist())) == 3
    assert late.bounds.tolist() == always.bounds.tolist()  # padded for the slowest factor


def test_sortagrad_visits_the_first_epoch_shortest_first():
    p = planner(sortagrad=True, factors=(1.0,))
    pads = p.plan(0).pads[p.epoch_order(0)]
    assert (np.diff(pads) >= 0).all()
    assert (np.diff(p.plan(1).pads[p.epoch_order(1)]) < 0).any()  # then shuffled


def test_accumulating_more_batches_than_an_epoch_has_is_refused():
    assert planner(n=20, batch_size=4, accumulate=5).steps_per_epoch == 1  # exactly one epoch
    with pytest.raises(UserError) as err:
        planner(n=20, batch_size=4, accumulate=6)
    message = str(err.value)
    assert "accumulate_steps (6)" in message and "5 batches" in message
    assert "--accumulate_steps" in message and "\n" not in message


def test_ctc_needs_a_step_per_label_and_a_blank_between_repeats():
    frames = 101
    steps = int(output_lengths(frames))
    assert fits_ctc(frames, [1, 2] * (steps // 2))
    assert not fits_ctc(frames, [1] * steps)  # each repeat needs a blank between
    assert fits_ctc(frames, [1] * ((steps + 1) // 2))
    assert not fits_ctc(frames, list(range(1, steps + 2)))


def test_the_planner_imports_no_framework():
    code = ("import sys; sys.path.insert(0, '.'); import src.planner; "
            "assert 'mindspore' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=REPO, check=True)


def test_make_batches_covers_everything_with_few_lengths():
    frames = np.random.default_rng(0).integers(100, 1500, size=1003)
    batches, pad = make_batches(frames, batch_size=16, num_buckets=6)
    flat = np.concatenate(batches)
    assert sorted(flat.tolist()) == list(range(1003))  # every utterance exactly once
    for group in (2, 3, 8):
        shared, _ = make_batches(frames, 16, 6, group_size=group)
        assert len(shared) % group == 0
        assert sorted(np.concatenate(shared).tolist()) == list(range(1003))
    assert all(pad[i] >= frames[b].max() for i, b in enumerate(batches))
    assert len(set(pad.tolist())) <= 6
    spread = [frames[b].max() - frames[b].min() for b in batches]
    assert max(spread) < 60  # sorted batches hold similar lengths


def test_bucket_bounds_are_optimal_against_brute_force():
    rng = np.random.default_rng(1)
    for _ in range(30):
        maxima, sizes = rng.integers(1, 30, size=12), rng.integers(1, 4, size=12)

        def padding(bounds, maxima=maxima, sizes=sizes):
            bounds = np.sort(bounds)
            return sum(s * (bounds[np.searchsorted(bounds, x)] - x) for x, s in zip(maxima, sizes))

        candidates = [np.array(c) for r in range(1, 4)
                      for c in itertools.combinations(np.unique(maxima), r) if max(c) == maxima.max()]
        best = min(padding(c) for c in candidates)
        got = bucket_bounds(maxima, sizes, 3)
        assert len(got) <= 3 and padding(got) == best
