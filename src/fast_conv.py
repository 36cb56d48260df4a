"""CPU fast path for the front-end convolutions: GEMMs in numpy instead of MindSpore's Conv2D.

MindSpore 2.10's CPU Conv2D is oneDNN on plain (NCHW) layouts. On AVX-512 CPUs oneDNN then picks
a reference kernel (~1 GFLOP/s), so the project used to cap oneDNN at AVX2, which makes Conv2D
usable (its backward still runs at ~30 GFLOP/s) but slows everything else oneDNN runs, the LSTMs
above all (~1.4x). Computing both convolutions here instead (one large matrix product per
utterance through numpy's BLAS, ~200 GFLOP/s) removes the need for the cap.

Per utterance, a layer with kernel (K, J) and stride (S, U) over x (C, F, T) is
  frequency-unfold  xu[t, f, k, c] = xpad[c, S*f + k, t]            (Tp, Fo, K*C)
  one GEMM          z = xu @ w2,  w2[(k, c), (j, o)] = w[o, c, k, j]  (Tp, Fo, J*O)
  shifted sum       out[o, f, t] = sum_j z[U*t + j, f, (j, o)]
so time taps are never copied; the backward pass is the same three steps transposed. A layer with
a small receptive field (the first: one input channel, C*K*J = 451) instead gathers whole receptive
fields (im2col, (Fo*To, C*K*J)) and multiplies by w (C*K*J, O): the GEMM's inner size would
otherwise be tiny and half its rows wasted by the time stride. Working one utterance at a time
keeps the temporaries small (~100 MB at 10 s) instead of ~2 GB for a batch.

The ops.Custom "pyfunc" wrapper is CPU only; GPU/Ascend, and export to MindIR, use nn.Conv2d with
the very same weight parameters. Layouts: x (B, C, F, T) and w (O, C, K, J) as nn.Conv2d.
"""
import numpy as np


def _geometry(x_shape, w_shape, pad, stride):
    """(Fo, Tp, To): output frequency bins, padded input length, output length."""
    _, _, f, t = x_shape
    _, _, k, j = w_shape
    fo = (f + 2 * pad[0] - k) // stride[0] + 1
    tp = t + 2 * pad[1]
    return fo, tp, (tp - j) // stride[1] + 1


def _unfold(x1, k, fo, pad, stride_f):
    """One utterance x1 (C, F, T) -> (Tp*Fo, K*C): row (t, f), column (k, c) = xpad[c, S*f+k, t].

    Time-major padding (Tp, Fp, C) makes each row's K*C values one contiguous run of the padded
    input, so the unfold is a single strided copy of 2.7 kB runs (for conv2).
    """
    c, f, t = x1.shape
    xp = np.zeros((t + 2 * pad[1], f + 2 * pad[0], c), np.float32)  # (Tp, Fp, C)
    xp[pad[1]:pad[1] + t, pad[0]:pad[0] + f] = x1.transpose(2, 1, 0)
    st, sf, sc = xp.strides
    view = np.lib.stride_tricks.as_strided(xp, (xp.shape[0], fo, k * c), (st, stride_f * sf, sc),
                                           writeable=False)  # (Tp, Fo, K*C)
    return view.reshape(-1, k * c)  # copies


def _im2col(x1, w_shape, pad, stride, fo, to):
    """One utterance x1 (C, F, T) -> (Fo*To, C*K*J): row (f, t) holds its receptive field."""
    c, f, t = x1.shape
    _, _, k, j = w_shape
    xp = np.zeros((c, f + 2 * pad[0], t + 2 * pad[1]), np.float32)  # (C, Fp, Tp)
    xp[:, pad[0]:pad[0] + f, pad[1]:pad[1] + t] = x1
    sc, sf, st = xp.strides
    view = np.lib.stride_tricks.as_strided(
        xp, (fo, to, c, k, j), (stride[0] * sf, stride[1] * st, sc, sf, st), writeable=False)
    return view.reshape(fo * to, c * k * j)  # copies: (Fo*To, C*K*J)


def _use_im2col(w_shape, method):
    """method "im2col" / "unfold", or None: im2col for small receptive fields (C*K*J <= 1024)."""
    if method is None:
        _, c, k, j = w_shape
        return c * k * j <= 1024
    if method not in ("im2col", "unfold"):
        raise ValueError(f"method must be 'im2col' or 'unfold', got {method!r}")
    return method == "im2col"


def _taps(w):
    """w (O, C, K, J) -> (K*C, J*O): rows (k, c), columns (j, o)."""
    o, c, k, j = w.shape
    return w.transpose(2, 1, 3, 0).reshape(k * c, j * o)


def conv_forward(x, w, pad, stride, method=None):
    """Cross-correlation of x (B, C, F, T) with w (O, C, K, J), zero padding and stride (F, T).

    method: "im2col", "unfold" (frequency-unfold + shifted sum) or None to choose by size.
    """
    b = x.shape[0]
    o, _, k, j = w.shape
    fo, tp, to = _geometry(x.shape, w.shape, pad, stride)
    if _use_im2col(w.shape, method):
        w2 = w.reshape(o, -1).T  # (C*K*J, O)
        out = np.empty((b, o, fo, to), np.float32)
        for n in range(b):
            out[n] = (_im2col(x[n], w.shape, pad, stride, fo, to) @ w2).T.reshape(o, fo, to)
        return out
    w2 = _taps(w)
    span = stride[1] * (to - 1) + 1
    out = np.empty((b, to, fo, o), np.float32)  # (B, To, Fo, O)
    for n in range(b):
        z = (_unfold(x[n], k, fo, pad, stride[0]) @ w2).reshape(tp, fo, j, o)
        out[n] = z[0:span:stride[1], :, 0]
        for i in range(1, j):
            out[n] += z[i:i + span:stride[1], :, i]
    return np.ascontiguousarray(out.transpose(0, 3, 2, 1))  # (B, O, Fo, To)


def conv_backward(x, w, dout, pad, stride, input_grad=True, method=None):
    """Gradients (dx, dw) of conv_forward for the output gradient dout (B, O, Fo, To).

    With input_grad=False dx is returned as zeros (for a layer whose input is data).
    """
    b, c, f, t = x.shape
    o, _, k, j = w.shape
    fo, tp, to = _geometry(x.shape, w.shape, pad, stride)
    if _use_im2col(w.shape, method):
        return _im2col_backward(x, w, dout, pad, stride, input_grad)
    w2 = _taps(w)
    span = stride[1] * (to - 1) + 1
    dx = np.zeros(x.shape, np.float32)
    dw2 = np.zeros(w2.shape, np.float32)  # (K*C, J*O)
    dz = np.zeros((tp, fo, j, o), np.float32)  # taps never written stay zero for every n
    for n in range(b):
        d = dout[n].transpose(2, 1, 0)  # (To, Fo, O)
        for i in range(j):
            dz[i:i + span:stride[1], :, i] = d
        dz2 = dz.reshape(tp * fo, j * o)
        xu = _unfold(x[n], k, fo, pad, stride[0])  # (Tp*Fo, K*C)
        dw2 += xu.T @ dz2
        if input_grad:
            dxu = (dz2 @ w2.T).reshape(tp, fo, k, c)
            dxp = np.zeros((tp, f + 2 * pad[0], c), np.float32)  # (Tp, Fp, C)
            for i in range(k):
                dxp[:, i:i + stride[0] * (fo - 1) + 1:stride[0]] += dxu[:, :, i]
            dx[n] = dxp[pad[1]:pad[1] + t, pad[0]:pad[0] + f].transpose(2, 1, 0)  # (C, F, T)
    dw = dw2.reshape(k, c, j, o).transpose(3, 1, 0, 2)  # (O, C, K, J)
    return dx, np.ascontiguousarray(dw)


def _im2col_backward(x, w, dout, pad, stride, input_grad):
    b, c, f, t = x.shape
    o, _, k, j = w.shape
    fo, to = dout.shape[2:]
    dx = np.zeros(x.shape, np.float32)
    dw = np.zeros((o, c * k * j), np.float32)
    for n in range(b):
        d = dout[n].reshape(o, fo * to)  # (O, Fo*To)
        dw += d @ _im2col(x[n], w.shape, pad, stride, fo, to)
        if input_grad:
            dcols = (d.T @ w.reshape(o, -1)).reshape(fo, to, c, k, j)
            dxp = np.zeros((c, f + 2 * pad[0], t + 2 * pad[1]), np.float32)  # (C, Fp, Tp)
            for i in range(k):
                for m in range(j):
                    dxp[:, i:i + stride[0] * (fo - 1) + 1:stride[0],
                        m:m + stride[1] * (to - 1) + 1:stride[1]] += dcols[:, :, :, i, m].transpose(2, 0, 1)
            dx[n] = dxp[:, pad[0]:pad[0] + f, pad[1]:pad[1] + t]
    return dx, dw.reshape(w.shape)


def make_custom_conv(pad, stride, input_grad=True):
    """ops.Custom (pyfunc, CPU) computing conv_forward, with conv_backward as its bprop."""
    from mindspore import ops

    def forward(x, w):
        return conv_forward(x, w, pad, stride)

    def backward(x, w, dout):
        return conv_backward(x, w, dout, pad, stride, input_grad)

    def out_shape(x_shape, w_shape):
        fo, _, to = _geometry(x_shape, w_shape, pad, stride)
        return [x_shape[0], w_shape[0], fo, to]

    grads = ops.Custom(backward, out_shape=lambda xs, ws, ds: (xs, ws),
                       out_dtype=lambda xt, wt, dt: (xt, wt), func_type="pyfunc")

    def bprop(x, w, out, dout):
        return grads(x, w, dout)

    return ops.Custom(forward, out_shape=out_shape, out_dtype=lambda xt, wt: xt,
                      func_type="pyfunc", bprop=bprop)
