"""CTC loss against a numpy forward algorithm; the lr schedule and the optimizer's use of it."""
import numpy as np
import pytest
from scipy.special import logsumexp

from conftest import tiny_batch, tiny_step
from src.lr_generator import get_lr


def numpy_ctc_nll(log_probs, label, blank):
    """-log p(label | log_probs) by the CTC forward (alpha) recursion. log_probs: (T, C)."""
    ext = [blank]
    for k in label:
        ext += [k, blank]
    T, S = log_probs.shape[0], len(ext)
    alpha = np.full(S, -np.inf)
    alpha[0] = log_probs[0, blank]
    if S > 1:
        alpha[1] = log_probs[0, ext[1]]
    for t in range(1, T):
        prev = alpha.copy()
        for s in range(S):
            terms = [prev[s]]
            if s >= 1:
                terms.append(prev[s - 1])
            if s >= 2 and ext[s] != blank and ext[s] != ext[s - 2]:
                terms.append(prev[s - 2])
            alpha[s] = logsumexp(terms) + log_probs[t, ext[s]]
    return -logsumexp(alpha[-2:]) if S > 1 else -alpha[-1]


def test_ctc_loss_cell_matches_numpy(ms_context):
    ms = ms_context
    from mindspore import nn

    from src.deepspeech2 import CTCLossCell

    class Logits(nn.Cell):
        """Stands in for the network: the 'spectrogram' is already the logits (T, B, C)."""
        def construct(self, x, lengths):
            return x, lengths

    rng = np.random.default_rng(0)
    T, B, C, blank = 12, 3, 29, 28
    logits = rng.standard_normal((T, B, C)).astype(np.float32) * 2
    lengths = np.array([12, 9, 5], np.int32)
    labels = [[1, 1, 2, 27, 5], [0, 3, 3], [7]]  # repeats need a blank between them
    targets = np.zeros((B, 5), np.int32)
    for b, lab in enumerate(labels):
        targets[b, :len(lab)] = lab
    target_lengths = np.array([len(lab) for lab in labels], np.int32)
    loss = CTCLossCell(Logits(), blank)(ms.Tensor(logits), ms.Tensor(lengths),
                                        ms.Tensor(targets), ms.Tensor(target_lengths))
    log_probs = logits - logsumexp(logits, axis=2, keepdims=True)
    want = np.mean([numpy_ctc_nll(log_probs[:lengths[b], b], labels[b], blank) for b in range(B)])
    assert float(loss.asnumpy()) == pytest.approx(want, rel=1e-4)


def test_lr_schedule_hand_computed():
    lr = get_lr(1.0, total_epochs=4, steps_per_epoch=2, warmup_steps=3, hold_epochs=2, anneal=2.0)
    want = [1 / 3, 2 / 3, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
    np.testing.assert_allclose(lr, want, rtol=1e-6)
    flat = get_lr(0.1, 3, 1)  # hold 0: the anneal starts at once (the zoo holds half the epochs)
    np.testing.assert_allclose(flat, [0.1 / 1.1, 0.1 / 1.1 ** 2, 0.1 / 1.1 ** 3], rtol=1e-6)


def test_cosine_schedule_hand_computed():
    """6 steps, warm-up 2: the ramp (s + 1) / 2 over the peak, then (1 + cos(pi (s - 2) / 4)) / 2."""
    lr = get_lr(2.0, total_epochs=2, steps_per_epoch=3, warmup_steps=2, schedule="cosine")
    c45 = np.cos(np.pi / 4)
    want = [1.0, 2.0, 2.0, 1 + c45, 1.0, 1 - c45]
    np.testing.assert_allclose(lr, want, rtol=1e-6)
    no_warmup = get_lr(1.0, total_epochs=1, steps_per_epoch=4, schedule="cosine")
    np.testing.assert_allclose(no_warmup, [1.0, (1 + c45) / 2, 0.5, (1 - c45) / 2], rtol=1e-6)
    with pytest.raises(ValueError, match="unknown schedule"):
        get_lr(1.0, 1, 1, schedule="linear")


def test_optimizer_steps_by_the_schedule(ms_context):
    """With beta1, beta2 ~ 0 every Adam update is lr * sign(grad): its size is the step's lr."""
    lr = get_lr(1e-3, total_epochs=3, steps_per_epoch=2, warmup_steps=2, hold_epochs=1, anneal=2.0)
    _, net, step = tiny_step(["--beta1=1e-9", "--beta2=1e-9", "--weight_decay=0",
                              "--max_grad_norm=0"], lr=lr)
    x, lengths, targets, target_lengths = tiny_batch(ms_context, seed=1)
    weight = next(p for p in net.trainable_params() if p.name == "fc.module.weight")
    seen = []
    for _ in range(len(lr)):
        before = weight.asnumpy().copy()
        step(x, lengths, targets, target_lengths)
        delta = np.abs(weight.asnumpy() - before)
        seen.append(float(np.median(delta[delta > 0])))
    np.testing.assert_allclose(seen, lr, rtol=1e-3)


def test_global_norm_and_clip_match_numpy_and_flag_non_finite(ms_context):
    ms = ms_context
    from src.train_step import clip_by_norm, global_norm
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal(s).astype(np.float32) for s in [(3, 4), (5,), (2, 2, 2)]]
    want = np.sqrt(sum((a.astype(np.float64) ** 2).sum() for a in arrays))
    grads = tuple(ms.Tensor(a) for a in arrays)
    norm = global_norm(grads)
    assert abs(float(norm.asnumpy()) - want) < 1e-5 * want
    clipped = clip_by_norm(grads, norm, 1.0)  # norm ~4.7 > 1: scaled to norm 1
    for got, a in zip(clipped, arrays):
        np.testing.assert_allclose(got.asnumpy(), a / want, rtol=1e-5)
    kept = clip_by_norm(grads, norm, 10.0)  # below the limit: unchanged
    for got, a in zip(kept, arrays):
        np.testing.assert_allclose(got.asnumpy(), a, rtol=1e-6)
    for bad in (np.inf, np.nan):
        broken = [a.copy() for a in arrays]
        broken[1][2] = bad
        assert not np.isfinite(float(global_norm(tuple(ms.Tensor(a) for a in broken)).asnumpy()))
