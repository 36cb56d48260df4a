"""CPU fast path for the front-end's second convolution (21x11, stride 2x1): GEMM in numpy.

MindSpore 2.10's CPU Conv2D backward runs at ~30 GFLOP/s on this layer, which dominates a
training step of the small models. The same convolution written as frequency-unfold + one large
matrix product (numpy/BLAS) + a shifted sum over the time taps computes the same values ~2x
faster, forward and backward. It is wired into the graph as an ops.Custom "pyfunc" operator with
its own backward, which MindSpore supports on CPU only; GPU/Ascend, and export to MindIR, use the
plain nn.Conv2d with the very same weight parameter.

Layouts: x (B, C, F, T) and w (O, C, K, J) as nn.Conv2d; internally channels-last (B, F, T, C)
so that every copy moves contiguous runs of C floats. Time stride is 1 (as in conv2).
"""
import numpy as np


def _geometry(x_shape, w_shape, pad, stride_f):
    b, c, f, t = x_shape
    o, _, k, j = w_shape
    fo = (f + 2 * pad[0] - k) // stride_f + 1
    tp = t + 2 * pad[1]
    return b, c, f, t, o, k, j, fo, tp, tp - j + 1


def _unfold(x, k, fo, pad, stride_f):
    """x (B, C, F, T) -> xu (B, Fo, Tp, K, C): xu[b, f, t, k, c] = xpad[b, c, s*f + k, t]."""
    b, c, f, t = x.shape
    xp = np.zeros((b, f + 2 * pad[0], t + 2 * pad[1], c), np.float32)  # (B, Fp, Tp, C)
    xp[:, pad[0]:pad[0] + f, pad[1]:pad[1] + t] = x.transpose(0, 2, 3, 1)
    xu = np.empty((b, fo, xp.shape[2], k, c), np.float32)
    for i in range(k):
        xu[:, :, :, i] = xp[:, i:i + stride_f * (fo - 1) + 1:stride_f]
    return xu


def conv_forward(x, w, pad=(10, 5), stride_f=2):
    """Cross-correlation of x (B, C, F, T) with w (O, C, K, J), zero padding `pad` (F, T)."""
    b, c, f, t, o, k, j, fo, tp, to = _geometry(x.shape, w.shape, pad, stride_f)
    xu = _unfold(x, k, fo, pad, stride_f).reshape(b * fo * tp, k * c)
    w2 = w.transpose(2, 1, 3, 0).reshape(k * c, j * o)  # rows (k, c), columns (j, o)
    z = (xu @ w2).reshape(b, fo, tp, j, o)
    out = z[:, :, 0:to, 0].copy()  # (B, Fo, To, O)
    for i in range(1, j):
        out += z[:, :, i:i + to, i]
    return np.ascontiguousarray(out.transpose(0, 3, 1, 2))  # (B, O, Fo, To)


def conv_backward(x, w, dout, pad=(10, 5), stride_f=2):
    """Gradients (dx, dw) of conv_forward for the output gradient dout (B, O, Fo, To)."""
    b, c, f, t, o, k, j, fo, tp, to = _geometry(x.shape, w.shape, pad, stride_f)
    d = dout.transpose(0, 2, 3, 1)  # (B, Fo, To, O)
    dz = np.zeros((b, fo, tp, j, o), np.float32)
    for i in range(j):
        dz[:, :, i:i + to, i] = d
    dz = dz.reshape(b * fo * tp, j * o)
    xu = _unfold(x, k, fo, pad, stride_f).reshape(b * fo * tp, k * c)
    w2 = w.transpose(2, 1, 3, 0).reshape(k * c, j * o)
    dw = (xu.T @ dz).reshape(k, c, j, o).transpose(3, 1, 0, 2)  # (O, C, K, J)
    dxu = (dz @ w2.T).reshape(b, fo, tp, k, c)
    dxp = np.zeros((b, f + 2 * pad[0], tp, c), np.float32)  # (B, Fp, Tp, C)
    for i in range(k):
        dxp[:, i:i + stride_f * (fo - 1) + 1:stride_f] += dxu[:, :, :, i]
    dx = dxp[:, pad[0]:pad[0] + f, pad[1]:pad[1] + t].transpose(0, 3, 1, 2)  # (B, C, F, T)
    return np.ascontiguousarray(dx), np.ascontiguousarray(dw)


def make_custom_conv(pad, stride_f):
    """ops.Custom (pyfunc, CPU) computing conv_forward, with conv_backward as its bprop."""
    from mindspore import ops

    def forward(x, w):
        return conv_forward(x, w, pad, stride_f)

    def backward(x, w, dout):
        return conv_backward(x, w, dout, pad, stride_f)

    def out_shape(x_shape, w_shape):
        _, _, _, _, o, _, _, fo, _, to = _geometry(x_shape, w_shape, pad, stride_f)
        return [x_shape[0], o, fo, to]

    grads = ops.Custom(backward, out_shape=lambda xs, ws, ds: (xs, ws),
                       out_dtype=lambda xt, wt, dt: (xt, wt), func_type="pyfunc")

    def bprop(x, w, out, dout):
        return grads(x, w, dout)

    return ops.Custom(forward, out_shape=out_shape, out_dtype=lambda xt, wt: xt,
                      func_type="pyfunc", bprop=bprop)
