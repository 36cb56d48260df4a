"""The streaming chunk step in MindSpore: StreamingStep (a Cell of the network's own modules and
weights, exportable), and the step backends of src/streaming.py's engine that run it in-process
or from an exported MindIR (export.py --export.streaming=true).

    step = network_step(net, cfg)   # a DeepSpeechModel or InferenceNet, cfg's stream.chunk_ms
    step = mindir_step(path)        # a streaming MindIR, its settings read from the file
    StreamingRecognizer(step)       # (StreamingRecognizer(net, cfg) builds network_step itself)
"""
import json

import mindspore as ms
import numpy as np
from mindspore import nn, ops

from src.errors import UserError
from src.streaming import (
    STEP_INPUTS,
    ChunkStep,
    Geometry,
    batch_inputs,
    check_info,
    check_streamable,
    split_outputs,
    step_info,
)


class StreamingStep(nn.Cell):
    """One chunk through a DeepSpeechModel's own modules and weights, all state explicit.

    Geometry g (defaults: C = g.chunk feature frames, n = C / 2 outputs, W = C + 9, L lookahead):
    with a the index of the step's first conv1 output (g.first + n x steps so far),
      feats (1, 1, F, W)          un-normalised features of frames 2a - 5 .. 2a + C + 3
      feat_mask (1, W)            1 for frames of the stream, 0 before its start / after its end
      conv_cache (1, 32, F1, 10)  conv1 outputs a - 10 .. a - 1 (after bn1, tanh and mask)
      conv_mask (n,)              1 for conv1 outputs a .. a + n - 1 of the stream
      rnn_mask (n,)               1 for conv2 outputs a - 5 .. a + n - 6 of the stream: all 0
                                  (h, c come back unchanged) or 1s then 0s (see recurrent)
      h, c (layers, 1, H)         LSTM states after conv2 output a - 6
      la_cache (L, 1, H)          LSTM outputs a - 5 - L .. a - 6 (0 outside the stream)
    -> log_probs (n, n_class) of output frames a - 5 - L .. a + n - 6 - L, and the new
       conv_cache, h, c, la_cache.

    A batch of B streams (src/streaming.py's batch_inputs; the server runs concurrent streams'
    steps together) has B in place of each 1 above and masks (B, n); log_probs is then
    (n * B, n_class), time-major. One stream's shapes, those of a streaming export, are B = 1
    with masks (n,).
    """

    def __init__(self, network, geometry):
        super().__init__(auto_prefix=False)  # the network's parameter names, unchanged
        self.norm, self.conv, self.RNN = network.norm, network.conv, network.RNN
        self.lookahead, self.fc = network.lookahead, network.fc
        # The front-end's convolutions with their frequency padding only: the window carries
        # the time context (the offline pass's time padding is the masked frames). Padding as
        # a separate op keeps an ONNX export right (see ConvFrontEnd's `onnx`).
        self.pad1, self.pad2 = (ops.Pad(((0, 0), (0, 0), (layer.padding[0],) * 2, (0, 0)))
                                for layer in network.conv.spec)
        self.conv1, self.conv2 = (ops.Conv2D(layer.out_channels, layer.kernel, mode=1,
                                             pad_mode="valid", stride=layer.stride)
                                  for layer in network.conv.spec)
        self.g = geometry
        self.log_softmax = nn.LogSoftmax(axis=-1)

    def construct(self, feats, feat_mask, conv_cache, conv_mask, rnn_mask, h, c, la_cache):
        conv = self.conv
        x = self.norm(feats, feat_mask)  # (B, 1, F, W), 0 outside the stream
        x = conv.tanh(conv.bn1(self.conv1(self.pad1(x), conv.conv1.weight)))  # (B, 32, F1, n)
        b, t = x.shape[0], x.shape[3]
        x = ops.concat((conv_cache, x * conv_mask.view(b, 1, 1, t)), axis=3)  # (B, 32, F1, 10 + n)
        conv_cache = x[:, :, :, x.shape[3] - self.g.conv_cache:]
        x = conv.tanh(conv.bn2(self.conv2(self.pad2(x), conv.conv2.weight)))  # (B, 32, F', n)
        x = x.view(b, x.shape[1] * x.shape[2], t).transpose(2, 0, 1)  # (n, B, 32 F')
        x, h, c = self.recurrent(x, rnn_mask.view(b, t).transpose(1, 0), h, c)  # (n, B, H)
        x = ops.concat((la_cache, x))  # (L + n, B, H)
        la_cache = x[x.shape[0] - self.g.lookahead:]
        if self.lookahead is not None:
            x = self.lookahead.convolve(x)  # (n, B, H)
        # fc's Dense on (n B, H) and the softmax last: MindSpore 2.10's ONNX exporter loses an
        # output name given to a Reshape (the graph would not load)
        log_probs = self.log_softmax(self.fc.module(x.view(t * b, -1)))  # (n B, n_class)
        return log_probs, conv_cache, h, c, la_cache

    def recurrent(self, x, mask, h, c):
        """x (n, B, I), mask (n, B), h and c (layers, B, H) -> (outputs (n, B, H), 0 where the
        mask is; h, c). The schedule of StreamingRecognizer makes each stream's mask all 0
        (frames before the stream: its state is kept as it is) or 1s then 0s (the stream's end:
        the state after it is never used), so each layer runs the fused LSTM kernel over the
        chunk."""
        keep = mask[0].view(-1, 1)  # (B, 1) 1: these frames are the stream's, 0: none is
        hs, cs, layer = (), (), 0  # tuples, not lists: ONNX export has no list operator
        for lstm in self.RNN.lstms:
            out, h_l, c_l = lstm.forward_from(x, h[layer], c[layer])  # (n, B, H), (B, H)
            x = out * mask.view(mask.shape[0], -1, 1)  # (n, B, H)
            hs += (keep * h_l + (1 - keep) * h[layer],)
            cs += (keep * c_l + (1 - keep) * c[layer],)
            layer += 1
        return x, ops.stack(hs), ops.stack(cs)



class MindSporeStep(ChunkStep):
    """A StreamingStep, or the GraphCell of its MindIR, as the engine's step: the states of a
    stream stepped alone stay MindSpore Tensors between steps; log-probabilities come back as
    numpy. A StreamingStep also runs a batch of streams' steps at once (run_batch)."""

    def __init__(self, cell, info, batches=False):
        super().__init__(info)
        self.cell, self.batches = cell, batches

    def zeros(self, shape):
        return ms.Tensor(np.zeros(shape, np.float32))

    def __call__(self, *inputs):
        probs, *states = self.cell(*(ms.Tensor(x) if isinstance(x, np.ndarray) else x
                                     for x in inputs))
        return (probs.asnumpy(), *states)

    def run_batch(self, steps):
        """Several streams' steps as one batch of B rows, B the next power of two (the sizes
        compiled stay few), rows past the streams repeating the first; an exported MindIR has
        batch 1 and runs them one after another."""
        if len(steps) == 1 or not self.batches:
            return super().run_batch(steps)
        size = 1 << (len(steps) - 1).bit_length()
        padded = steps + [steps[0]] * (size - len(steps))
        arrays = [[x.asnumpy() if isinstance(x, ms.Tensor) else x for x in step]
                  for step in padded]
        outputs = self(*batch_inputs(arrays))
        states = [x.asnumpy() for x in outputs[1:]]
        return split_outputs([outputs[0], *states], size)[:len(steps)]


def network_step(net, cfg):
    """The in-process step of `net` (a DeepSpeechModel or an InferenceNet of one) with cfg's
    stream.chunk_ms, in inference mode; UserError (one line) for a model that cannot stream."""
    network = getattr(net, "network", net)  # an InferenceNet's model
    check_streamable(network)
    info = step_info(network, cfg)
    cell = StreamingStep(network, Geometry(**info["geometry"]))
    cell.set_train(False)
    return MindSporeStep(cell, info, batches=True)


def example_inputs(info):
    """Zero Tensors of the step's input shapes (STEP_INPUTS order): what export traces with."""
    return [ms.Tensor(np.zeros(info["inputs"][name], np.float32)) for name in STEP_INPUTS]


def mindir_user_info(info):
    """custom_func of ms.export: the step's settings as the MindIR's user_info (JSON values)."""
    def custom(model):
        for key, value in info.items():
            model.user_info[key] = json.dumps(value)
    return custom


def mindir_user_info_of(path):
    """The user_info {key: value} of a MindIR file (its protobuf read directly:
    ms.load_mindir is deprecated and refuses file names with spaces)."""
    from google.protobuf.message import DecodeError
    from mindspore.train.mind_ir_pb2 import ModelProto
    model = ModelProto()
    try:
        with open(path, "rb") as f:
            model.ParseFromString(f.read())
    except (OSError, DecodeError) as err:
        raise UserError(f"cannot read MindIR {path}: {err}") from None
    return dict(model.user_info)


def mindir_step(path):
    """The step of a streaming MindIR written by export.py, its settings read from the file's
    user_info; UserError for a file that is not one."""
    try:
        info = {k: json.loads(v) for k, v in mindir_user_info_of(path).items()}
    except ValueError:
        info = {}
    check_info(info, path)
    try:
        cell = nn.GraphCell(ms.load(path))
    except (RuntimeError, ValueError, TypeError) as err:
        raise UserError(f"cannot load MindIR {path}: {str(err).strip().splitlines()[0]}") \
            from None
    return MindSporeStep(cell, info)
