"""Network: zoo checkpoint compatibility, a numpy reference forward pass, padding invariance."""
import numpy as np
import pytest

from src.conv_spec import output_lengths


def zoo_shapes(hidden=1024, layers=5, n_class=29):
    """Parameter names/shapes of the zoo network, written from the spec, not from our code."""
    shapes = {"conv.conv1.weight": (32, 1, 41, 11), "conv.conv2.weight": (32, 32, 21, 11)}
    for bn in ("bn1", "bn2"):
        for name in ("moving_mean", "moving_variance", "gamma", "beta"):
            shapes[f"conv.{bn}.{name}"] = (32,)
    for i in range(layers):
        for sfx in ("", "_reverse"):
            shapes[f"RNN.lstms.{i}.weight_ih_l0{sfx}"] = (4 * hidden, 1312 if i == 0 else hidden)
            shapes[f"RNN.lstms.{i}.weight_hh_l0{sfx}"] = (4 * hidden, hidden)
            shapes[f"RNN.lstms.{i}.bias_ih_l0{sfx}"] = (4 * hidden,)
            shapes[f"RNN.lstms.{i}.bias_hh_l0{sfx}"] = (4 * hidden,)
    shapes["fc.module.weight"] = (n_class, hidden)
    return shapes


def write_zoo_checkpoint(ms, path, shapes, seed=0):
    """A checkpoint as the zoo's training writes it: weights plus Adam state."""
    rng = np.random.default_rng(seed)
    values = {}
    for name, shape in shapes.items():
        if name.endswith("moving_variance"):
            values[name] = rng.uniform(0.5, 1.5, shape).astype(np.float32)
        else:
            values[name] = (rng.standard_normal(shape) * 0.1).astype(np.float32)
    entries = [{"name": k, "data": ms.Tensor(v)} for k, v in values.items()]
    entries += [{"name": f"moment{m}.{k}", "data": ms.Tensor(np.zeros(shapes[k], np.float32))}
                for m in (1, 2) for k in shapes if "moving" not in k][:4]
    entries += [{"name": "global_step", "data": ms.Tensor(np.array([7], np.int32))},
                {"name": "learning_rate", "data": ms.Tensor(np.array(1e-4, np.float32))}]
    ms.save_checkpoint(entries, str(path))
    return values


def test_zoo_checkpoint_loads_strictly_at_full_size(ms_context, tmp_path):
    from src.checkpoints import network_from_checkpoint
    from src.config import load_config
    shapes = zoo_shapes()
    assert sum(int(np.prod(s)) for s in shapes.values()) == 86_608_224  # the spec's count
    values = write_zoo_checkpoint(ms_context, tmp_path / "DeepSpeech.ckpt", shapes)
    messages = []
    net = network_from_checkpoint(load_config([]), str(tmp_path / "DeepSpeech.ckpt"),
                                  log=messages.append)
    got = {p.name: p for p in net.get_parameters()}
    assert {k: tuple(p.shape) for k, p in got.items()} == shapes  # nothing missing or extra
    for name in ("conv.bn1.moving_variance", "RNN.lstms.4.bias_hh_l0_reverse", "fc.module.weight"):
        np.testing.assert_array_equal(got[name].asnumpy(), values[name])
    assert "hidden_size=1024, num_layers=5" in messages[0]


def test_other_architecture_is_refused_with_names(ms_context, tmp_path):
    from src.checkpoints import CheckpointError, load_weights
    from src.config import load_config
    from src.deepspeech2 import build_network
    shapes = zoo_shapes(hidden=16, layers=2)
    shapes["fc.module.weight"] = (30, 16)
    shapes["extra.weight"] = (3,)
    write_zoo_checkpoint(ms_context, tmp_path / "other.ckpt", shapes)
    net = build_network(load_config(["--hidden_size=16", "--num_layers=2"]))
    with pytest.raises(CheckpointError) as err:
        load_weights(net, ms_context.load_checkpoint(str(tmp_path / "other.ckpt")))
    assert "fc.module.weight (30, 16) (network: (29, 16))" in str(err.value)
    assert "unexpected 1: extra.weight" in str(err.value)


# ---------------------------------------------------------------- numpy reference forward pass
def conv2d(x, w, stride, pad):
    """x (C, H, W), w (O, C, kh, kw) -> (O, H', W') cross-correlation with zero padding."""
    x = np.pad(x, ((0, 0), (pad[0], pad[0]), (pad[1], pad[1])))
    win = np.lib.stride_tricks.sliding_window_view(x, w.shape[2:], axis=(1, 2))
    win = win[:, ::stride[0], ::stride[1]]  # (C, H', W', kh, kw)
    return np.einsum("chwij,ocij->ohw", win, w)


def lstm(x, w_ih, w_hh, b_ih, b_hh):
    """x (T, I) -> (T, H); gates i, f, g, o."""
    h = np.zeros(w_hh.shape[1])
    c = np.zeros_like(h)
    out = []
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    for xt in x:
        i, f, g, o = np.split(w_ih @ xt + b_ih + w_hh @ h + b_hh, 4)
        c = sig(f) * c + sig(i) * np.tanh(g)
        h = sig(o) * np.tanh(c)
        out.append(h)
    return np.array(out)


def reference_log_probs(p, spec, layers):
    """The zoo network on one utterance spec (F, T), in eval mode, from parameters `p`."""
    def block(x, conv, bn, stride, pad):
        y = conv2d(x, p[f"conv.{conv}.weight"], stride, pad)
        scale = p[f"conv.{bn}.gamma"] / np.sqrt(p[f"conv.{bn}.moving_variance"] + 1e-5)
        y = (y - p[f"conv.{bn}.moving_mean"][:, None, None]) * scale[:, None, None]
        return np.tanh(y + p[f"conv.{bn}.beta"][:, None, None])
    x = block(spec[None].astype(np.float64), "conv1", "bn1", (2, 2), (20, 5))
    x = block(x, "conv2", "bn2", (2, 1), (10, 5))  # (32, 41, T')
    x = x.reshape(-1, x.shape[2]).T  # (T', 1312)
    for i in range(layers):
        k = f"RNN.lstms.{i}."
        fwd = lstm(x, p[k + "weight_ih_l0"], p[k + "weight_hh_l0"], p[k + "bias_ih_l0"],
                   p[k + "bias_hh_l0"])
        bwd = lstm(x[::-1], p[k + "weight_ih_l0_reverse"], p[k + "weight_hh_l0_reverse"],
                   p[k + "bias_ih_l0_reverse"], p[k + "bias_hh_l0_reverse"])[::-1]
        x = fwd + bwd
    logits = x @ p["fc.module.weight"].T
    return logits - np.log(np.exp(logits).sum(1, keepdims=True))


def test_forward_matches_numpy_reference_and_ignores_padding(ms_context, tmp_path):
    """A padded batch gives, for every utterance, the numpy zoo network's output on it alone."""
    ms = ms_context
    from src.checkpoints import network_from_checkpoint
    from src.config import load_config
    from src.deepspeech2 import InferenceNet
    values = write_zoo_checkpoint(ms, tmp_path / "small.ckpt", zoo_shapes(hidden=12, layers=2),
                                  seed=3)
    net = InferenceNet(network_from_checkpoint(load_config([]), str(tmp_path / "small.ckpt"),
                                               log=lambda *_: None))
    net.set_train(False)
    rng = np.random.default_rng(5)
    lengths = np.array([57, 31, 12], np.int32)
    specs = [rng.standard_normal((161, n)).astype(np.float32) for n in lengths]
    batch = np.zeros((3, 1, 161, 60), np.float32)  # padded beyond the longest too
    for b, s in enumerate(specs):
        batch[b, 0, :, :s.shape[1]] = s
    log_probs, out_lengths = net(ms.Tensor(batch), ms.Tensor(lengths))
    log_probs, out_lengths = log_probs.asnumpy(), out_lengths.asnumpy()
    np.testing.assert_array_equal(out_lengths, output_lengths(lengths))
    np.testing.assert_array_equal(out_lengths, [(n + 10 - 11) // 2 + 1 for n in lengths])
    for b, s in enumerate(specs):
        want = reference_log_probs(values, s, layers=2)
        assert want.shape[0] == out_lengths[b]
        np.testing.assert_allclose(log_probs[:out_lengths[b], b], want, atol=2e-4)


def test_lstm_layers_return_the_input_dtype_under_a_float16_kernel(ms_context):
    """On Ascend nn.LSTM's kernel returns float16; the layer must hand its input's dtype on to
    the Dense, as nn.LSTM itself does. A float16-returning stand-in kernel shows it on CPU."""
    ms = ms_context
    from mindspore import nn

    from src.deepspeech2 import MaskedLSTM

    class Float16Kernel(nn.Cell):
        def __init__(self, kernel):
            super().__init__()
            self.kernel = kernel

        def construct(self, x, h, seq_length, w_ih, w_hh, b_ih, b_hh):
            out, state = self.kernel(x, h, seq_length, w_ih, w_hh, b_ih, b_hh)
            return out.astype(ms.float16), state

    reference, lstm = MaskedLSTM(12, 16), MaskedLSTM(12, 16)
    ms.load_param_into_net(lstm, {p.name: p for p in reference.get_parameters()})
    lstm.rnn = Float16Kernel(lstm.rnn)  # before the first call compiles the graph
    x = ms.Tensor(np.random.default_rng(0).standard_normal((30, 2, 12)).astype(np.float32))
    lengths = ms.Tensor(np.array([30, 21], np.int32))
    want, got = reference(x, lengths), lstm(x, lengths)  # (T, B, H)
    assert want.dtype == got.dtype == ms.float32
    assert not np.array_equal(got.asnumpy(), want.asnumpy())  # the float16 kernel did run
    np.testing.assert_allclose(got.asnumpy(), want.asnumpy(), atol=2e-3)


def test_a_batch_of_one_runs_the_inference_kernel_with_the_same_values(ms_context):
    """cpu_batch1: in eval mode a batch of one goes through the is_training=False LSTM primitive
    (oneDNN's inference kernel) and gives the values of the default path; batches of two and
    training mode keep the default path (a doubling stand-in for the primitive shows which ran)."""
    ms = ms_context
    from mindspore import nn, ops

    from src.deepspeech2 import MaskedLSTM

    class Doubled(nn.Cell):
        def __init__(self, primitive):
            super().__init__()
            self.primitive = primitive

        def construct(self, x, h, c, w):
            out = self.primitive(x, h, c, w)
            return (out[0] * 2,) + out[1:]

    reference = MaskedLSTM(12, 16)
    fast, marked = MaskedLSTM(12, 16, cpu_batch1=True), MaskedLSTM(12, 16, cpu_batch1=True)
    for lstm in (fast, marked):
        ms.load_param_into_net(lstm, {p.name: p for p in reference.get_parameters()})
    marked.lstm_inference = Doubled(ops.LSTM(12, 16, 1, True, False, 0.0))
    rng = np.random.default_rng(2)
    one = ms.Tensor(rng.standard_normal((40, 1, 12)).astype(np.float32))
    two = ms.Tensor(rng.standard_normal((40, 2, 12)).astype(np.float32))
    len1, len2 = ms.Tensor(np.array([40], np.int32)), ms.Tensor(np.array([40, 33], np.int32))
    for lstm in (reference, fast, marked):
        lstm.set_train(False)
    want = reference(one, len1).asnumpy()  # (T, 1, H)
    np.testing.assert_allclose(fast(one, len1).asnumpy(), want, atol=1e-5)
    np.testing.assert_allclose(marked(one, len1).asnumpy(), 2 * want, atol=1e-5)  # it ran
    np.testing.assert_allclose(marked(two, len2).asnumpy(), reference(two, len2).asnumpy(),
                               atol=1e-6)
    marked.set_train(True)
    np.testing.assert_allclose(marked(one, len1).asnumpy(), want, atol=1e-6)


# ---------------------------------------------------------------- streaming options
def test_lookahead_convolution_matches_numpy(ms_context):
    """out[t, b, h] = sum_j W[j, h] x[t + j, b, h], zeros from each utterance's length on."""
    ms = ms_context
    from src.deepspeech2 import Lookahead
    rng = np.random.default_rng(4)
    cell = Lookahead(5, 3)
    np.testing.assert_array_equal(cell.weight.asnumpy(), np.eye(4, 5)[:, :1].repeat(5, 1))
    weight = rng.standard_normal((4, 5)).astype(np.float32)
    cell.weight.set_data(ms.Tensor(weight))
    x = rng.standard_normal((9, 3, 5)).astype(np.float32)  # (T, B, H)
    lengths = np.array([9, 6, 1], np.int32)
    want = np.zeros_like(x)
    for b, n in enumerate(lengths):
        for t in range(n):
            want[t, b] = sum(weight[j] * x[t + j, b] for j in range(4) if t + j < n)
    got = cell(ms.Tensor(x), ms.Tensor(lengths)).asnumpy()
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_streaming_options_add_only_their_parameters(ms_context):
    """lookahead 0, per-utterance normalisation and no output bias: exactly the zoo's names;
    lookahead L and global normalisation add lookahead.weight (L + 1, H) and norm.mean/std (F,)
    (not trained)."""
    from src.config import load_config
    from src.deepspeech2 import build_network
    small = ["--hidden_size=8", "--num_layers=2", "--blank_bias=0"]
    plain = build_network(load_config(small))
    assert {p.name: tuple(p.shape) for p in plain.get_parameters()} == zoo_shapes(8, 2)
    net = build_network(load_config([*small, "--lookahead=3", "--normalize=global"]))
    extra = {p.name: tuple(p.shape) for p in net.get_parameters()}
    for name in zoo_shapes(8, 2):
        del extra[name]
    assert extra == {"lookahead.weight": (4, 8), "norm.mean": (161,), "norm.std": (161,)}
    trained = {p.name for p in net.trainable_params()}
    assert "lookahead.weight" in trained and not {"norm.mean", "norm.std"} & trained


def test_blank_bias_starts_the_network_on_blanks_and_comes_back_from_checkpoints(ms_context,
                                                                                 tmp_path):
    """model.blank_bias b adds fc.module.bias = (0, ..., 0, b): every frame's logits are the
    bias-free network's plus b on the blank (checked against the same weights without it); a
    checkpoint with the bias rebuilds it whatever the config says."""
    import mindspore as ms

    from src.checkpoints import network_from_checkpoint, save_network
    from src.config import load_config
    from src.deepspeech2 import build_network
    small = ["--hidden_size=8", "--num_layers=1"]
    net = build_network(load_config([*small, "--blank_bias=4"]))
    plain = build_network(load_config([*small, "--blank_bias=0"]))
    assert {p.name for p in net.get_parameters()} - {p.name for p in plain.get_parameters()} \
        == {"fc.module.bias"}
    ms.load_param_into_net(plain, {p.name: p for p in net.get_parameters()
                                   if p.name != "fc.module.bias"})
    x = ms.Tensor(np.random.default_rng(0).normal(size=(2, 1, 161, 40)).astype(np.float32))
    lengths = ms.Tensor(np.array([40, 31], np.int32))
    net.set_train(False)
    plain.set_train(False)
    offset = net(x, lengths)[0].asnumpy() - plain(x, lengths)[0].asnumpy()  # (T', B, 29)
    np.testing.assert_allclose(offset[..., :-1], 0.0, atol=1e-5)
    np.testing.assert_allclose(offset[..., -1], 4.0, atol=1e-5)
    save_network(net, str(tmp_path / "bias.ckpt"))
    loaded = network_from_checkpoint(load_config([*small, "--blank_bias=0"]),
                                     str(tmp_path / "bias.ckpt"),
                                     log=lambda _: None)
    loaded.set_train(False)
    np.testing.assert_allclose(loaded(x, lengths)[0].asnumpy(), net(x, lengths)[0].asnumpy(),
                               atol=1e-5)


def test_checkpoints_keep_the_lookahead_and_the_global_statistics(ms_context, tmp_path):
    """Eval/transcribe rebuild the lookahead from any checkpoint; the statistics come back with
    the weights; the recorded normalisation is checked, and a record without it still loads."""
    import json

    from src.checkpoints import FEATURES_KEY, CheckpointError, network_from_checkpoint, save_network
    from src.config import load_config
    from src.deepspeech2 import build_network
    cfg = load_config(["--hidden_size=8", "--num_layers=1", "--bidirectional=false",
                       "--lookahead=3", "--normalize=global"])
    net = build_network(cfg)
    mean, std = np.linspace(0, 1, 161), np.linspace(1, 2, 161)
    net.norm.set_stats(mean, std)
    save_network(net, str(tmp_path / "stream.ckpt"), cfg.features)
    messages = []
    loaded = network_from_checkpoint(load_config(["--normalize=global"]),
                                     str(tmp_path / "stream.ckpt"), log=messages.append)
    assert "bidirectional=False, lookahead=3" in messages[0]
    np.testing.assert_allclose(loaded.norm.mean.asnumpy(), mean, rtol=1e-6)
    np.testing.assert_allclose(loaded.norm.std.asnumpy(), std, rtol=1e-6)
    with pytest.raises(CheckpointError, match="--features.normalize=global"):
        network_from_checkpoint(load_config([]), str(tmp_path / "stream.ckpt"))
    old = {k: cfg.features[k] for k in ("sample_rate", "window_size", "window_stride", "window")}
    plain = load_config(["--hidden_size=8", "--num_layers=1"])
    save_network(build_network(plain), str(tmp_path / "old.ckpt"),
                 extra={FEATURES_KEY: json.dumps(old)})
    network_from_checkpoint(plain, str(tmp_path / "old.ckpt"), log=messages.append)
