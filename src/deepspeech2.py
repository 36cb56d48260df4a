"""DeepSpeech2 network, parameter-compatible with the MindSpore model-zoo version.

Spectrogram (B, 1, F=161, T) -> [global normalisation] -> two Conv2d+BatchNorm+Tanh blocks ->
stacked bidirectional (or unidirectional) LSTMs (directions summed) -> [lookahead convolution] ->
bias-free Dense -> logits (T', B, n_class).

Parameter names and shapes match the zoo checkpoint (conv.conv1.weight, conv.bn1.gamma, ...,
RNN.lstms.<i>.weight_ih_l0[_reverse], fc.module.weight), so its checkpoints load unchanged.
Unlike the zoo network, padding never leaks into real frames: the first conv block's output is
masked beyond each utterance's length, and the backward LSTM direction runs over each sequence
reversed within its own length.

The two optional stages make a streaming model (src/streaming.py) and add parameters only when on,
so the zoo's checkpoints keep their exact names: features.normalize=global adds `norm.mean` and
`norm.std` (F,), the training set's per-frequency statistics, applied here (the features fed to
the network are then un-normalised log-spectrograms); model.lookahead=L > 0 adds
`lookahead.weight` (L + 1, H). A third, model.blank_bias, is a training choice: it adds the
output bias `fc.module.bias` (n_class,) the zoo's classifier lacks.
"""
import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops

from src.conv_spec import CONV_SPEC, conv_out_size
from src.env import uses_fast_conv
from src.features import freq_bins
from src.text import load_labels


def frame_mask(lengths, steps, dtype=ms.float32):
    """(B, steps): 1 for the frames before each of `lengths` (B,), 0 for the padding after."""
    return (ops.arange(steps, dtype=ms.int32).view(1, -1) < lengths.view(-1, 1)).astype(dtype)


class GlobalNorm(nn.Cell):
    """features.normalize=global: (x - mean) / std per frequency bin, with the training set's
    statistics (src.training computes them before the first step; not trained), so that the
    network needs no future frames to normalise one: what makes streaming possible.

    Frames outside each utterance are zero after it as before it, the zeros the conv front-end
    pads with: padding never leaks into real frames.
    """

    def __init__(self, n_freq):
        super().__init__()
        self.mean = Parameter(Tensor(np.zeros(n_freq, np.float32)), name="mean", requires_grad=False)
        self.std = Parameter(Tensor(np.ones(n_freq, np.float32)), name="std", requires_grad=False)

    def set_stats(self, mean, std):
        """mean, std: (F,) arrays of the training features."""
        self.mean.set_data(Tensor(np.asarray(mean, np.float32)))
        self.std.set_data(Tensor(np.asarray(std, np.float32)))

    def construct(self, x, mask):
        """x (B, 1, F, T) un-normalised features; mask (B, T) 1 for real frames -> (B, 1, F, T)."""
        x = (x - self.mean.view(1, 1, -1, 1)) / self.std.view(1, 1, -1, 1)
        return x * mask.view(mask.shape[0], 1, 1, -1)


class Lookahead(nn.Cell):
    """The DeepSpeech2 paper's lookahead (row) convolution between the last LSTM and the
    classifier: out[t, h] = sum_{j=0..L} W[j, h] x[t + j, h], with zeros after each utterance's
    last frame. W (L + 1, H) starts as the identity (W[0] = 1, the others 0): training starts
    from the plain unidirectional network and learns how much future context to mix in (the
    paper gives no initialisation).
    """

    def __init__(self, hidden_size, context):
        super().__init__()
        weight = np.zeros((context + 1, hidden_size), np.float32)
        weight[0] = 1.0
        self.weight = Parameter(Tensor(weight), name="weight")
        self.context = context

    def construct(self, x, lengths):
        """x (T, B, H); lengths (B,) int32 -> (T, B, H)."""
        t, b, h = x.shape
        x = x * frame_mask(lengths, t, x.dtype).T.view(t, b, 1)  # padding reads as zeros
        return self.convolve(ops.concat((x, ops.zeros((self.context, b, h), x.dtype))))

    def convolve(self, x):
        """x (T + L, B, H): the frames of T outputs followed by the L frames after them
        -> (T, B, H). The streaming step calls it with its cache of the L frames before."""
        t = x.shape[0] - self.context
        out = x[0:t] * self.weight[0]
        for j in range(1, self.context + 1):
            out = out + x[j:j + t] * self.weight[j]
        return out


class ConvFrontEnd(nn.Cell):
    """conv1 -> bn1 -> tanh -> (mask) -> conv2 -> bn2 -> tanh, names as the zoo's MaskConv.

    onnx (ONNX export): each conv's zero padding is a separate Pad op before an unpadded conv,
    same weights and values. MindSpore 2.10's ONNX exporter copies a padded Conv2d's
    (top, bottom, left, right) into ONNX's `pads`, whose order is (top, left, bottom, right),
    which gave conv1 a wrong output shape in any ONNX runtime.
    """

    def __init__(self, spec=CONV_SPEC, fast_conv=False, onnx=False):
        super().__init__()
        assert len(spec) == 2, "the zoo front-end has exactly two conv layers"
        in_ch = 1
        convs, bns, pads = [], [], []
        for layer in spec:
            (pf, pt) = layer.padding
            convs.append(nn.Conv2d(in_ch, layer.out_channels, layer.kernel, layer.stride,
                                   pad_mode="valid" if onnx else "pad",
                                   padding=0 if onnx else (pf, pf, pt, pt),
                                   has_bias=False))
            pads.append(ops.Pad(((0, 0), (0, 0), (pf, pf), (pt, pt))) if onnx
                        else nn.Identity())
            bns.append(nn.BatchNorm2d(layer.out_channels, momentum=0.9))
            in_ch = layer.out_channels
        self.conv1, self.conv2 = convs
        self.pad1, self.pad2 = pads
        self.bn1, self.bn2 = bns
        self.spec = spec
        self.tanh = nn.Tanh()
        # CPU only: both convolutions as numpy GEMMs (src/fast_conv.py), same weights, same values.
        self.fast_conv = bool(fast_conv)
        if self.fast_conv:
            from src.fast_conv import make_custom_conv
            # conv1's input is the spectrogram (data): its gradient is never needed.
            self.conv1_fast = make_custom_conv(spec[0].padding, spec[0].stride, input_grad=False)
            self.conv2_fast = make_custom_conv(spec[1].padding, spec[1].stride)

    def construct(self, x, lengths):
        """x: (B, 1, F, T) float; lengths: (B,) int32 input frames -> (B, C, F', T')."""
        x = ops.stop_gradient(x)  # the spectrogram is data, on both paths
        if self.fast_conv:
            x = self.conv1_fast(x, self.conv1.weight)
        else:
            x = self.conv1(self.pad1(x))
        x = self.tanh(self.bn1(x))  # (B, C, F1, T1)
        # conv2 has time stride 1, so its input length is conv1's; zero the padded frames so that
        # conv2's time kernel sees exactly the zeros it would see for the utterance alone.
        mask = frame_mask(conv_out_size(lengths, 1, self.spec[:1]), x.shape[3], x.dtype)  # (B, T1)
        x = x * mask.view(mask.shape[0], 1, 1, -1)
        if self.fast_conv:
            x = self.conv2_fast(x, self.conv2.weight)
        else:
            x = self.conv2(self.pad2(x))
        return self.tanh(self.bn2(x))  # (B, C, F', T')


class MaskedLSTM(nn.LSTM):
    """One (bi)LSTM layer with the zoo's parameter names whose directions are summed.

    nn.LSTM's own `seq_length` path falls back to a Python-loop RNN on CPU that cannot compile
    long sequences. Here both directions run the fused kernel over the padded batch: the forward
    direction is exact for real frames as is (padding comes after them); the backward direction
    runs over each sequence reversed within its own length, which is exact too.

    The result has the input's dtype, as nn.LSTM.construct returns it: on Ascend the kernel
    (DynamicRNN) computes and returns float16, which the float32 Dense after it would reject.

    cpu_batch1 (CPU, static shapes: not for export): in inference mode a batch of one runs the
    LSTM primitive with is_training=False, for which oneDNN picks its brgemm kernel with no
    workspace (same values; measured at hidden 1024 x 1500 steps, AMD EPYC: ~0.40 s vs ~0.45 s
    per direction, and its weight reorder 4 ms instead of 28 ms). At batch 4-8 that kernel is
    slower than the training one (1.2 s vs 0.9 s at 8 x 500), so batches keep the default.
    """

    def __init__(self, input_size, hidden_size, bidirectional=True, cpu_batch1=False):
        super().__init__(input_size, hidden_size, num_layers=1, has_bias=True,
                         batch_first=False, bidirectional=bidirectional)
        self.cpu_batch1 = cpu_batch1
        if cpu_batch1:
            self.lstm_inference = ops.LSTM(input_size, hidden_size, 1, True, False, 0.0)
            self.lstm_inference.add_prim_attr("is_training", False)

    def _direction(self, x, state, d):
        """One direction d (0 forward, 1 backward) over x (T, B, I) from state (h, c), each
        (B, H) -> (out (T, B, H), h (B, H), c (B, H)) after the last step."""
        w_ih, w_hh, b_ih, b_hh = (self.w_ih_list[d], self.w_hh_list[d], self.b_ih_list[d],
                                  self.b_hh_list[d])
        if self.cpu_batch1 and not self.training and x.shape[1] == 1:
            # the CPU primitive's flat weights: W_ih, W_hh, then the two biases summed
            weights = ops.concat((w_ih.view(-1, 1, 1), w_hh.view(-1, 1, 1),
                                  (b_ih + b_hh).view(-1, 1, 1)))
            h0, c0 = state
            out, h, c = self.lstm_inference(x, h0.expand_dims(0), c0.expand_dims(0), weights)[:3]
        else:
            out, (h, c) = self.rnn(x, state, None, w_ih, w_hh, b_ih, b_hh)
        return out, h[0], c[0]  # h, c: (1, B, H) -> (B, H)

    def forward_from(self, x, h, c):
        """The forward direction over x (T, B, I) from the state h, c (B, H) -> (out (T, B, H),
        h (B, H), c (B, H)): the state the streaming step carries from chunk to chunk."""
        return self._direction(x, (h, c), 0)

    def construct(self, x, lengths):
        """x: (T, B, I); lengths: (B,) int32 -> (T, B, H)."""
        batch = x.shape[1]
        zeros = ops.zeros((batch, self.hidden_size), x.dtype)
        state = (zeros, zeros)
        out = self._direction(x, state, 0)[0]  # (T, B, H)
        if self.bidirectional:
            x_rev = self.reverse_sequence(x, lengths)  # (T, B, I), reversed within each length
            out_b = self._direction(x_rev, state, 1)[0]
            out = out + self.reverse_sequence(out_b, lengths)  # directions summed, (T, B, H)
        return out.astype(x.dtype)


class StackedRNN(nn.Cell):
    """`num_layers` MaskedLSTM layers, named RNN.lstms.<i>.* as in the zoo."""

    def __init__(self, input_size, hidden_size, num_layers, bidirectional=True, cpu_batch1=False):
        super().__init__()
        sizes = [input_size] + [hidden_size] * (num_layers - 1)
        self.lstms = nn.CellList([MaskedLSTM(s, hidden_size, bidirectional, cpu_batch1)
                                  for s in sizes])

    def construct(self, x, lengths):
        for lstm in self.lstms:
            x = lstm(x, lengths)
        return x


class SequenceWise(nn.Cell):
    """Applies `module` to every time step: (T, B, H) -> (T, B, O). Name kept for fc.module.*."""

    def __init__(self, module):
        super().__init__()
        self.module = module

    def construct(self, x):
        t, b, h = x.shape
        y = self.module(x.view(t * b, h))  # (T*B, O)
        return y.view(t, b, -1)


class DeepSpeechModel(nn.Cell):
    """DeepSpeech2 acoustic model.

    construct(x, lengths): x (B, 1, n_freq, T) float32 spectrogram, lengths (B,) int32 frames
    -> (logits (T', B, n_class), output lengths (B,) int32).
    fast_conv (CPU only) computes both convs with src/fast_conv.py; onnx (ONNX export) pads
    them with separate Pad ops (ConvFrontEnd); cpu_batch1 (CPU, not export) runs inference on
    a batch of one with oneDNN's inference LSTM kernel (MaskedLSTM); same parameters and results.
    global_norm adds GlobalNorm (`norm`, x is then un-normalised), lookahead L > 0 adds
    Lookahead (`lookahead`), blank_bias (a float) an output bias `fc.module.bias` (n_class,)
    starting at blank_bias for the blank and 0 for the others; without them the parameters are
    exactly the zoo's.
    """

    def __init__(self, n_class=29, hidden_size=1024, num_layers=5, bidirectional=True,
                 n_freq=161, fast_conv=False, onnx=False, cpu_batch1=False, lookahead=0,
                 global_norm=False, blank_bias=None):
        super().__init__()
        self.norm = GlobalNorm(n_freq) if global_norm else None
        self.conv = ConvFrontEnd(fast_conv=fast_conv, onnx=onnx)
        rnn_input = CONV_SPEC[-1].out_channels * conv_out_size(n_freq, 0, CONV_SPEC)
        self.RNN = StackedRNN(rnn_input, hidden_size, num_layers, bidirectional, cpu_batch1)
        self.lookahead = Lookahead(hidden_size, lookahead) if lookahead else None
        self.fc = SequenceWise(nn.Dense(hidden_size, n_class, has_bias=blank_bias is not None))
        if blank_bias is not None:
            # CTC blank = last class: the network starts out emitting mostly blanks, where CTC
            # training would first have to drive it (the "blank plateau"), the others at 0
            bias = np.zeros(n_class, np.float32)
            bias[-1] = blank_bias
            self.fc.module.bias.set_data(Tensor(bias))

    def construct(self, x, lengths):
        out_lengths = conv_out_size(lengths, 1, self.conv.spec)  # = output_lengths(lengths)
        if self.norm is not None:
            x = self.norm(x, frame_mask(lengths, x.shape[3], x.dtype))  # (B, 1, F, T)
        x = self.conv(x, lengths)  # (B, C, F', T')
        b, c, f, t = x.shape
        x = x.view(b, c * f, t).transpose(2, 0, 1)  # (T', B, C*F')
        x = self.RNN(x, out_lengths)  # (T', B, H)
        if self.lookahead is not None:
            x = self.lookahead(x, out_lengths)  # (T', B, H)
        return self.fc(x), out_lengths  # (T', B, n_class), (B,)


class InferenceNet(nn.Cell):
    """Eval/export wrapper: (x, lengths) -> (log-probabilities (T', B, n_class), lengths)."""

    def __init__(self, network):
        super().__init__(auto_prefix=False)
        self.network = network
        self.log_softmax = nn.LogSoftmax(axis=-1)

    def construct(self, x, lengths):
        logits, out_lengths = self.network(x, lengths)
        return self.log_softmax(logits), out_lengths


class CTCLossCell(nn.Cell):
    """Network + CTC loss (blank = last label), mean over the batch as in the zoo.

    construct(x (B,1,F,T), lengths (B,), targets (B, S) int32 padded, target_lengths (B,)).
    """

    def __init__(self, network, blank):
        super().__init__(auto_prefix=False)
        self.network = network
        self.ctc = nn.CTCLoss(blank=blank, reduction="none", zero_infinity=False)
        self.log_softmax = nn.LogSoftmax(axis=-1)

    def construct(self, x, lengths, targets, target_lengths):
        logits, out_lengths = self.network(x, lengths)
        log_probs = self.log_softmax(logits.astype(ms.float32))  # (T', B, C); float32 under AMP
        loss = self.ctc(log_probs, targets, out_lengths, target_lengths)  # (B,)
        return loss.mean()


def infer_model_size(param_dict):
    """(hidden_size, num_layers, bidirectional, lookahead, output_bias) read from checkpoint
    parameter names/shapes (lookahead 0: no `lookahead.weight`; output_bias False: no
    `fc.module.bias`; both as in the zoo's)."""
    key = "RNN.lstms.0.weight_hh_l0"
    if key not in param_dict:
        raise ValueError(f"not a DeepSpeech2 checkpoint: it has no parameter '{key}'")
    hidden = int(param_dict[key].shape[1])
    layers = 0
    while f"RNN.lstms.{layers}.weight_hh_l0" in param_dict:
        layers += 1
    bidirectional = "RNN.lstms.0.weight_hh_l0_reverse" in param_dict
    lookahead = param_dict.get("lookahead.weight")
    lookahead = 0 if lookahead is None else int(lookahead.shape[0]) - 1  # (L + 1, H)
    return hidden, layers, bidirectional, lookahead, "fc.module.bias" in param_dict


def build_network(cfg, hidden_size=None, num_layers=None, bidirectional=None, fast_conv=None,
                  onnx=False, lookahead=None, output_bias=None):
    """DeepSpeechModel sized by the arguments, else by cfg.model; with GlobalNorm when
    cfg.features.normalize is global. The output bias is there when `output_bias` (a checkpoint
    that has one) or, when None, when cfg.model.blank_bias is not 0 (it starts at that value).

    fast_conv defaults to src.env.uses_fast_conv(cfg): the CPU numpy convs for training and
    evaluation, never on GPU/Ascend (export passes False). onnx=True (an ONNX export) pads the
    convs with separate Pad ops (ConvFrontEnd's `onnx`).
    """
    labels = load_labels(cfg.labels_path)
    if fast_conv is None:
        fast_conv = uses_fast_conv(cfg)
    if output_bias is None:
        output_bias = cfg.model.blank_bias != 0
    return DeepSpeechModel(
        n_class=len(labels),
        hidden_size=cfg.model.hidden_size if hidden_size is None else hidden_size,
        num_layers=cfg.model.num_layers if num_layers is None else num_layers,
        bidirectional=cfg.model.bidirectional if bidirectional is None else bidirectional,
        n_freq=freq_bins(cfg.features),
        fast_conv=fast_conv,
        onnx=onnx,
        cpu_batch1=cfg.device_target == "CPU" and cfg.entry != "export",
        lookahead=cfg.model.lookahead if lookahead is None else lookahead,
        global_norm=cfg.features.normalize == "global",
        blank_bias=float(cfg.model.blank_bias) if output_bias else None)
