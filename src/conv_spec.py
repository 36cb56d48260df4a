"""The conv front-end's geometry and the output lengths derived from it (no framework import).

The network (src/deepspeech2.py) is built from CONV_SPEC and the dataset filters utterances with
output_lengths, so both always agree.
"""
from collections import namedtuple

# One conv layer of the front-end: kernel/stride/padding as (frequency, time).
ConvLayer = namedtuple("ConvLayer", "out_channels kernel stride padding")

# The zoo front-end. Both the network and the dataset derive lengths from this one spec.
CONV_SPEC = (
    ConvLayer(32, (41, 11), (2, 2), (20, 5)),
    ConvLayer(32, (21, 11), (2, 1), (10, 5)),
)


def conv_out_size(size, axis, spec):
    """Size along `axis` (0 = frequency, 1 = time) after the conv layers `spec`.

    Works unchanged on Python ints, numpy integer arrays and MindSpore int tensors (only + and //),
    so the dataset (numpy) and the graph (Tensor) use the very same formula. `spec` has no
    default: AMP O1 rewrites the network's source (mindspore.rewrite) and copies the functions
    its construct calls, but not module constants such as CONV_SPEC.
    """
    for layer in spec:
        size = (size + 2 * layer.padding[axis] - layer.kernel[axis]) // layer.stride[axis] + 1
    return size


def output_lengths(frames, spec=CONV_SPEC):
    """Number of network output steps for `frames` spectrogram frames (int, array or Tensor)."""
    return conv_out_size(frames, 1, spec)


def receptive_field(axis=1, spec=CONV_SPEC):
    """Input rows (axis 1: spectrogram frames) that one output of the conv layers `spec` sees:
    each layer widens it by (kernel - 1) x the product of the strides before it."""
    field, jump = 1, 1
    for layer in spec:
        field += (layer.kernel[axis] - 1) * jump
        jump *= layer.stride[axis]
    return field


def right_context(axis=1, spec=CONV_SPEC):
    """Input rows after its own (axis 1: spectrogram frames after frame stride x t) that output
    t of the conv layers `spec` sees: each layer's kernel - 1 - padding, times the product of
    the strides before it (the streaming delay of the front-end, src/streaming.py)."""
    rows, jump = 0, 1
    for layer in spec:
        rows += (layer.kernel[axis] - 1 - layer.padding[axis]) * jump
        jump *= layer.stride[axis]
    return rows


def total_stride(axis=1, spec=CONV_SPEC):
    """Input rows per output row of the conv layers `spec` (axis 1: 2 frames per output)."""
    jump = 1
    for layer in spec:
        jump *= layer.stride[axis]
    return jump
