"""Compiled CPU loops (Numba) for the conv SNN's pooling and sparse input conv.

2x2 max pooling over channels-last activations, and an input conv whose input changes sparsely
over time. conv.py wraps them as autograd
Functions; tests/test_conv.py checks them against F.conv2d and F.max_pool2d.

Arrays are channels-last: [N, H, W, C] (N = time x batch rows). A pooled element keeps the
position of its maximum as one byte (dy * 2 + dx), where PyTorch keeps an int64; ties go to
the first maximum in row-major order, as in PyTorch's CPU kernels.

The input conv uses the split of sparse.py: x[t] = m + d[t], with m the majority value of
each input element over time and d[t] sparse. conv(x[t]) = conv(m) + W * d[t]: the first term
is a dense conv over the batch once (PyTorch), the second a scatter of weight slabs, one per
non-zero d element. Each sample's pre-pool map [H, W, C] stays in cache while a step's events
are added to it and it is pooled.
"""
import numpy as np
from numba import njit, prange, uint64


@njit(inline="always")
def _pool_into(pre, out, idx):
    """2x2 max pooling of pre [H, W, C] into out, idx [H // 2, W // 2, C]."""
    hp, wp, c = out.shape
    for py in range(hp):
        for px in range(wp):
            a, b = pre[2 * py, 2 * px], pre[2 * py, 2 * px + 1]
            e, f = pre[2 * py + 1, 2 * px], pre[2 * py + 1, 2 * px + 1]
            o, k = out[py, px], idx[py, px]
            for j in range(uint64(c)):
                m, i = a[j], np.uint8(0)
                if b[j] > m:
                    m, i = b[j], np.uint8(1)
                if e[j] > m:
                    m, i = e[j], np.uint8(2)
                if f[j] > m:
                    m, i = f[j], np.uint8(3)
                o[j] = m
                k[j] = i


@njit(parallel=True, cache=True)
def pool(pre, out, idx):
    """pre [N, H, W, C] -> out, idx [N, H // 2, W // 2, C]."""
    for n in prange(pre.shape[0]):
        _pool_into(pre[n], out[n], idx[n])


@njit(parallel=True, cache=True)
def unpool(g_out, idx, g_pre):
    """The gradient of pool: g_out [N, Hp, Wp, C] at the maxima's positions of g_pre
    [N, H, W, C], zeros elsewhere (every element of g_pre is written)."""
    n, hp, wp, c = g_out.shape
    zero = np.float32(0)
    odd = g_pre.shape[1] != 2 * hp or g_pre.shape[2] != 2 * wp
    for r in prange(n):
        if odd:  # rows or columns past the last window get no gradient
            g_pre[r] = 0
        # A pooled row at a time, as flat [W * C] rows: a view per window (pool's way) costs
        # more than the few bytes of gradient it writes.
        for py in range(hp):
            top, bot = g_pre[r, 2 * py].reshape(-1), g_pre[r, 2 * py + 1].reshape(-1)
            g, k = g_out[r, py].reshape(-1), idx[r, py].reshape(-1)
            for px in range(wp):
                s, d = 2 * px * c, px * c
                for j in range(c):
                    v, i = g[d + j], k[d + j]
                    top[s + j] = v if i == 0 else zero
                    top[s + c + j] = v if i == 1 else zero
                    bot[s + j] = v if i == 2 else zero
                    bot[s + c + j] = v if i == 3 else zero


@njit(inline="always")
def _axpy(dst, v, src):
    for j in range(uint64(dst.shape[0])):
        dst[j] += v * src[j]


@njit(inline="always")
def _scatter(out, d, w, forward):
    """Over the non-zero elements v = d[y, x, ci] of d [Hin, Win, Cin] and the outputs
    (y - ky, x - kx) of out [H, W, C] they reach through w [KH, KW, Cin, C]: the valid conv,
    out[y - ky, x - kx] += v * w[ky, kx, ci] (forward), or its weight gradient given the
    output gradient out, w[ky, kx, ci] += v * out[y - ky, x - kx]."""
    kh, kw, cin = w.shape[0], w.shape[1], w.shape[2]
    h, wd = out.shape[0], out.shape[1]
    for y in range(d.shape[0]):
        for x in range(d.shape[1]):
            for ci in range(cin):
                v = d[y, x, ci]
                if v == 0:
                    continue
                for ky in range(max(0, y - h + 1), min(kh, y + 1)):
                    for kx in range(max(0, x - wd + 1), min(kw, x + 1)):
                        if forward:
                            _axpy(out[y - ky, x - kx], v, w[ky, kx, ci])
                        else:
                            _axpy(w[ky, kx, ci], v, out[y - ky, x - kx])


@njit(parallel=True, cache=True)
def sparse_conv_pool(base, dev, w, out, idx):
    """For every step t and sample b: pool(base[b] + W * dev[t, b]) into out[t, b], idx[t, b].
    base [B, H, W, C] (conv(m) with its bias), dev [T, B, Hin, Win, Cin], w [KH, KW, Cin, C],
    out, idx [T, B, H // 2, W // 2, C]."""
    steps, batch = dev.shape[0], dev.shape[1]
    for b in prange(batch):
        pre = np.empty(base.shape[1:], np.float32)
        for t in range(steps):
            pre[:] = base[b]
            _scatter(pre, dev[t, b], w, True)
            _pool_into(pre, out[t, b], idx[t, b])


@njit(parallel=True, cache=True)
def sparse_conv_pool_backward(g_out, idx, dev, g_base, g_w):
    """Gradients of sparse_conv_pool given g_out [T, B, Hp, Wp, C]: g_base [B, H, W, C]
    (zeros; the sum over time of each step's pre-pool gradient, which autograd takes on
    through conv(m)) and the scatter's weight gradient, one partial sum per task in
    g_w [tasks, KH, KW, Cin, C] (zeros)."""
    steps, batch, hp, wp, c = g_out.shape
    tasks = g_w.shape[0]
    h, wd = g_base.shape[1], g_base.shape[2]
    for task in prange(tasks):
        gw = g_w[task]
        g_pre = np.zeros((h, wd, c), np.float32)  # one step's pre-pool gradient
        for b in range(task * batch // tasks, (task + 1) * batch // tasks):
            gb = g_base[b]
            for t in range(steps):
                g, k = g_out[t, b], idx[t, b]
                for py in range(hp):
                    for px in range(wp):
                        for j in range(uint64(c)):
                            y, x = 2 * py + (k[py, px, j] >> 1), 2 * px + (k[py, px, j] & 1)
                            g_pre[y, x, j] = g[py, px, j]
                            gb[y, x, j] += g[py, px, j]
                _scatter(g_pre, dev[t, b], gw, False)
                for py in range(hp):  # clear only what this step wrote
                    for px in range(wp):
                        for j in range(uint64(c)):
                            g_pre[2 * py + (k[py, px, j] >> 1), 2 * px + (k[py, px, j] & 1),
                                  j] = 0

