"""A Leaky layer fused with the Linear its spikes feed, on the compiled CPU path (both ways)."""
from typing import Optional, Tuple

import torch

from .derivatives import Derivative
from .lif import _compiled, _compiled_grads, _params, fusable, lif_cpu, lif_linear_cpu


class LeakyLinearFunction(torch.autograd.Function):
    """A leaky layer on the compiled path whose spikes feed a Linear and nothing else that
    needs a gradient: returns the Linear's output [T, B, K] and the spikes (no gradient; None
    unless keep_spikes).

    Both directions run one sample's row of neurons at a time in cache (lif_linear_cpu.
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
        out, spk = lif_linear_cpu.forward_linear(
            cur.unsqueeze(0) if ctx.constant else cur, ctx.steps, weight, bias, float(beta),
            float(threshold), reset, keep_spikes, scale)
        ctx.save_for_backward(cur, beta, threshold, weight, scale)
        ctx.reset, ctx.derivative = reset, derivative
        if spk is not None:
            ctx.mark_non_differentiable(spk)
        return out, spk

    @staticmethod
    def backward(ctx, g_out, _):
        cur, beta, threshold, weight, scale = ctx.saved_tensors
        d, need = ctx.derivative, ctx.needs_input_grad
        g, g_beta, g_thr, g_weight = lif_linear_cpu.backward_linear(
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
    compiled path, a per-neuron beta, no bias, or no gradient to take); then run the two
    separately."""
    if not (torch.is_grad_enabled() and fusable(neuron) and bias is not None
            and cur.dim() == (2 if steps else 3) and cur.shape[-1] == weight.shape[1]
            and weight.dtype == cur.dtype):
        return None
    beta, threshold, reset = _params(neuron, cur)
    if beta.dim() or not _compiled(cur, beta, threshold, derivative):
        return None
    return LeakyLinearFunction.apply(cur, beta, threshold, reset, derivative, steps,
                                     weight, bias, keep_spikes, scale)
