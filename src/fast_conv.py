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
fields (im2col, (To*Fo, J*K*C)) and multiplies by w (J*K*C, O): the GEMM's inner size would
otherwise be tiny and half its rows wasted by the time stride. Both work on a time-major padded
copy (Tp, Fp, C) of the input, where a row's K*C inputs are one contiguous run, and in blocks of a
few frames (BLOCK, ROWS) so that each unfolded block is still in cache for its GEMM.
Utterances run in parallel threads, one per core, each with a single-threaded BLAS (see _map).
Measured at batch 8 x 1000 frames (fwd + bwd of both layers, 2 cores): 2.4 s with whole-utterance
unfolds and one multi-threaded GEMM at a time, 1.3 s like this (conv2 at ~240 GFLOP/s).

The ops.Custom "pyfunc" wrapper is CPU only; GPU/Ascend, and export to MindIR, use nn.Conv2d with
the very same weight parameters. Layouts: x (B, C, F, T) and w (O, C, K, J) as nn.Conv2d.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.lib.stride_tricks import as_strided

BLOCK = 16  # output frames per im2col block: ~2 MB of columns, still in cache for their GEMM
ROWS = 32  # padded input frames per unfold block (conv2: 3.5 MB unfolded, GEMM 1312 x 672 x 352)

_POOL = None  # (thread pool, BLAS thread controller), made on first use


def _cores():
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _map(fn, n):
    """[fn(i) for i in range(n)] with the utterances spread over the cores.

    NumPy releases the GIL in its copies and GEMMs, so each thread runs whole utterances with a
    single-threaded BLAS: the copies (unfold, fold, shifted sums) run in parallel too, instead of
    one core idling through them between multi-threaded GEMMs.
    """
    global _POOL
    if n < 2 or _cores() < 2:
        return [fn(i) for i in range(n)]
    if _POOL is None:
        from threadpoolctl import ThreadpoolController
        _POOL = (ThreadPoolExecutor(_cores(), thread_name_prefix="fast_conv"),
                 ThreadpoolController())
    pool, blas = _POOL
    with blas.limit(limits=1, user_api="blas"):
        return list(pool.map(fn, range(n)))


def _geometry(x_shape, w_shape, pad, stride):
    """(Fo, Tp, To): output frequency bins, padded input length, output length."""
    _, _, f, t = x_shape
    _, _, k, j = w_shape
    fo = (f + 2 * pad[0] - k) // stride[0] + 1
    tp = t + 2 * pad[1]
    return fo, tp, (tp - j) // stride[1] + 1


def _pad_time_major(x1, pad):
    """One utterance x1 (C, F, T) -> zero-padded (Tp, Fp, C): a row's K*C inputs are contiguous."""
    c, f, t = x1.shape
    xp = np.zeros((t + 2 * pad[1], f + 2 * pad[0], c), np.float32)  # (Tp, Fp, C)
    xp[pad[1]:pad[1] + t, pad[0]:pad[0] + f] = x1.transpose(2, 1, 0)
    return xp


def _unpad(dxp, pad, f, t):
    """Gradient w.r.t. the padded (Tp, Fp, C) input -> (C, F, T) of the unpadded input."""
    return dxp[pad[1]:pad[1] + t, pad[0]:pad[0] + f].transpose(2, 1, 0)


def _unfold(xp, k, fo, stride_f):
    """xp (Tp, Fp, C) -> (Tp*Fo, K*C): row (t, f), column (k, c) = xp[t, S*f+k, c].

    Each row's K*C values are one contiguous run of xp, so this is one strided copy of 2.7 kB runs
    (for conv2).
    """
    st, sf, sc = xp.strides
    kc = k * xp.shape[2]
    view = as_strided(xp, (xp.shape[0], fo, kc), (st, stride_f * sf, sc), writeable=False)
    return view.reshape(-1, kc)  # copies: (Tp*Fo, K*C)


def _im2col(xp, k, j, stride, fo, t0, t1):
    """Receptive fields of output frames t0..t1-1 of xp (Tp, Fp, C).

    -> ((t1-t0)*Fo, J*K*C): row (t, f), column (j, k, c) = xp[S_t*t + j, S_f*f + k, c]; the (k, c)
    part of a row is one contiguous run of xp.
    """
    st, sf, sc = xp.strides
    kc = k * xp.shape[2]
    view = as_strided(xp[stride[1] * t0:], (t1 - t0, fo, j, kc),
                      (stride[1] * st, stride[0] * sf, st, sc), writeable=False)
    return view.reshape(-1, j * kc)  # copies


def _tap_frames(a, e, i, s, to):
    """Output frames fed by time tap i from padded rows a..e-1 (time stride s).

    -> (lo, hi, rows): frames lo..hi-1 read rows s*t + i, which are `rows` (a slice) of the block.
    """
    lo = max(0, -(-(a - i) // s))
    hi = max(lo, min(to, -(-(e - i) // s)))
    return lo, hi, slice(s * lo + i - a, s * (hi - 1) + i - a + 1 if hi > lo else s * lo + i - a, s)


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


def _fields(w):
    """w (O, C, K, J) -> (J*K*C, O): rows (j, k, c), the im2col column order."""
    o, c, k, j = w.shape
    return w.transpose(3, 2, 1, 0).reshape(j * k * c, o)


def conv_forward(x, w, pad, stride, method=None):
    """Cross-correlation of x (B, C, F, T) with w (O, C, K, J), zero padding and stride (F, T).

    method: "im2col", "unfold" (frequency-unfold + shifted sum) or None to choose by size.
    """
    b = x.shape[0]
    o, _, k, j = w.shape
    fo, tp, to = _geometry(x.shape, w.shape, pad, stride)
    out = np.empty((b, o, fo, to), np.float32)
    if _use_im2col(w.shape, method):
        w2 = _fields(w)

        def one(n):
            xp = _pad_time_major(x[n], pad)
            res = np.empty((to, fo, o), np.float32)  # (To, Fo, O)
            for t0 in range(0, to, BLOCK):
                t1 = min(to, t0 + BLOCK)
                res[t0:t1] = (_im2col(xp, k, j, stride, fo, t0, t1) @ w2).reshape(t1 - t0, fo, o)
            out[n] = res.transpose(2, 1, 0)
    else:
        w2 = _taps(w)

        def one(n):
            xp = _pad_time_major(x[n], pad)
            res = np.zeros((to, fo, o), np.float32)  # (To, Fo, O)
            for a in range(0, tp, ROWS):
                e = min(tp, a + ROWS)
                z = (_unfold(xp[a:e], k, fo, stride[0]) @ w2).reshape(e - a, fo, j, o)
                for i in range(j):  # time tap i of padded row r feeds output frame (r - i) / S_t
                    lo, hi, rows = _tap_frames(a, e, i, stride[1], to)
                    res[lo:hi] += z[rows, :, i]
            out[n] = res.transpose(2, 1, 0)
    _map(one, b)
    return out  # (B, O, Fo, To)


def conv_backward(x, w, dout, pad, stride, input_grad=True, method=None):
    """Gradients (dx, dw) of conv_forward for the output gradient dout (B, O, Fo, To).

    With input_grad=False dx is returned as zeros (for a layer whose input is data).
    """
    b, c, f, t = x.shape
    o, _, k, j = w.shape
    fo, tp, to = _geometry(x.shape, w.shape, pad, stride)
    dx = np.zeros(x.shape, np.float32)
    if _use_im2col(w.shape, method):
        w2 = _fields(w)

        def one(n):
            xp = _pad_time_major(x[n], pad)
            d = np.ascontiguousarray(dout[n].transpose(2, 1, 0))  # (To, Fo, O)
            dw2 = np.zeros(w2.shape, np.float32)
            for t0 in range(0, to, BLOCK):
                t1 = min(to, t0 + BLOCK)
                dw2 += _im2col(xp, k, j, stride, fo, t0, t1).T @ d[t0:t1].reshape(-1, o)
            if input_grad:
                dcols = (d.reshape(-1, o) @ w2.T).reshape(to, fo, j, k, c)
                dxp = np.zeros(xp.shape, np.float32)  # (Tp, Fp, C)
                for jj in range(j):
                    for kk in range(k):
                        dxp[jj:jj + stride[1] * (to - 1) + 1:stride[1],
                            kk:kk + stride[0] * (fo - 1) + 1:stride[0]] += dcols[:, :, jj, kk]
                dx[n] = _unpad(dxp, pad, f, t)
            return dw2

        dw = sum(_map(one, b)).reshape(j, k, c, o).transpose(3, 2, 1, 0)  # (O, C, K, J)
        return dx, np.ascontiguousarray(dw)
    w2 = _taps(w)

    def one(n):
        xp = _pad_time_major(x[n], pad)
        d = dout[n].transpose(2, 1, 0)  # (To, Fo, O)
        dw2 = np.zeros(w2.shape, np.float32)  # (K*C, J*O)
        dxp = np.zeros(xp.shape, np.float32)  # (Tp, Fp, C)
        for a in range(0, tp, ROWS):
            e = min(tp, a + ROWS)
            dz = np.zeros((e - a, fo, j, o), np.float32)  # taps no output frame reads stay zero
            for i in range(j):
                lo, hi, rows = _tap_frames(a, e, i, stride[1], to)
                dz[rows, :, i] = d[lo:hi]
            dz2 = dz.reshape(-1, j * o)
            dw2 += _unfold(xp[a:e], k, fo, stride[0]).T @ dz2
            if input_grad:  # the frequency fold stays within these rows
                dxu = (dz2 @ w2.T).reshape(e - a, fo, k, c)
                for i in range(k):
                    dxp[a:e, i:i + stride[0] * (fo - 1) + 1:stride[0]] += dxu[:, :, i]
        if input_grad:
            dx[n] = _unpad(dxp, pad, f, t)
        return dw2

    dw = sum(_map(one, b)).reshape(k, c, j, o).transpose(3, 1, 0, 2)  # (O, C, K, J)
    return dx, np.ascontiguousarray(dw)


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
