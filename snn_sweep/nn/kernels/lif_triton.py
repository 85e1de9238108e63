"""The LIF recurrence of lif.py as Triton kernels, one launch per layer forward and one backward.

For CUDA tensors (float32, or a bfloat16 current under autocast) with a scalar beta and
threshold and a written-out surrogate (derivatives.py: atan, fast_sigmoid, sigmoid):
lif.LeakyFunction calls these where lif.path says so. Under TRITON_INTERPRET=1 (set before
Triton is imported) they run on CPU tensors too, which is how tests/test_lif_triton.py checks
them against stepping snn.Leaky without a GPU.

Each program takes a block of neurons (B*N flattened) and walks all T steps with the state in
registers: the forward from step 0 up, the backward from step T-1 down. State and arithmetic
are float32 whatever the current's dtype; spikes and gradients are written in the current's.

What backward keeps: the membrane, float32 [T, N], written by the forward. Spikes are not
stored at all: spk_t = H(mem_t - thr) and reset_t = H(mem_{t-1} - thr) are recomputed from it
exactly. Replaying the membrane from cur instead (as lif_cpu does, where the replay fits in
cache) would need it in global memory all the same, since a program cannot index registers by
a runtime step: the backward would read cur (4 B per element and step), write the replayed
membrane (4 B) and read it back (4 B), against 4 B written by the forward and 4 B read back
here. Per element and step: the forward reads cur (none for a constant current: it stays in
registers) and writes the spikes and the membrane (the readout's is returned, a hidden layer's
only written when a gradient is to be taken); the backward reads the membrane, dL/dspk and
dL/dmem where given, and writes dL/dcur (a constant current's only once, summed over time).
For a constant current the stored membrane takes T times the memory a replay would (as much as
the eager path's); the traffic is the same, and GPU memory is seldom what limits these nets.

The beta and threshold gradients are summed per block (tl.sum) into one partial sum per
program, added up by torch afterwards: deterministic, unlike atomics. Beta and threshold are
read from their tensors inside the kernel, so no device-to-host copy stalls the stream.
"""
import contextlib

import torch
import triton
import triton.language as tl

KINDS = {"atan": 0, "fast_sigmoid": 1, "sigmoid": 2}  # derivatives.Derivative names covered
DTYPES = (torch.float32, torch.bfloat16)  # of the input current


@triton.jit
def _surrogate(x, KIND: tl.constexpr, p, q):
    """derivatives.Derivative(name, p, q) at x = mem - thr."""
    if KIND == 0:  # atan: 1 / (p x^2 + q)
        d = 1.0 / (p * x * x + q)
    elif KIND == 1:  # fast_sigmoid: 1 / (p |x| + 1)^2
        y = p * tl.abs(x) + 1.0
        d = 1.0 / (y * y)
    else:  # sigmoid: p s (1 - s), s = sigmoid(p x)
        s = tl.sigmoid(p * x)
        d = p * s * (1.0 - s)
    return d


@triton.jit
def _forward(cur, cur_step, beta_ptr, thr_ptr, spk, mem, n, steps, ZERO: tl.constexpr,
             SUB: tl.constexpr, WRITE_MEM: tl.constexpr, BLOCK: tl.constexpr):
    """spk[t] (the current's dtype) and, if WRITE_MEM, mem[t] (float32) for t < steps; cur[t]
    is cur_step elements after cur[t-1] (0 for a current constant over time). Pointers walk
    from step to step, so no index t * n can overflow 32 bits."""
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    beta = tl.load(beta_ptr).to(tl.float32)
    thr = tl.load(thr_ptr).to(tl.float32)
    c_at, s_at, m_at = cur + offs, spk + offs, mem + offs
    m = tl.zeros([BLOCK], tl.float32)  # mem_{t-1}, from rest
    for _ in range(steps):
        c = tl.load(c_at, mask=mask, other=0.0).to(tl.float32)
        r = (m > thr).to(tl.float32)  # reset_t: the previous step's spike
        if ZERO:
            m = beta * ((1.0 - r) * m) + c
        elif SUB:
            m = beta * m + c - r * thr
        else:
            m = beta * m + c
        # via float32: the interpreter cannot convert int1 to bfloat16
        tl.store(s_at, (m > thr).to(tl.float32).to(spk.dtype.element_ty), mask=mask)
        if WRITE_MEM:
            tl.store(m_at, m, mask=mask)
        c_at += cur_step
        s_at += n
        m_at += n


@triton.jit
def _backward(mem, g_spk, gs_step, g_mem, gm_step, g_cur, beta_ptr, thr_ptr, p, q, part_beta,
              part_thr, n, steps, ZERO: tl.constexpr, SUB: tl.constexpr, KIND: tl.constexpr,
              HAS_GS: tl.constexpr, HAS_GM: tl.constexpr, CONSTANT: tl.constexpr,
              PARAMS: tl.constexpr, BLOCK: tl.constexpr):
    """G_t = dL/dmem_t = dL/dcur_t from the last step down: mem, g_spk, g_mem and g_cur point
    at their last step, and step t-1 lies n (gs_step, gm_step) elements before step t. G_t
    goes to g_cur (summed over time into its one row if CONSTANT), and if PARAMS this
    program's dL/dbeta and dL/dthr to part_beta and part_thr[program]."""
    pid = tl.program_id(0)
    offs = pid.to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    beta = tl.load(beta_ptr).to(tl.float32)
    thr = tl.load(thr_ptr).to(tl.float32)
    prev_at, gs_at, gm_at, gc_at = mem + offs - n, g_spk + offs, g_mem + offs, g_cur + offs
    later = tl.zeros([BLOCK], tl.float32)  # G_{t+1} dmem_{t+1}/dmem_t
    total = tl.zeros([BLOCK], tl.float32)
    gb = tl.zeros([BLOCK], tl.float32)
    gt = tl.zeros([BLOCK], tl.float32)
    m = tl.load(mem + offs, mask=mask, other=0.0)  # mem_t
    for i in range(steps):
        # mem_{t-1}; mem_{-1} = 0 (its pointer is never read)
        prev = tl.load(prev_at, mask=mask & (i < steps - 1), other=0.0)
        direct = tl.zeros([BLOCK], tl.float32)  # through spk_t = H(mem_t - thr)
        if HAS_GS:
            gs = tl.load(gs_at, mask=mask, other=0.0).to(tl.float32)
            direct = gs * _surrogate(m - thr, KIND, p, q)
        g = later + direct
        if HAS_GM:
            g += tl.load(gm_at, mask=mask, other=0.0).to(tl.float32)
        if CONSTANT:
            total += g
        else:
            tl.store(gc_at, g.to(g_cur.dtype.element_ty), mask=mask)
        r = (prev > thr).to(tl.float32)  # reset_t
        if ZERO:
            keep = 1.0 - r
        else:
            keep = tl.full([BLOCK], 1.0, tl.float32)
        if PARAMS:
            gb += g * prev * keep
            gt -= direct
            if SUB:
                gt -= g * r
        later = g * beta * keep
        m = prev
        prev_at -= n
        gs_at -= gs_step
        gm_at -= gm_step
        gc_at -= n
    if CONSTANT:
        tl.store(g_cur + offs, total.to(g_cur.dtype.element_ty), mask=mask)
    if PARAMS:
        tl.store(part_beta + pid, tl.sum(gb, axis=0))
        tl.store(part_thr + pid, tl.sum(gt, axis=0))


def _grid(n: int):
    """(programs, block, warps): blocks of 128 to 1024 neurons, the largest that still gives
    about a thousand programs, so that a small layer spreads over all of a GPU's SMs."""
    block = 128
    while block < 1024 and triton.cdiv(n, 2 * block) >= 1024:
        block *= 2
    block = min(block, max(16, triton.next_power_of_2(n)))
    return triton.cdiv(n, block), block, max(1, min(4, block // 256))


def _device(x: torch.Tensor):
    """Launch on x's GPU (Triton launches on the current device), or as is on the CPU."""
    return torch.cuda.device(x.device) if x.is_cuda else contextlib.nullcontext()


def _steps(x: torch.Tensor):
    """x [T, ...] as a tensor whose every step is contiguous, and the distance between steps
    (0 where x is one step repeated, a stride-0 view)."""
    if not x[0].is_contiguous():
        x = x.contiguous()
    return x, x.stride(0)


def _resets(reset: int):
    return reset == 1, reset == 0  # lif.RESETS: zero, subtract


def forward(cur: torch.Tensor, steps: int, constant: bool, beta: torch.Tensor,
            threshold: torch.Tensor, reset: int, write_mem: bool):
    """cur [T, ...], or [...] used at each of `steps` steps if constant; beta (clamped) and
    threshold 0-dim tensors on cur's device. Returns spk [steps, ...] in cur's dtype and the
    membrane [steps, ...] in float32 if write_mem, else None."""
    cur, step = (cur.contiguous(), 0) if constant else _steps(cur)
    shape = (steps, *(cur.shape if constant else cur.shape[1:]))
    spk = cur.new_empty(shape)
    mem = cur.new_empty(shape, dtype=torch.float32) if write_mem else spk
    n = spk[0].numel()
    programs, block, warps = _grid(n)
    if n:
        with _device(cur):
            _forward[(programs,)](cur, step, beta, threshold, spk, mem, n, steps,
                                  *_resets(reset), write_mem, block, num_warps=warps)
    return spk, (mem if write_mem else None)


def backward(mem: torch.Tensor, constant: bool, dtype: torch.dtype, g_spk, g_mem,
             beta: torch.Tensor, threshold: torch.Tensor, reset: int, derivative,
             params: bool):
    """From the forward's float32 membrane [T, ...]: dL/dcur in `dtype` ([T, ...], or [1, ...]
    summed over time if constant) and, if params, dL/dbeta and dL/dthr as partial sums (float32
    [programs], to be summed; else None). g_spk, g_mem: dL/dspk, dL/dmem [T, ...] or None."""
    steps, n = mem.shape[0], mem[0].numel()
    programs, block, warps = _grid(n)
    g_cur = mem.new_empty((1 if constant else steps, *mem.shape[1:]), dtype=dtype)
    parts = mem.new_zeros((2, programs if params else 1))
    gs, gs_step = _steps(g_spk) if g_spk is not None else (mem, 0)
    gm, gm_step = _steps(g_mem) if g_mem is not None else (mem, 0)
    if n:
        with _device(mem):
            _backward[(programs,)](mem[-1], gs[-1], gs_step, gm[-1], gm_step, g_cur[-1], beta,
                                   threshold, float(derivative.p), float(derivative.q),
                                   parts[0], parts[1], n, steps, *_resets(reset),
                                   KINDS[derivative.name], g_spk is not None,
                                   g_mem is not None, constant, params, block,
                                   num_warps=warps)
    elif constant:
        g_cur.zero_()
    return g_cur, (parts[0] if params else None), (parts[1] if params else None)
