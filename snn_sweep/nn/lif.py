"""Fused leaky integrate-and-fire recurrence: our own layer in place of stepping `snn.Leaky`.

Stepping an snnTorch neuron costs a Python call and a dozen small autograd nodes per step,
and autograd keeps every intermediate. Here the whole sequence [T, B, ...] is one
`torch.autograd.Function`: the forward loop writes the membrane in place, the backward is the
hand-written adjoint of the same recurrence (one fused multiply-add per step, time walked in
cache-sized chunks), and spikes are kept for backward only where it needs them, as bool.
The semantics are those of `snn.Leaky` (reset_delay=True, no inhibition, no state
quantization, graded_spikes_factor 1), step t:

    reset_t = H(mem_{t-1} - thr)          (detached: the previous step's spike)
    subtract: mem_t = b*mem_{t-1} + cur_t - reset_t*thr
    zero:     mem_t = b*(1 - reset_t)*mem_{t-1} + cur_t
    none:     mem_t = b*mem_{t-1} + cur_t
    spk_t   = spike_grad(mem_t - thr)     (Heaviside forward, surrogate backward)

with b = beta.clamp(0, 1) and mem_{-1} = 0. The surrogate derivative of atan, fast_sigmoid
and sigmoid is written out (derivatives.py: a few in-place passes); any other surrogate is
differentiated by autograd through the neuron's own `spike_grad`, so every snnTorch
surrogate works. On the CPU, in float32 with a scalar threshold, a scalar or per-neuron beta
(model.beta_per_neuron) and an atan or fast_sigmoid surrogate (the default is atan), forward
and backward run as the compiled loops of kernels/lif_cpu.py instead; with a scalar beta (every
config's neuron by default) lif_linear.py goes on to fuse a Linear that the spikes feed,
forward and backward. On CUDA, in float32 or with a bfloat16 current
(kept in float32 there), with a scalar beta and threshold and any written-out surrogate, they
run as kernels/lif_triton.py's Triton kernels, one launch each way. `path` says which runs.
tests/test_lif.py checks outputs and gradients (input, beta, threshold, the Linear's), on the
CPU paths, and tests/test_lif_triton.py the Triton kernels (on CPU tensors under
TRITON_INTERPRET=1), against stepping `snn.Leaky` with plain autograd.
"""
import logging
import os
from typing import Callable, Optional, Tuple

import snntorch as snn
import torch

from .derivatives import Derivative

log = logging.getLogger(__name__)
# SNN_SWEEP_KERNELS=eager: a way out should a kernel misbehave; =triton: Triton's kernels on
# CPU tensors too, for tests under TRITON_INTERPRET=1 (else they need CUDA).
KERNELS = os.environ.get("SNN_SWEEP_KERNELS", "")
try:
    if KERNELS == "eager":
        raise ImportError("SNN_SWEEP_KERNELS=eager")
    from .kernels import lif_cpu, lif_linear_cpu
    UNAVAILABLE: Optional[str] = None
except Exception as e:  # no usable Numba: the eager path computes the same, slower
    lif_cpu = lif_linear_cpu = None  # type: ignore[assignment]
    UNAVAILABLE = f"{type(e).__name__}: {e}"

RESETS = {"subtract": 0, "zero": 1, "none": 2}
# Off in tests too, to check the eager path on the CPU as well.
CPU_KERNELS = lif_cpu is not None
TRITON_DEVICES = {"eager": (), "triton": ("cuda", "cpu")}.get(KERNELS, ("cuda",))
_noticed = False
_lif_triton = None
TRITON_UNAVAILABLE: Optional[str] = None


def triton_kernels():
    """kernels.lif_triton, imported at first use (a CPU run never needs Triton); None, said
    once, where Triton cannot be imported: the eager path runs instead."""
    global _lif_triton, TRITON_UNAVAILABLE
    if _lif_triton is None and TRITON_UNAVAILABLE is None:
        try:
            from .kernels import lif_triton
            _lif_triton = lif_triton
        except Exception as e:
            TRITON_UNAVAILABLE = f"{type(e).__name__}: {e}"
            log.warning(f"Triton LIF kernels unavailable ({TRITON_UNAVAILABLE}); the eager "
                        f"PyTorch path runs on the GPU instead (same results, slower)")
    return _lif_triton


def path(device_type: str, dtype: torch.dtype, beta: torch.Tensor, threshold: torch.Tensor,
         derivative: Optional["Derivative"]) -> str:
    """Which implementation LeakyFunction runs for a current on device_type in dtype: "triton"
    (kernels/lif_triton.py: CUDA, float32 or bfloat16), "cpu" (kernels/lif_cpu.py: the CPU,
    float32, atan or fast_sigmoid) or "eager" (the PyTorch loop: anything else, e.g. float64,
    a surrogate not written out, a per-neuron beta on CUDA). Both kernels need a scalar
    threshold and the surrogate's derivative written out; Triton's a scalar beta too."""
    if threshold.dim() or derivative is None:
        return "eager"
    if device_type in TRITON_DEVICES and not beta.dim():
        kernels = triton_kernels()
        if kernels is not None and dtype in kernels.DTYPES and derivative.name in kernels.KINDS:
            return "triton"
    if (CPU_KERNELS and device_type == "cpu" and dtype == torch.float32
            and derivative.name in lif_cpu.KINDS):
        return "cpu"
    return "eager"


def _path(x: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor,
          derivative: Optional["Derivative"]) -> str:
    """path() for x, saying once per process if Numba is missing where its loops would run."""
    global _noticed
    if UNAVAILABLE and not _noticed and x.device.type == "cpu":
        _noticed = True
        log.warning(f"compiled LIF kernels unavailable ({UNAVAILABLE}); the eager PyTorch "
                    f"path runs instead (same results, slower)")
    return path(x.device.type, x.dtype, beta, threshold, derivative)


def _compiled(x, beta, threshold, derivative: Optional["Derivative"]) -> bool:
    """Whether lif_cpu's compiled loops run (lif_linear.py fuses a Linear to them)."""
    return _path(x, beta, threshold, derivative) == "cpu"


def _params(neuron: snn.Leaky, like: torch.Tensor, dtype: Optional[torch.dtype] = None
            ) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """beta (clamped to [0, 1]), threshold (in dtype, by default like's) and reset code of a
    Leaky."""
    dtype = dtype or like.dtype
    beta = neuron.beta.clamp(0, 1).to(dtype)  # autograd handles the clamp for learn_beta
    return beta, neuron.threshold.to(dtype), RESETS[neuron.reset_mechanism]


def _compiled_grads(ctx, g, g_beta, g_thr, beta, threshold):
    """The (cur, beta, threshold) gradients of a compiled backward as autograd wants them:
    a constant current's [1, ...] gradient without its time axis, the per-neuron parameter
    terms summed (a per-neuron beta's g_beta comes as a row [B, ...] to sum to its shape),
    None where no gradient is needed."""
    need = ctx.needs_input_grad
    return (g[0] if ctx.constant else g, _reduce_to(g_beta, beta).to(beta) if need[1] else None,
            g_thr.sum().to(threshold) if need[2] else None)


def _cpu_beta(beta: torch.Tensor, row: torch.Size):
    """beta for lif_cpu: a float, or a per-neuron beta as a float32 array over a row [B, ...]
    of the current (broadcast there: one value per column of the kernels' [T, N])."""
    if not beta.dim():
        return float(beta)
    return beta.detach().expand(row).contiguous().view(-1).numpy()


def _reduce_to(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sum a broadcast gradient back to the shape of a (scalar or per-neuron) parameter."""
    return grad.sum_to_size(like.shape) if like.dim() else grad.sum()


class LeakyFunction(torch.autograd.Function):
    """cur is [T, B, ...], or [B, ...] with `steps` = T: an input current that does not change
    over time (direct coding). Then its gradient, the sum over time of dL/dcur_t, is summed
    inside the backward's recurrence and never stored per step. `grad`: whether a backward
    may follow (else the Triton path writes no membrane for it)."""

    @staticmethod
    def forward(ctx, cur: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor,
                reset: int, spike_grad: Callable, derivative: Optional["Derivative"],
                steps: Optional[int], keep_mem: bool, grad: bool
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        constant = steps is not None
        ctx.path = _path(cur, beta, threshold, derivative)
        ctx.steps = steps if constant else cur.shape[0]
        if ctx.path == "triton":  # its backward reads the float32 membrane (lif_triton says why)
            spk, mem = _lif_triton.forward(cur, ctx.steps, constant, beta, threshold, reset,
                                           keep_mem or grad)
            ctx.save_for_backward(mem if grad else None, beta, threshold)
            ctx.dtype = cur.dtype
            mem = mem.to(cur.dtype) if keep_mem else None
        elif ctx.path == "cpu":  # its backward replays the membrane from cur, so only cur is kept
            ctx.row = cur.shape if constant else cur.shape[1:]
            spk, mem = lif_cpu.forward(cur.unsqueeze(0) if constant else cur, ctx.steps,
                                       _cpu_beta(beta, ctx.row), float(threshold), reset,
                                       keep_mem)
            ctx.save_for_backward(cur, beta, threshold)
        else:
            # snnTorch starts from mem = 0, so its first reset is H(0 - thr): 1 iff thr < 0.
            first_reset = (threshold < 0).to(cur.dtype)
            spk, mem = LeakyFunction._eager(cur, beta, threshold, reset, steps, first_reset)
            # Backward needs the spikes only for zero-reset or a learnable threshold: 1 byte.
            fired = spk.bool() if reset == 1 or ctx.needs_input_grad[2] else None
            ctx.save_for_backward(mem, fired, beta, threshold, first_reset)
            mem = mem if keep_mem else None
        ctx.reset, ctx.spike_grad, ctx.derivative = reset, spike_grad, derivative
        ctx.constant = constant
        ctx.set_materialize_grads(False)
        return spk, mem

    @staticmethod
    def _eager(cur, beta, threshold, reset, steps, first_reset):
        constant = steps is not None
        shape = (steps, *cur.shape) if constant else cur.shape
        mem = cur.new_empty(shape)
        spk = cur.new_empty(shape)
        prev = torch.zeros_like(mem[0])
        prev_spk = first_reset.expand_as(prev)
        for t in range(shape[0]):
            m = mem[t]
            if reset == 1:  # zero: the membrane of a neuron that fired is cleared first
                prev = prev * (1 - prev_spk)
            torch.addcmul(cur if constant else cur[t], prev, beta, out=m)
            if reset == 0:
                m.addcmul_(prev_spk, threshold, value=-1)
            # snnTorch's spike (every surrogate's forward) is H(mem - thr), i.e. mem > thr.
            torch.gt(m, threshold, out=spk[t])
            prev, prev_spk = m, spk[t]
        return spk, mem

    @staticmethod
    def backward(ctx, g_spk, g_mem):
        if ctx.path != "eager":
            return LeakyFunction._compiled_backward(ctx, g_spk, g_mem)
        mem, fired, beta, threshold, first_reset = ctx.saved_tensors
        reset, steps, derivative = ctx.reset, mem.shape[0], ctx.derivative
        # G_t = dL/dmem_t = dL/dcur_t, from the last step back. Time is walked in chunks of
        # about 256k elements so that the temporaries stay in cache.
        chunk = max(1, (1 << 18) // max(1, mem[0].numel()))
        if ctx.constant:  # only the sum over time is returned: one chunk-sized buffer
            g, g_sum, buf = None, torch.zeros_like(mem[0]), mem.new_empty((chunk, *mem.shape[1:]))
        else:
            g, g_sum, buf = torch.empty_like(mem), None, None
        g_beta = torch.zeros_like(mem[0]) if ctx.needs_input_grad[1] else None
        g_thr = torch.zeros_like(mem[0]) if ctx.needs_input_grad[2] else None
        spk = fired.to(mem.dtype) if fired is not None else None
        later = None  # G of the step after the current chunk
        for end in range(steps, 0, -chunk):
            start = max(0, end - chunk)
            gc = g[start:end] if g is not None else buf[:end - start]
            # direct terms: dL/dmem_t itself and through spk_t = spike_grad(mem_t - thr)
            if g_spk is not None:
                if derivative is not None:  # written out: a few in-place passes
                    torch.sub(mem[start:end], threshold, out=gc)
                    derivative(gc)
                    gc.mul_(g_spk[start:end])
                else:  # any other surrogate: autograd through the neuron's own spike_grad
                    with torch.enable_grad():
                        leaf = (mem[start:end] - threshold).detach().requires_grad_()
                        (g_surr,) = torch.autograd.grad(ctx.spike_grad(leaf), leaf,
                                                        g_spk[start:end])
                    gc.copy_(g_surr)
                if g_thr is not None:
                    g_thr -= gc.sum(0)
                if g_mem is not None:
                    gc += g_mem[start:end]
            elif g_mem is not None:
                gc.copy_(g_mem[start:end])
            else:
                gc.zero_()
            # the recurrence: dmem_{t+1}/dmem_t = b, or b*(1 - spk_t) with reset to zero
            for i in range(end - start - 1, -1, -1):
                nxt = gc[i + 1] if i + 1 < end - start else later
                if nxt is not None:
                    factor = beta * (1 - spk[start + i]) if reset == 1 else beta
                    gc[i].addcmul_(nxt, factor)
            lo = max(start, 1)  # parameter terms of steps lo..end-1 (step 0 starts at rest)
            if g_beta is not None and lo < end:
                prev = mem[lo - 1:end - 1]
                if reset == 1:
                    prev = prev * (1 - spk[lo - 1:end - 1])
                g_beta += (gc[lo - start:] * prev).sum(0)
            if g_thr is not None and reset == 0:  # - reset_t * thr, reset_t = spk_{t-1}
                if lo < end:
                    g_thr -= (gc[lo - start:] * spk[lo - 1:end - 1]).sum(0)
                if start == 0:
                    g_thr -= gc[0] * first_reset
            if g_sum is not None:
                g_sum += gc.sum(0)
                later = gc[0].clone()  # buf is overwritten by the next chunk
            else:
                later = gc[0]
        if g_beta is not None:
            g_beta = _reduce_to(g_beta, beta)
        if g_thr is not None:
            g_thr = _reduce_to(g_thr, threshold)
        return (g if g is not None else g_sum), g_beta, g_thr, None, None, None, None, None, None

    @staticmethod
    def _compiled_backward(ctx, g_spk, g_mem):
        """The backward of lif_cpu's loops or of the Triton kernels."""
        saved, beta, threshold = ctx.saved_tensors
        derivative, need = ctx.derivative, ctx.needs_input_grad
        if ctx.path == "triton":  # saved: the float32 membrane
            g, g_beta, g_thr = _lif_triton.backward(
                saved, ctx.constant, ctx.dtype, g_spk, g_mem, beta, threshold, ctx.reset,
                derivative, params=need[1] or need[2])
        else:  # saved: the current
            g, g_beta, g_thr = lif_cpu.backward(
                saved.unsqueeze(0) if ctx.constant else saved, ctx.steps, g_spk, g_mem,
                _cpu_beta(beta, ctx.row), float(threshold), ctx.reset,
                lif_cpu.KINDS[derivative.name], derivative.p, derivative.q,
                params=need[1] or need[2])
            if g_beta is not None:  # per column of [T, N]: a row [B, ...] for _reduce_to
                g_beta = g_beta.view(ctx.row)
        return (*_compiled_grads(ctx, g, g_beta, g_thr, beta, threshold),
                None, None, None, None, None, None)


def fusable(neuron) -> bool:
    """A plain `snn.Leaky` whose options the fused recurrence reproduces exactly."""
    return (type(neuron) is snn.Leaky and not neuron.inhibition and not neuron.state_quant
            and not neuron.init_hidden and neuron.reset_delay
            and not isinstance(neuron.graded_spikes_factor, torch.nn.Parameter)
            and float(neuron.graded_spikes_factor) == 1.0)


def leaky_sequence(neuron: snn.Leaky, cur: torch.Tensor,
                   derivative: Optional["Derivative"] = None, steps: Optional[int] = None,
                   keep_mem: bool = True) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Spikes and membrane [T, B, ...] of `neuron` driven from rest by cur [T, B, ...], or by
    cur [B, ...] at each of `steps` steps. `derivative` (from `derivative_of`) must be
    that of the neuron's spike_grad; without it the backward differentiates spike_grad by
    autograd. With keep_mem=False the membrane is not returned (None): a hidden layer's is
    not needed, and the compiled paths then never write it (the Triton path only for backward)."""
    # On the Triton path a bfloat16 current (autocast) drives a float32 state: beta and
    # threshold stay float32 too.
    low = cur.dtype == torch.bfloat16 and path(
        cur.device.type, cur.dtype, neuron.beta, neuron.threshold, derivative) == "triton"
    beta, threshold, reset = _params(neuron, cur, torch.float32 if low else None)
    grad = torch.is_grad_enabled() and (cur.requires_grad or beta.requires_grad
                                        or threshold.requires_grad)
    return LeakyFunction.apply(cur, beta, threshold, reset, neuron.spike_grad, derivative, steps,
                               keep_mem, grad)
