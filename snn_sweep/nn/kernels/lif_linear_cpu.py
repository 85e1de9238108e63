"""The fused Leaky + Linear of lif_linear.py as compiled CPU loops (Numba): forward, backward.

For float32 with a scalar beta and threshold: lif_linear.LeakyLinearFunction calls these where
they apply. A layer whose spikes feed a Linear runs one sample's row of neurons at a time and
applies that Linear (forward) or its transpose and weight gradient (backward) while the row is
in cache; the row's recurrence is lif_cpu.py's (_run, _adjoint_step). tests/test_lif.py checks
these loops against the eager neuron followed by nn.Linear.

Arrays are 2-D as in lif_cpu.py: [T, N], a [1, N] one used at every step.
"""
import numpy as np
import torch
from numba import njit, prange, uint64

from .lif_cpu import _adjoint_step, _gradients, _resets, _rows, _run, threads

# The Linear that spikes feed (weight [K, H], 40 KB for MNIST's 10 x 1000) does not fit a 32 KB
# L1 cache, so the loops below take 4 time steps per pass over its rows; past the last step a
# row index is clamped, and what it adds is weighted by 0 or not used.
PASS = 4


@njit(inline="always")
def _pass_rows(a, t0, last):
    """Rows t0 .. t0 + 3 of a [T, width], clamped to the last step."""
    return a[t0], a[min(t0 + 1, last)], a[min(t0 + 2, last)], a[min(t0 + 3, last)]


@njit(inline="always")
def _pass_grads(g_out, t0, last, col):
    """g_out[t, col] for the PASS (4) steps from t0, 0 past the last step."""
    return (g_out[t0, col], g_out[min(t0 + 1, last), col] * np.float32(t0 + 1 <= last),
            g_out[min(t0 + 2, last), col] * np.float32(t0 + 2 <= last),
            g_out[min(t0 + 3, last), col] * np.float32(t0 + 3 <= last))


@njit(fastmath={"reassoc", "contract"}, cache=True)
def _dot4(w, s0, s1, s2, s3):
    """(w . s0, w . s1, w . s2, w . s3), reading w once; reassociation lets LLVM vectorize the
    sums."""
    a0 = a1 = a2 = a3 = np.float32(0.0)
    for j in range(uint64(w.shape[0])):
        x = w[j]
        a0 += x * s0[j]
        a1 += x * s1[j]
        a2 += x * s2[j]
        a3 += x * s3[j]
    return a0, a1, a2, a3


@njit(inline="always")
def _drop(s, scale, b):
    """Dropout between the spikes and the Linear: row b of scale [B, H] (0 for a dropped
    neuron, 1/(1-p) for a kept one; one mask for every step) multiplies each step's spikes.
    An empty scale means no dropout."""
    if scale.shape[0] == 0:
        return
    m = scale[b]
    for t in range(s.shape[0]):
        st = s[t]
        for j in range(uint64(st.shape[0])):
            st[j] *= m[j]


@njit(parallel=True, cache=True)
def _forward_linear(cur, steps, weight, bias, beta, thr, zero_reset, sub_reset, scale, out, spk,
                    keep):
    """_forward for a layer whose spikes [T, B, H] feed a Linear (weight [K, H], bias [K]),
    through dropout if scale is not empty (_drop), giving also its output out [T, B*K]: one
    sample's row of H neurons is stepped into a cache-sized buffer and multiplied by the weight
    there, instead of writing the spikes out for a [T*B, H] x [H, K] matmul that runs at a
    fraction of the CPU's speed for a small K. The spikes (before dropout) go to spk [T, B*H]
    only if keep."""
    k_out, width = weight.shape
    rows = cur.shape[1] // width
    width = uint64(width)
    last = steps - 1
    for b in prange(rows):
        lo = b * width
        s = np.empty((steps, width), np.float32)
        _run(cur, lo, lo + width, steps, beta, thr, zero_reset, sub_reset,
             np.empty((1, width), np.float32), s, 0)
        if keep:
            spk[:, lo:lo + width] = s
        _drop(s, scale, b)
        for t0 in range(0, steps, PASS):
            s0, s1, s2, s3 = _pass_rows(s, t0, last)
            for k in range(k_out):
                a = _dot4(weight[k], s0, s1, s2, s3)
                for i in range(min(PASS, steps - t0)):
                    out[t0 + i, b * k_out + k] = a[i] + bias[k]


@njit(parallel=True, cache=True)
def _backward_linear(cur, steps, g_out, weight, beta, thr, zero_reset, sub_reset, kind, p, q,
                     params, scale, g_cur, g_beta, g_thr, g_weight):
    """_backward for a layer whose spikes [T, B, H] only feed a Linear (weight [K, H]), through
    dropout if scale is not empty, given g_out [T, B*K], the gradient of the Linear's output.
    Row by row, dL/dspk_t = (g_out_t @ weight) * scale_b is formed in cache instead of as a
    [T, B, H] tensor, and the Linear's weight gradient sum_t g_out_t^T (spk_t * scale_b) is
    taken from the replayed spikes, one partial sum per task in g_weight [tasks, K, H]
    (zeros)."""
    k_out, width = weight.shape
    rows = cur.shape[1] // width
    s_cur = 1 if g_cur.shape[0] > 1 else 0
    tasks = g_weight.shape[0]
    width = uint64(width)
    last = steps - 1
    for task in prange(tasks):
        gw = g_weight[task]
        mem = np.empty((steps, width), np.float32)
        spk = np.empty((steps, width), np.float32)
        later, d, none = np.empty(width, np.float32), np.empty(width, np.float32), \
            np.zeros(width, np.float32)
        gs = np.empty((PASS, width), np.float32)  # dL/dspk of one pass's steps
        for b in range(task * rows // tasks, (task + 1) * rows // tasks):
            lo, o = b * width, b * k_out
            _run(cur, lo, lo + width, steps, beta, thr, zero_reset, sub_reset, mem, spk, 0)
            _drop(spk, scale, b)
            for t0 in range(0, steps, PASS):  # weight gradient: gw[k] += g_out[t, k] spk_t
                s0, s1, s2, s3 = _pass_rows(spk, t0, last)
                for k in range(k_out):
                    c0, c1, c2, c3 = _pass_grads(g_out, t0, last, o + k)
                    a = gw[k]
                    for j in range(width):
                        a[j] += (c0 * s0[j] + c1 * s1[j]) + (c2 * s2[j] + c3 * s3[j])
            later[:] = 0
            for t0 in range(last - last % PASS, -1, -PASS):
                gs[:] = 0  # dL/dspk_t = sum_k g_out[t, k] weight[k]
                for k in range(k_out):
                    c0, c1, c2, c3 = _pass_grads(g_out, t0, last, o + k)
                    w = weight[k]
                    for j in range(width):
                        x = w[j]
                        gs[0, j] += c0 * x
                        gs[1, j] += c1 * x
                        gs[2, j] += c2 * x
                        gs[3, j] += c3 * x
                _drop(gs, scale, b)
                for t in range(min(t0 + PASS, steps) - 1, t0 - 1, -1):
                    _adjoint_step(t, mem, gs[t - t0], none, g_cur[t * s_cur, lo:lo + width], d,
                                  later, params, g_beta[lo:lo + width], g_thr[lo:lo + width],
                                  beta, thr, zero_reset, sub_reset, kind, p, q)


def _scale(scale) -> np.ndarray:
    """A dropout scale [B, H] as the kernels take it; None (no dropout) as an empty array."""
    return np.empty((0, 0), np.float32) if scale is None else scale.contiguous().numpy()


def forward_linear(cur: torch.Tensor, steps: int, weight, bias, beta: float, thr: float,
                   reset: int, keep_spikes: bool, scale=None):
    """cur [T, B, H] or [1, B, H] (used at every step), weight [K, H], bias [K], scale [B, H]
    (dropout's mask over 1 - p; None: no dropout). Returns the Linear's output [steps, B, K]
    and the spikes [steps, B, H] if keep_spikes, else None."""
    batch, k_out = cur.shape[1], weight.shape[0]
    out = cur.new_empty((steps, batch, k_out))
    spk = cur.new_empty((steps, *cur.shape[1:]) if keep_spikes else (1, 1))
    threads()
    _forward_linear(_rows(cur), steps, weight.detach().contiguous().numpy(),
                    bias.detach().contiguous().numpy(), np.float32(beta), np.float32(thr),
                    *_resets(reset), _scale(scale), _rows(out), _rows(spk), keep_spikes)
    return out, (spk if keep_spikes else None)


def backward_linear(cur, steps: int, g_out, weight, beta: float, thr: float, reset: int,
                    kind: int, p: float, q: float, params: bool, scale=None):
    """lif_cpu.backward() for spikes that feed a Linear (weight [K, H]) and nothing else, through
    forward_linear's dropout scale, given the gradient of its output g_out [T, B, K]; returns
    also the Linear's weight gradient."""
    g_cur, g_beta, g_thr = _gradients(cur, params)
    tasks = min(threads(), cur[0].numel() // weight.shape[1])
    g_weight = torch.zeros(tasks, *weight.shape)
    _backward_linear(_rows(cur), steps, _rows(g_out), weight.detach().contiguous().numpy(),
                     np.float32(beta), np.float32(thr), *_resets(reset), kind, np.float32(p),
                     np.float32(q), params, _scale(scale), _rows(g_cur), g_beta.numpy(),
                     g_thr.numpy(), g_weight.numpy())
    return (g_cur, (g_beta if params else None), (g_thr if params else None),
            g_weight.sum(0))
