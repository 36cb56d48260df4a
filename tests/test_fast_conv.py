"""The CPU conv fast path computes what nn.Conv2d computes: values, gradients, whole network."""
import numpy as np
import pytest

from src.fast_conv import conv_backward, conv_forward

CASES = [(3, (2, 1), 8), (1, (2, 2), 8), (2, (1, 3), 8), (2, (1, 1), 13)]  # channels, stride, T
FFT_CASES = [(3, (2, 1), 8), (2, (1, 1), 13), (2, (3, 1), 23)]  # FFT lengths 9, 15, 24


@pytest.mark.parametrize("method,channels,stride,frames",
                         [(m, *case) for m in ("unfold", "im2col") for case in CASES]
                         + [("fft", *case) for case in FFT_CASES])
def test_numpy_conv_matches_direct_definition(method, channels, stride, frames):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, channels, 9, frames)).astype(np.float32)
    w = rng.standard_normal((4, channels, 5, 3)).astype(np.float32)
    pad = (2, 1)
    xp = np.pad(x, ((0, 0), (0, 0), (2, 2), (1, 1))).astype(np.float64)
    fo, to = (9 + 4 - 5) // stride[0] + 1, (frames + 2 - 3) // stride[1] + 1
    want = np.zeros((2, 4, fo, to))
    for f in range(fo):
        for t in range(to):
            f0, t0 = stride[0] * f, stride[1] * t
            want[:, :, f, t] = np.einsum("bckj,ockj->bo", xp[:, :, f0:f0 + 5, t0:t0 + 3], w)
    np.testing.assert_allclose(conv_forward(x, w, pad, stride, method), want, rtol=1e-5, atol=1e-5)
    # gradients by central finite differences of sum(out * g)
    g = rng.standard_normal(want.shape).astype(np.float32)
    dx, dw = conv_backward(x, w, g, pad, stride, method=method)

    def numeric(which, idx, eps=1e-2):
        args = {"x": x, "w": w}
        plus, minus = args[which].copy(), args[which].copy()
        plus[idx] += eps
        minus[idx] -= eps
        out = [conv_forward(**{**args, which: a}, pad=pad, stride=stride, method=method)
               for a in (plus, minus)]
        return ((out[0] - out[1]) * g).sum() / (2 * eps)

    for which, grad, idx in [("x", dx, (0, 0, 4, 3)), ("x", dx, (1, channels - 1, 0, frames - 1)),
                             ("x", dx, (1, 0, 8, 0)), ("w", dw, (3, 0, 2, 1)),
                             ("w", dw, (0, channels - 1, 4, 0))]:
        assert abs(numeric(which, idx) - grad[idx]) < 1e-2 * max(1, abs(grad[idx])), (which, idx)
    no_dx, dw2 = conv_backward(x, w, g, pad, stride, input_grad=False, method=method)
    assert not no_dx.any()
    np.testing.assert_array_equal(dw2, dw)


def test_fft_input_gradient_when_some_rows_get_no_tap():
    """Frequency stride 6 > 5 kernel rows: input rows no output reads get a zero gradient."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 2, 17, 9)).astype(np.float32)
    w = rng.standard_normal((3, 2, 5, 3)).astype(np.float32)
    g = rng.standard_normal(conv_forward(x, w, (1, 1), (6, 1), "unfold").shape).astype(np.float32)
    want_dx, want_dw = conv_backward(x, w, g, (1, 1), (6, 1), method="unfold")
    dx, dw = conv_backward(x, w, g, (1, 1), (6, 1), method="fft")
    assert not want_dx[:, :, 4].any()  # padded row 5 (input row 4) is read by no output
    np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(dw, want_dw, rtol=1e-5, atol=1e-4)


def test_fft_method_refuses_a_time_stride():
    x, w = np.zeros((1, 1, 9, 8), np.float32), np.zeros((2, 1, 3, 3), np.float32)
    with pytest.raises(ValueError, match="time stride 1"):
        conv_forward(x, w, (1, 1), (1, 2), "fft")
    with pytest.raises(ValueError, match="must be one of"):
        conv_forward(x, w, (1, 1), (1, 1), "winograd")


def test_default_methods_per_layer():
    from src.conv_spec import CONV_SPEC
    from src.fast_conv import _method
    shapes = [(32, 1) + CONV_SPEC[0].kernel, (32, 32) + CONV_SPEC[1].kernel]
    assert [_method(s, layer.stride, None) for s, layer in zip(shapes, CONV_SPEC)] == \
        ["im2col", "fft"]
    assert _method((4, 32, 21, 11), (2, 2), None) == "unfold"


@pytest.mark.parametrize("method,stride", [(m, s) for m in ("unfold", "im2col")
                                           for s in [(2, 1), (2, 2), (1, 3)]]
                         + [("fft", (2, 1)), ("fft", (1, 1))])
def test_time_blocks_and_threads_do_not_change_the_result(method, stride, monkeypatch):
    """Blocks of a few frames or FFT bins (boundaries everywhere) and one utterance at a time (no
    threads) give what one block over a whole batch in threads gives."""
    import src.fast_conv as fc
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 2, 11, 23)).astype(np.float32)
    w = rng.standard_normal((4, 2, 5, 4)).astype(np.float32)
    pad = (2, 3)
    monkeypatch.setattr(fc, "ROWS", 1000)
    monkeypatch.setattr(fc, "BLOCK", 1000)
    monkeypatch.setattr(fc, "BINS", 1000)
    want = conv_forward(x, w, pad, stride, method)
    g = rng.standard_normal(want.shape).astype(np.float32)
    want_dx, want_dw = conv_backward(x, w, g, pad, stride, method=method)
    for rows, block in [(1, 1), (3, 2), (5, 7)]:
        monkeypatch.setattr(fc, "ROWS", rows)
        monkeypatch.setattr(fc, "BLOCK", block)
        monkeypatch.setattr(fc, "BINS", block)
        np.testing.assert_allclose(conv_forward(x, w, pad, stride, method), want, rtol=1e-5,
                                   atol=1e-5)
        dx, dw = conv_backward(x, w, g, pad, stride, method=method)
        np.testing.assert_allclose(dx, want_dx, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(dw, want_dw, rtol=1e-5, atol=1e-4)
    for n in range(3):  # a batch of one runs without the thread pool
        np.testing.assert_allclose(conv_forward(x[n:n + 1], w, pad, stride, method), want[n:n + 1],
                                   rtol=1e-5, atol=1e-5)
        dx, _ = conv_backward(x[n:n + 1], w, g[n:n + 1], pad, stride, method=method)
        np.testing.assert_allclose(dx, want_dx[n:n + 1], rtol=1e-5, atol=1e-5)


def test_fast_network_matches_plain_network_and_gradients(ms_context):
    ms = ms_context
    from src.deepspeech2 import CTCLossCell, DeepSpeechModel

    rng = np.random.default_rng(2)
    x = ms.Tensor(rng.standard_normal((3, 1, 161, 50)).astype(np.float32))
    lengths = ms.Tensor(np.array([50, 41, 20], np.int32))
    targets = ms.Tensor(np.array([[1, 2, 3], [4, 5, 0], [6, 0, 0]], np.int32))
    target_lengths = ms.Tensor(np.array([3, 2, 1], np.int32))
    results = []
    plain = DeepSpeechModel(hidden_size=8, num_layers=1, fast_conv=False)
    fast = DeepSpeechModel(hidden_size=8, num_layers=1, fast_conv=True)
    ms.load_param_into_net(fast, {p.name: ms.Parameter(p.value(), name=p.name)
                                  for p in plain.get_parameters()})
    for net in (plain, fast):
        loss_net = CTCLossCell(net, 28)
        loss_net.set_train(True)
        grad = ms.jit(ms.value_and_grad(loss_net, grad_position=None,
                                        weights=net.trainable_params()))
        loss, grads = grad(x, lengths, targets, target_lengths)
        named = dict(zip([p.name for p in net.trainable_params()], grads))
        results.append((float(loss.asnumpy()), {k: v.asnumpy() for k, v in named.items()}))
        net.set_train(False)
        logits, _ = net(x, lengths)
        results[-1] += (logits.asnumpy(),)
    (l0, g0, o0), (l1, g1, o1) = results
    assert abs(l0 - l1) < 1e-4 * abs(l0)
    np.testing.assert_allclose(o1, o0, atol=1e-4)
    for name in ("conv.conv2.weight", "conv.conv1.weight", "RNN.lstms.0.weight_ih_l0"):
        scale = np.abs(g0[name]).max()
        np.testing.assert_allclose(g1[name], g0[name], atol=1e-4 * scale)
