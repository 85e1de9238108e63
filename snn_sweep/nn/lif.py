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
and sigmoid is written out (DERIVATIVES: a few in-place passes); any other surrogate is
differentiated by autograd through the neuron's own `spike_grad`, so every snnTorch
surrogate works. On the CPU, in float32 with a scalar beta and threshold (every config's
neuron) and an atan or fast_sigmoid surrogate (the default is atan), forward and backward run
as the compiled loops of lif_cpu.py instead; LeakyLinearFunction goes on to fuse a Linear that
the spikes feed, forward and backward. tests/test_lif.py checks outputs and gradients (input, beta,
threshold, the Linear's), on both paths, against stepping `snn.Leaky` with plain autograd.
"""
import inspect
import logging
import math
import os
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import snntorch as snn
import torch

log = logging.getLogger(__name__)
try:
    if os.environ.get("SNN_SWEEP_KERNELS") == "eager":  # a way out should Numba misbehave
        raise ImportError("SNN_SWEEP_KERNELS=eager")
    from .kernels import lif_cpu
    UNAVAILABLE: Optional[str] = None
except Exception as e:  # no usable Numba here: the eager path computes the same, slower
    lif_cpu = None  # type: ignore[assignment]
    UNAVAILABLE = f"{type(e).__name__}: {e}"

RESETS = {"subtract": 0, "zero": 1, "none": 2}
# Off in tests too, to check the eager path on the CPU as well.
CPU_KERNELS = lif_cpu is not None
_noticed = False


def _compiled(x: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor,
              derivative: Optional["Derivative"]) -> bool:
    """lif_cpu's compiled loops cover float32 on the CPU with a scalar beta and threshold
    (the configs' neurons) and a surrogate whose derivative they compute; anything else (a
    GPU, float64, per-neuron beta, another surrogate) runs eagerly."""
    global _noticed
    if UNAVAILABLE and not _noticed and x.device.type == "cpu":
        _noticed = True  # once per process, when the kernels would have run
        log.warning(f"compiled LIF kernels unavailable ({UNAVAILABLE}); the eager PyTorch "
                    f"path runs instead (same results, slower)")
    return (CPU_KERNELS and derivative is not None and derivative.name in lif_cpu.KINDS
            and x.device.type == "cpu" and x.dtype == torch.float32
            and beta.dim() == 0 and threshold.dim() == 0)


def _params(neuron: snn.Leaky, like: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, int]:
    """beta (clamped to [0, 1]), threshold (in like's dtype) and reset code of a Leaky."""
    beta = neuron.beta.clamp(0, 1).to(like.dtype)  # autograd handles the clamp for learn_beta
    return beta, neuron.threshold.to(like.dtype), RESETS[neuron.reset_mechanism]


def _compiled_grads(ctx, g, g_beta, g_thr, beta, threshold):
    """The (cur, beta, threshold) gradients of a compiled backward as autograd wants them:
    a constant current's [1, ...] gradient without its time axis, the per-neuron parameter
    terms summed, None where no gradient is needed."""
    need = ctx.needs_input_grad
    return (g[0] if ctx.constant else g, g_beta.sum().to(beta) if need[1] else None,
            g_thr.sum().to(threshold) if need[2] else None)


def _reduce_to(grad: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Sum a broadcast gradient back to the shape of a (scalar or per-neuron) parameter."""
    return grad.sum_to_size(like.shape) if like.dim() else grad.sum()


class LeakyFunction(torch.autograd.Function):
    """cur is [T, B, ...], or [B, ...] with `steps` = T: an input current that does not change
    over time (direct coding). Then its gradient, the sum over time of dL/dcur_t, is summed
    inside the backward's recurrence and never stored per step."""

    @staticmethod
    def forward(ctx, cur: torch.Tensor, beta: torch.Tensor, threshold: torch.Tensor,
                reset: int, spike_grad: Callable, derivative: Optional["Derivative"],
                steps: Optional[int], keep_mem: bool
                ) -> Tuple[torch.Tensor, Optional[torch.Tensor]]:
        constant = steps is not None
        ctx.compiled = _compiled(cur, beta, threshold, derivative)
        ctx.steps = steps if constant else cur.shape[0]
        if ctx.compiled:  # its backward replays the membrane from cur, so only cur is kept
            spk, mem = lif_cpu.forward(cur.unsqueeze(0) if constant else cur, ctx.steps,
                                       float(beta), float(threshold), reset, keep_mem)
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
        if ctx.compiled:
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
        return (g if g is not None else g_sum), g_beta, g_thr, None, None, None, None, None

    @staticmethod
    def _compiled_backward(ctx, g_spk, g_mem):
        cur, beta, threshold = ctx.saved_tensors
        derivative, need = ctx.derivative, ctx.needs_input_grad
        g, g_beta, g_thr = lif_cpu.backward(
            cur.unsqueeze(0) if ctx.constant else cur, ctx.steps, g_spk, g_mem, float(beta),
            float(threshold), ctx.reset, lif_cpu.KINDS[derivative.name], derivative.p,
            derivative.q, params=need[1] or need[2])
        return (*_compiled_grads(ctx, g, g_beta, g_thr, beta, threshold),
                None, None, None, None, None)


class LeakyLinearFunction(torch.autograd.Function):
    """A leaky layer on the compiled path whose spikes feed a Linear and nothing else that
    needs a gradient: returns the Linear's output [T, B, K] and the spikes (no gradient; None
    unless keep_spikes).

    Both directions run one sample's row of neurons at a time in cache (lif_cpu.
    _forward_linear, _backward_linear): the forward multiplies the spikes by the weight there,
    and the backward forms dL/dspk from the gradient of the Linear's output and adds the
    Linear's weight gradient from replayed spikes. With 10 outputs, the [T*B] x 1000 x 10
    products are skinny matmuls that MKL runs at a fraction of the CPU's speed, and the spikes
    and dL/dspk [T, B, H] would be written out and read back once more."""

    @staticmethod
    def forward(ctx, cur, beta, threshold, reset: int, derivative: "Derivative",
                steps: Optional[int], weight, bias, keep_spikes: bool,
                scale: Optional[torch.Tensor]):
        ctx.constant = steps is not None
        ctx.steps = steps if ctx.constant else cur.shape[0]
        out, spk = lif_cpu.forward_linear(cur.unsqueeze(0) if ctx.constant else cur, ctx.steps,
                                          weight, bias, float(beta), float(threshold), reset,
                                          keep_spikes, scale)
        ctx.save_for_backward(cur, beta, threshold, weight, scale)
        ctx.reset, ctx.derivative = reset, derivative
        if spk is not None:
            ctx.mark_non_differentiable(spk)
        return out, spk

    @staticmethod
    def backward(ctx, g_out, _):
        cur, beta, threshold, weight, scale = ctx.saved_tensors
        d, need = ctx.derivative, ctx.needs_input_grad
        g, g_beta, g_thr, g_weight = lif_cpu.backward_linear(
            cur.unsqueeze(0) if ctx.constant else cur, ctx.steps, g_out, weight, float(beta),
            float(threshold), ctx.reset, lif_cpu.KINDS[d.name], d.p, d.q,
            params=need[1] or need[2], scale=scale)
        return (*_compiled_grads(ctx, g, g_beta, g_thr, beta, threshold), None, None, None,
                g_weight if need[6] else None, g_out.sum((0, 1)) if need[7] else None, None,
                None)


def leaky_linear(neuron, cur: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                 derivative: Optional["Derivative"] = None, steps: Optional[int] = None,
                 keep_spikes: bool = True, scale: Optional[torch.Tensor] = None
                 ) -> Optional[Tuple[torch.Tensor, Optional[torch.Tensor]]]:
    """A Linear (weight [K, H], bias [K]) applied to every step of the spikes of `neuron`
    driven by cur [T, B, H] (or [B, H] for `steps` steps, as in leaky_sequence), the spikes
    multiplied by scale [B, H] on every step if given (dropout with one mask for all steps):
    returns (its output [T, B, K], spikes [T, B, H] before dropout or None unless keep_spikes)
    through LeakyLinearFunction, or None where that does not apply (another neuron, off the
    compiled path, no bias, or no gradient to take); then run the two separately."""
    if not (torch.is_grad_enabled() and fusable(neuron) and bias is not None
            and cur.dim() == (2 if steps else 3) and cur.shape[-1] == weight.shape[1]
            and weight.dtype == cur.dtype):
        return None
    beta, threshold, reset = _params(neuron, cur)
    if not _compiled(cur, beta, threshold, derivative):
        return None
    return LeakyLinearFunction.apply(cur, beta, threshold, reset, derivative, steps,
                                     weight, bias, keep_spikes, scale)


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
    not needed, and the compiled path then never writes it."""
    beta, threshold, reset = _params(neuron, cur)
    return LeakyFunction.apply(cur, beta, threshold, reset, neuron.spike_grad, derivative, steps,
                               keep_mem)


@dataclass(frozen=True)
class Derivative:
    """d spike_grad(x)/dx of a snntorch.surrogate written out: applied in place to a tensor,
    and as (name, p, q) for lif_cpu's backward."""
    name: str
    p: float
    q: float = 0.0

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.name == "atan":  # (alpha/2) / (1 + (pi/2 * alpha * x)^2) = 1 / (p x^2 + q)
            return x.square_().mul_(self.p).add_(self.q).reciprocal_()
        if self.name == "fast_sigmoid":  # 1 / (slope * |x| + 1)^2, p = slope
            return x.abs_().mul_(self.p).add_(1).square_().reciprocal_()
        # sigmoid: slope * s * (1 - s), s = sigmoid(slope * x), p = slope
        s = x.mul_(self.p).sigmoid_()
        return s.mul_(s.neg().add_(1)).mul_(self.p)


# Surrogates (by their name in snntorch.surrogate) whose derivative is written out here,
# several times cheaper than autograd through their autograd.Function; tests/test_lif.py checks
# each against snnTorch's own backward.
# Called with the arguments read off snnTorch's closure, so snnTorch's defaults are its own.
DERIVATIVES: Dict[str, Callable[..., Derivative]] = {
    "atan": lambda alpha: Derivative("atan", (math.pi / 2 * alpha) ** 2 * 2 / alpha, 2 / alpha),
    "fast_sigmoid": lambda slope: Derivative("fast_sigmoid", slope),
    "sigmoid": lambda slope: Derivative("sigmoid", slope),
}


def derivative_of(spike_grad: Callable) -> Optional[Derivative]:
    """The written-out derivative of a neuron's spike_grad when it is one of snnTorch's
    surrogates in DERIVATIVES (snntorch.surrogate.atan(alpha=2.0) ...), read off the closure
    snnTorch returns: its factory's name and arguments. None for any other function."""
    if getattr(spike_grad, "__module__", None) != "snntorch.surrogate":
        return None
    name = getattr(spike_grad, "__qualname__", "").split(".")[0]
    if name not in DERIVATIVES:
        return None
    try:
        return DERIVATIVES[name](**inspect.getclosurevars(spike_grad).nonlocals)
    except TypeError:  # another closure than the factory's (a future snnTorch)
        return None
