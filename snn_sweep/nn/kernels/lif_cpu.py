"""The LIF recurrence of lif.py as compiled CPU loops (Numba): forward and backward.

For float32 with a scalar threshold and a scalar or per-neuron beta: lif.LeakyFunction calls
these where they apply; lif_linear_cpu.py builds on their inner loops (scalar beta) for a layer
whose spikes feed a Linear.

Eager PyTorch runs each step of the recurrence as 3 (forward) to 8 (backward) passes over
[B, N], each a trip through memory. Here a block of neurons walks all T steps in one loop that
LLVM vectorizes, with its state in a small buffer, and blocks run in parallel (prange). Resets
are selected arithmetically and the surrogate outside the inner loop, so that loop has no
branches. The backward does not read a stored membrane: each block replays its forward into a
cache-sized buffer first, which is cheaper than writing and reading [T, N] through memory, and
lets the forward skip the membrane of a hidden layer. tests/test_lif.py checks these loops and
the eager ones against stepping snn.Leaky.

Arrays are 2-D [T, N] (N = everything but time). A [1, N] array stands for one row used at
every step: a time-constant input current and its summed gradient, an absent gradient (zeros),
or a membrane nobody keeps (scratch). beta is a float32 scalar, or an array [N] (a per-neuron
beta broadcast over a row): _row and _at select it, compiled apart for each, so the scalar
loops are those without the array.
"""
import numba
import numpy as np
import torch
from numba import njit, prange, types, uint64
from numba.extending import overload

ONE = np.float32(1.0)
KINDS = {"atan": 0, "fast_sigmoid": 1}  # surrogates whose derivative _backward computes


def _row(beta, lo, hi):
    """beta for neurons lo:hi: a scalar itself, an array's slice (compiled: _row_impl)."""
    return beta[lo:hi] if np.ndim(beta) else beta


def _at(beta, j):
    """beta of neuron j of a row from _row (compiled: _at_impl)."""
    return beta[j] if np.ndim(beta) else beta


@overload(_row)
def _row_impl(beta, lo, hi):
    if isinstance(beta, types.Array):
        return lambda beta, lo, hi: beta[lo:hi]
    return lambda beta, lo, hi: beta


@overload(_at)
def _at_impl(beta, j):
    if isinstance(beta, types.Array):
        return lambda beta, j: beta[j]
    return lambda beta, j: beta


def _block(steps: int) -> int:
    """Neurons per task: the backward's replayed membrane [T, block] stays within ~256 KB."""
    return max(64, min(1024, (1 << 16) // steps))


@njit(inline="always")
def _run(cur, lo, hi, steps, beta, thr, zero_reset, sub_reset, mem, spk, off):
    """Step neurons lo:hi of cur from rest, writing their membrane and spikes at columns
    off:off + hi - lo of mem[t] and spk[t]."""
    per_step = 1 if cur.shape[0] > 1 else 0
    s_mem = 1 if mem.shape[0] > 1 else 0
    s_spk = 1 if spk.shape[0] > 1 else 0
    width = uint64(hi - lo)  # unsigned indices: no negative-index check per access
    m = np.zeros(width, np.float32)  # mem_{t-1}
    b = _row(beta, lo, hi)
    for t in range(steps):
        c = cur[t * per_step, lo:hi]
        mt = mem[t * s_mem, off:off + width]
        st = spk[t * s_spk, off:off + width]
        for j in range(width):
            r = np.float32(m[j] > thr)  # reset_t: the previous step's spike
            v = _at(b, j) * ((ONE - r * zero_reset) * m[j]) + c[j] - r * sub_reset * thr
            m[j] = v
            mt[j] = v
            st[j] = np.float32(v > thr)


@njit(parallel=True, cache=True)
def _forward(cur, steps, beta, thr, zero_reset, sub_reset, mem, spk, block):
    n = cur.shape[1]
    for b in prange((n + block - 1) // block):
        lo, hi = b * block, min(n, (b + 1) * block)
        _run(cur, lo, hi, steps, beta, thr, zero_reset, sub_reset, mem, spk, lo)


@njit(inline="always")
def _d_atan(x, p, q):  # lif.Derivative("atan", p, q): 1 / (p x^2 + q)
    return ONE / (p * x * x + q)


@njit(inline="always")
def _d_fast_sigmoid(x, p):  # lif.Derivative("fast_sigmoid", p): 1 / (p |x| + 1)^2
    y = p * abs(x) + ONE
    return ONE / (y * y)


@njit(inline="always")
def _adjoint_step(t, mem, gs, gm, gc, d, later, params, gb, gt, beta, thr, zero_reset,
                  sub_reset, kind, p, q):
    """One step of the backward recurrence, from the last step back, for one row of neurons
    (beta: their _row): mem [T, width] replayed; gs, gm: dL/dspk_t, dL/dmem_t; adds
    G_t = dL/dmem_t = dL/dcur_t into gc and, if params, the beta and threshold terms into gb,
    gt; `later` carries G_{t+1} dmem_{t+1}/dmem_t. Without params (no learned beta or
    threshold, the usual case) one loop per surrogate does it all, with no array d in between."""
    width = uint64(mem.shape[1])
    m = mem[t]
    prev = mem[max(t - 1, 0)]
    rest = ONE - np.float32(t == 0)  # mem_{-1} = 0
    if not params:
        if kind == 0:
            for j in range(width):
                g = later[j] + gs[j] * _d_atan(m[j] - thr, p, q) + gm[j]
                gc[j] += g
                later[j] = g * _at(beta, j) * (ONE - np.float32(prev[j] * rest > thr)
                                               * zero_reset)
        else:
            for j in range(width):
                g = later[j] + gs[j] * _d_fast_sigmoid(m[j] - thr, p) + gm[j]
                gc[j] += g
                later[j] = g * _at(beta, j) * (ONE - np.float32(prev[j] * rest > thr)
                                               * zero_reset)
        return
    if kind == 0:
        for j in range(width):
            d[j] = _d_atan(m[j] - thr, p, q)
    else:
        for j in range(width):
            d[j] = _d_fast_sigmoid(m[j] - thr, p)
    for j in range(width):
        direct = d[j] * gs[j]  # through spk_t = H(mem_t - thr)
        g = later[j] + direct + gm[j]
        gc[j] += g
        pm = prev[j] * rest
        r = np.float32(pm > thr)
        keep = ONE - r * zero_reset
        gb[j] += g * pm * keep
        gt[j] -= direct + g * r * sub_reset
        later[j] = g * _at(beta, j) * keep


@njit(parallel=True, cache=True)
def _backward(cur, steps, g_spk, g_mem, beta, thr, zero_reset, sub_reset, kind, p, q, params,
              g_cur, g_beta, g_thr, block):
    """Adds dL/dcur into g_cur (zeros, cur's shape) and, if params, per-neuron dL/dbeta and
    dL/dthr terms into g_beta and g_thr (zeros, [N])."""
    n = cur.shape[1]
    s_spk = 1 if g_spk.shape[0] > 1 else 0
    s_mem = 1 if g_mem.shape[0] > 1 else 0
    s_cur = 1 if g_cur.shape[0] > 1 else 0
    for b in prange((n + block - 1) // block):
        lo, hi = b * block, min(n, (b + 1) * block)
        width = uint64(hi - lo)
        mem = np.empty((steps, width), np.float32)
        _run(cur, lo, hi, steps, beta, thr, zero_reset, sub_reset, mem,
             np.empty((1, width), np.float32), 0)
        later, d = np.zeros(width, np.float32), np.empty(width, np.float32)
        for t in range(steps - 1, -1, -1):
            _adjoint_step(t, mem, g_spk[t * s_spk, lo:hi], g_mem[t * s_mem, lo:hi],
                          g_cur[t * s_cur, lo:hi], d, later, params, g_beta[lo:hi],
                          g_thr[lo:hi], _row(beta, lo, hi), thr, zero_reset, sub_reset, kind,
                          p, q)


def threads() -> int:
    """Numba's threads follow torch's setting (torch.set_num_threads). Launching Numba's
    OpenMP layer resets the process's OpenMP thread count, which is torch's too: it is put
    back, so trainer.threads=1 stays one thread."""
    want = torch.get_num_threads()
    n = max(1, min(want, numba.config.NUMBA_NUM_THREADS))
    numba.set_num_threads(n)
    if torch.get_num_threads() != want:
        torch.set_num_threads(want)
    return n


def _rows(x: torch.Tensor) -> np.ndarray:
    return x.contiguous().view(x.shape[0], -1).numpy()


def _beta(beta):
    """A float beta as a float32 scalar; a per-neuron one stays a float32 array [N]."""
    return np.float32(beta) if np.ndim(beta) == 0 else np.ascontiguousarray(beta, np.float32)


def _resets(reset: int):
    return np.float32(reset == 1), np.float32(reset == 0)  # lif.RESETS: zero, subtract


def _gradients(cur: torch.Tensor, params: bool):
    """Zeroed outputs of a backward kernel: dL/dcur (contiguous, as the kernel writes it),
    and dL/dbeta, dL/dthr per neuron (empty unless params)."""
    n = cur[:1].numel() if params else 0
    g_cur = torch.zeros_like(cur, memory_format=torch.contiguous_format)
    return g_cur, torch.zeros(n), torch.zeros(n)


def forward(cur: torch.Tensor, steps: int, beta, thr: float, reset: int, keep_mem: bool):
    """cur [T, ...], or [1, ...] used at every step; beta a float or per neuron, an array
    [N] over a row. Returns spk [steps, ...] and the membrane [steps, ...] if keep_mem, else
    None."""
    shape = (steps, *cur.shape[1:])
    spk = cur.new_empty(shape)
    mem = cur.new_empty(shape if keep_mem else (1, *cur.shape[1:]))
    threads()
    _forward(_rows(cur), steps, _beta(beta), np.float32(thr), *_resets(reset), _rows(mem),
             _rows(spk), _block(steps))
    return spk, (mem if keep_mem else None)


def backward(cur, steps: int, g_spk, g_mem, beta, thr: float, reset: int, kind: int,
             p: float, q: float, params: bool):
    """dL/dcur (cur's shape: summed over time for a [1, ...] current), and if params dL/dbeta
    and dL/dthr per neuron (flat [N], to be summed; else None)."""
    none = torch.zeros_like(cur[:1])
    g_cur, g_beta, g_thr = _gradients(cur, params)
    threads()
    _backward(_rows(cur), steps, _rows(none if g_spk is None else g_spk),
              _rows(none if g_mem is None else g_mem), _beta(beta), np.float32(thr),
              *_resets(reset), kind, np.float32(p), np.float32(q), params, _rows(g_cur),
              g_beta.numpy(), g_thr.numpy(), _block(steps))
    return g_cur, (g_beta if params else None), (g_thr if params else None)
