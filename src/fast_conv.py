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

A layer with time stride 1 (the second: 233 of the front-end's 252 GFLOP per training step at
batch 8 x 1000 frames, forward and both gradients) runs in the time-frequency domain instead
("fft"). Along time it is a plain correlation, so after one real FFT of length N >= T + pad of
every (utterance, row, channel) it becomes, for each of the N/2+1 bins on its own, one complex
matrix product over the frequency receptive fields, then an inverse FFT:
  Y[bin, (b, f), o] = sum_{(k, c)} X[bin, b, S*f + k, c] * conj(W[bin, (k, c), o])
Per output frame that is ~(N/2+1)/To * 4 ~= 2 real multiply-adds per (c, k, o) instead of J = 11:
5.4x fewer FLOPs (43 instead of 233 GFLOP). Gradients are per-bin products too: dW = X^T conj(dY),
of which only the first J lags are taps (a small inverse-DFT matrix, no full inverse FFT), and dX
one frequency phase at a time (rows S*m + p get sum_q dY[m - q] W[S*q + p]), a product over
receptive fields of dY with no scatter-add. Complex products run as real GEMMs on the interleaved
(re, im) layout (_expand); bins are processed in chunks of BINS, one chunk per thread. The result
differs from the direct sum by float32 rounding only (~1e-6 relative).
Measured at batch 8 x 1000 frames (fwd + bwd of both layers, 2 cores): 2.4 s with whole-utterance
unfolds and one multi-threaded GEMM at a time, 1.3 s with threads and blocks, ~0.9 s with the
second layer in the time-frequency domain (that layer alone: ~1.2 s -> ~0.8 s).

The ops.Custom "pyfunc" wrapper is CPU only; GPU/Ascend, and export to MindIR, use nn.Conv2d with
the very same weight parameters. Layouts: x (B, C, F, T) and w (O, C, K, J) as nn.Conv2d.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import scipy.fft
from numpy.lib.stride_tricks import as_strided

BLOCK = 16  # output frames per im2col block: ~2 MB of columns, still in cache for their GEMM
ROWS = 32  # padded input frames per unfold block (conv2: 3.5 MB unfolded, GEMM 1312 x 672 x 352)
BINS = 4  # FFT bins per product (conv2 at batch 8: 7 MB of receptive fields, GEMM 328 x 1344 x 64)
METHODS = ("im2col", "unfold", "fft")

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


def _method(w_shape, stride, method):
    """The method for a layer: `method` if given, else im2col for small receptive fields
    (C*K*J <= 1024), fft for time stride 1, unfold otherwise."""
    if method is None:
        _, c, k, j = w_shape
        if c * k * j <= 1024:
            return "im2col"
        return "fft" if stride[1] == 1 else "unfold"
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    if method == "fft" and stride[1] != 1:
        raise ValueError(f"method 'fft' needs time stride 1, got stride {tuple(stride)}")
    return method


def _chunks(n, size):
    """[(a, min(n, a + size)) for a in range(0, n, size)]."""
    return [(a, min(n, a + size)) for a in range(0, n, size)]


def _fft_length(t, pad_t):
    """FFT length for T frames with pad_t zeros on each side: >= T + pad_t, not T + 2*pad_t.

    Circular indices past the end wrap onto the leading pad_t zeros, which is where the trailing
    zeros would have been read: no output frame sees wrapped-around data.
    """
    return scipy.fft.next_fast_len(t + pad_t, real=True)


def _dft_taps(n, j):
    """(re, im), each (J, N/2+1): taps (J,) @ re + i (taps @ im) = rfft(taps, n)."""
    ang = -2 * np.pi * np.outer(np.arange(j), np.arange(n // 2 + 1)) / n
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32)


def _idft_taps(n, j):
    """(re, im), each (N/2+1, J): irfft(s, n)[:J] = s.real @ re - s.imag @ im.

    Bins other than 0 and (even n) n/2 stand for their conjugate mirror bin too, hence weight 2.
    """
    nb = n // 2 + 1
    weight = np.full(nb, 2.0 / n)
    weight[0] = 1.0 / n
    if n % 2 == 0:
        weight[-1] = 1.0 / n
    ang = 2 * np.pi * np.outer(np.arange(nb), np.arange(j)) / n
    return ((weight[:, None] * np.cos(ang)).astype(np.float32),
            (weight[:, None] * np.sin(ang)).astype(np.float32))


def _weight_spectrum(w, n):
    """w (O, C, K, J) -> (re, im) of rfft(w, n) along time, each (N/2+1, K*C, O)."""
    o, c, k, j = w.shape
    taps = np.ascontiguousarray(w.transpose(3, 2, 1, 0)).reshape(j, k * c * o)  # (J, K*C*O)
    re, im = _dft_taps(n, j)
    return (re.T @ taps).reshape(-1, k * c, o), (im.T @ taps).reshape(-1, k * c, o)


def _expand(re, im):
    """Complex matrices re + i*im (..., K, N) -> real (..., 2K, 2N) such that for complex64 a
    (..., M, K): a.view(float32) @ _expand(re, im) == (a @ (re + i*im)).view(float32)."""
    *lead, k, n = re.shape
    r = np.empty((*lead, k, 2, n, 2), np.float32)  # (.., k, re/im of a, n, re/im of the product)
    r[..., 0, :, 0] = re
    r[..., 0, :, 1] = im
    r[..., 1, :, 0] = -im
    r[..., 1, :, 1] = re
    return r.reshape(*lead, 2 * k, 2 * n)


def _time_spectrum(x, pad, n):
    """x (B, C, F, T) -> rfft along time of the zero-padded input: (N/2+1, B, Fp, C) complex64."""
    b, c, f, t = x.shape
    xp = np.zeros((n, b, f + 2 * pad[0], c), np.float32)  # (N, B, Fp, C), time leading for rfft

    def one(i):
        xp[pad[1]:pad[1] + t, i, pad[0]:pad[0] + f] = x[i].transpose(2, 1, 0)

    _map(one, b)
    return scipy.fft.rfft(xp, axis=0, workers=_cores())


def _bin_fields(xf, b0, b1, k, fo, stride_f):
    """Frequency receptive fields of bins b0..b1-1 of xf (nb, B, Fp, C).

    -> (b1-b0, B*Fo, K*C): row (b, f), column (k, c) = xf[bin, b, S*f + k, c] (copies).
    """
    v = xf[b0:b1]
    s = v.strides
    _, b, _, c = v.shape
    view = as_strided(v, (b1 - b0, b, fo, k * c), (s[0], s[1], stride_f * s[2], s[3]),
                      writeable=False)
    # A copy in every case: with B = 1 the reshape alone is a view of overlapping rows, which
    # np.matmul multiplies without BLAS (measured: conv2 at 1 x 1000 frames 0.57 s, not 0.05 s).
    return np.ascontiguousarray(view.reshape(b1 - b0, b * fo, k * c))


def _fft_forward(x, w, pad, stride):
    """conv_forward for time stride 1 in the time-frequency domain -> (B, O, Fo, To)."""
    b = x.shape[0]
    o, _, k, _ = w.shape
    fo, _, to = _geometry(x.shape, w.shape, pad, stride)
    n = _fft_length(x.shape[3], pad[1])
    xf = _time_spectrum(x, pad, n)  # (nb, B, Fp, C)
    wre, wim = _weight_spectrum(w, n)  # (nb, K*C, O) each
    yf = np.empty((xf.shape[0], b * fo, o), np.complex64)
    chunks = _chunks(xf.shape[0], BINS)

    def one(i):  # correlation: multiply by the conjugate weight spectrum
        b0, b1 = chunks[i]
        fields = _bin_fields(xf, b0, b1, k, fo, stride[0]).view(np.float32)
        np.matmul(fields, _expand(wre[b0:b1], -wim[b0:b1]), out=yf[b0:b1].view(np.float32))

    _map(one, len(chunks))
    y = scipy.fft.irfft(yf.reshape(-1, b, fo, o), n, axis=0, workers=_cores())  # (N, B, Fo, O)
    out = np.empty((b, o, fo, to), np.float32)

    def back(i):
        out[i] = y[:to, i].transpose(2, 1, 0)

    _map(back, b)
    return out  # (B, O, Fo, To)


def _input_phases(f, k, pad_f, stride_f):
    """How the input gradient is read off the output gradient, one frequency phase at a time.

    Input row r = S*m + p (of the padded input) gets sum_q dY[m - q] W[S*q + p]: a correlation of
    dY with phase p's Q_p taps, i.e. plain receptive fields over dY rows, no scatter-add. Per
    phase: (p, Q_p, m0, m1, ks), rows S*m + p for m0 <= m < m1 lie in the unpadded input, ks are
    the kernel rows in field order (q reversed so that fields run forwards over dY). A phase
    with Q_p = 0 (stride > kernel) has rows no output reads: their gradient is zero.
    """
    phases = []
    for p in range(stride_f):
        ks = list(range(p, k, stride_f))[::-1]
        m0 = -(-(pad_f - p) // stride_f)
        m1 = -(-(pad_f + f - p) // stride_f)
        phases.append((p, len(ks), m0, m1, ks))
    return phases


def _fft_backward(x, w, dout, pad, stride, input_grad):
    """conv_backward for time stride 1 in the time-frequency domain -> (dx, dw)."""
    b, c, f, t = x.shape
    o, _, k, j = w.shape
    fo, _, to = _geometry(x.shape, w.shape, pad, stride)
    n = _fft_length(x.shape[3], pad[1])
    xf = _time_spectrum(x, pad, n)  # (nb, B, Fp, C)
    nb = xf.shape[0]
    phases = _input_phases(f, k, pad[0], stride[0])
    # dY rows padded with zeros so that every phase's fields stay inside: lo before, hi after
    lo = max(q for _, q, _, _, _ in phases) - 1
    hi = max(0, max(m1 for _, _, _, m1, _ in phases) - fo)
    dp = np.zeros((n, b, lo + fo + hi, o), np.float32)  # dout time-major, zero beyond To frames

    def put(i):
        dp[:to, i, lo:lo + fo] = dout[i].transpose(2, 1, 0)

    _map(put, b)
    df = scipy.fft.rfft(dp, axis=0, workers=_cores())  # (nb, B, lo+Fo+hi, O)
    wre, wim = _weight_spectrum(w, n)
    dw_re = np.empty((nb, k * c, o), np.float32)
    dw_im = np.empty((nb, k * c, o), np.float32)
    dxf = np.zeros((nb, b, f, c), np.complex64) if input_grad else None
    chunks = _chunks(nb, BINS)

    def one(i):
        b0, b1 = chunks[i]
        fields = _bin_fields(xf, b0, b1, k, fo, stride[0]).view(np.float32)  # (bins, B*Fo, 2KC)
        d = df[b0:b1]  # (bins, B, lo+Fo+hi, O)
        d_out = np.ascontiguousarray(d[:, :, lo:lo + fo]).reshape(b1 - b0, -1, o)  # (bins, B*Fo, O)
        # dW = fields^T conj(dY): all four re/im products in one GEMM, then combined
        g = np.matmul(fields.transpose(0, 2, 1), d_out.view(np.float32))
        g = g.reshape(b1 - b0, k * c, 2, o, 2)
        np.add(g[:, :, 0, :, 0], g[:, :, 1, :, 1], out=dw_re[b0:b1])
        np.subtract(g[:, :, 1, :, 0], g[:, :, 0, :, 1], out=dw_im[b0:b1])
        if not input_grad:
            return
        w4 = (wre[b0:b1].reshape(-1, k, c, o), wim[b0:b1].reshape(-1, k, c, o))
        s = d.strides
        for p, q, m0, m1, ks in phases:
            if q == 0 or m1 <= m0:
                continue
            # fields over dY: row (b, m), column (q', o) = dYpad[lo + m - q + 1 + q']
            start = d[:, :, lo + m0 - q + 1:]
            dfield = np.ascontiguousarray(as_strided(  # a copy for B = 1 too (see _bin_fields)
                start, (b1 - b0, b, m1 - m0, q * o), s,
                writeable=False).reshape(b1 - b0, -1, q * o))  # (bins, B*M, Q*O)
            wp = [part[:, ks].transpose(0, 1, 3, 2).reshape(b1 - b0, q * o, c) for part in w4]
            rows = np.matmul(dfield.view(np.float32), _expand(*wp)).view(np.complex64)
            r0 = stride[0] * m0 + p - pad[0]  # first unpadded input row of this phase
            dxf[b0:b1, :, r0::stride[0]] = rows.reshape(b1 - b0, b, m1 - m0, c)

    _map(one, len(chunks))
    xf = df = None  # frees ~75 MB (batch 8 x 1000 frames) before the inverse FFTs allocate theirs
    re, im = _idft_taps(n, j)  # (nb, J): only the first J lags of the correlation are taps
    dw = re.T @ dw_re.reshape(nb, -1) - im.T @ dw_im.reshape(nb, -1)  # (J, K*C*O)
    dw = np.ascontiguousarray(dw.reshape(j, k, c, o).transpose(3, 2, 1, 0))  # (O, C, K, J)
    dx = np.zeros(x.shape, np.float32)
    if input_grad:
        dxp = scipy.fft.irfft(dxf, n, axis=0, workers=_cores())  # (N, B, F, C)

        def back(i):
            dx[i] = dxp[pad[1]:pad[1] + t, i].transpose(2, 1, 0)

        _map(back, b)
    return dx, dw


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

    method: "im2col", "unfold" (frequency-unfold + shifted sum), "fft" (time stride 1 only) or
    None to choose by size and stride.
    """
    method = _method(w.shape, stride, method)
    if method == "fft":
        return _fft_forward(x, w, pad, stride)
    b = x.shape[0]
    o, _, k, j = w.shape
    fo, tp, to = _geometry(x.shape, w.shape, pad, stride)
    out = np.empty((b, o, fo, to), np.float32)
    if method == "im2col":
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
    method = _method(w.shape, stride, method)
    if method == "fft":
        return _fft_backward(x, w, dout, pad, stride, input_grad)
    b, c, f, t = x.shape
    o, _, k, j = w.shape
    fo, tp, to = _geometry(x.shape, w.shape, pad, stride)
    dx = np.zeros(x.shape, np.float32)
    if method == "im2col":
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
