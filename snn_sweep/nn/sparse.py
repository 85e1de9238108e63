"""Input layer for spike-train input: our own Linear that skips the work a spike train repeats.

A rate-coded pixel of intensity p fires in a fraction p of the T steps, so a dense matmul
over [T*B, features] mostly adds the same columns over and over (MNIST: ~100 of 784 pixels
fire per step). Per sample and feature we take the majority value over time, m = [count >
T/2], and write x[t] = m + d[t]. Then

    W x[t] + b = (W m + b)  +  W d[t]
                 once per sample   only where x[t] differs from m (~20 per step on MNIST)

The first term is a small dense matmul over B rows (skipped, m = 0, where it would remove few
events: latency and delta coding have no majority); the second is a gather-sum of weight
columns (F.embedding_bag with weights d, +-1 for binary or signed spikes), and the weight
gradient is the same two parts transposed. This is exact for any input (the identity holds
for all x; only the order of float additions differs from a dense matmul); it only pays when
d is sparse, so dense input falls back to the plain matmul.

Whole steps that repeat an earlier step exactly (delta coding of a periodic saccade) are
computed once: the layer runs on the distinct steps and its output is indexed back to T steps
(the gradient of that indexing sums the repeats). CPU only: on a GPU the dense matmul is the
faster choice.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

# Above this fraction of non-zero deviations a dense matmul is cheaper than gathering columns.
MAX_DENSITY = 0.2
# A gathered weight column costs about as much as this many columns of a dense matmul.
GATHER_COST = 3


class MajoritySparseLinear(torch.autograd.Function):
    # float32 under trainer.precision=bf16 too: gathers and adds, not a matmul autocast speeds up
    @staticmethod
    @torch.amp.custom_fwd(device_type="cpu", cast_inputs=torch.float32)
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        steps, batch, n_in = x.shape
        count = x.sum(0)
        base = (count > steps / 2).to(x.dtype)  # [B, F] majority over time
        # events the base removes (exact for binary spikes): without a real majority (latency,
        # delta coding) its dense matmul would cost more than the gathers it saves
        has_base = bool(((2 * count - steps) * base).sum() * GATHER_COST > batch * n_in)
        diff = (x - base) if has_base else x
        flat = diff.reshape(-1)
        nz = flat.nonzero().squeeze(1)  # row-major: sorted by row
        if len(nz) > MAX_DENSITY * flat.numel():
            ctx.dense = True
            ctx.save_for_backward(x, weight)
            return F.linear(x, weight, bias)
        rows, cols = nz.div(n_in, rounding_mode="floor"), nz.remainder(n_in)
        vals = flat.index_select(0, nz)
        per_row = torch.bincount(rows, minlength=steps * batch)
        offsets = torch.cumsum(per_row, 0).sub_(per_row)
        out = F.embedding_bag(cols, weight.t().contiguous(), offsets, mode="sum",
                              per_sample_weights=vals).view(steps, batch, -1)
        out.add_(F.linear(base, weight, bias) if has_base else bias)
        ctx.dense = False
        ctx.has_base = has_base
        ctx.save_for_backward(base, rows, cols, vals, weight)
        return out

    @staticmethod
    @torch.amp.custom_bwd(device_type="cpu")
    def backward(ctx, grad):
        g_x = g_w = g_b = None
        if ctx.dense:
            x, weight = ctx.saved_tensors
            g_x = grad @ weight if ctx.needs_input_grad[0] else None
            g_w = grad.flatten(0, 1).t() @ x.flatten(0, 1)
        else:
            base, rows, cols, vals, weight = ctx.saved_tensors
            n_in = weight.shape[1]
            if ctx.needs_input_grad[0]:
                g_x = grad @ weight
            # dW = sum_t g[t]^T (m + d[t]) = (sum_t g[t])^T m + sum over deviations d * g[row]
            order = torch.argsort(cols, stable=True)
            per_col = torch.bincount(cols, minlength=n_in)
            offsets = torch.cumsum(per_col, 0).sub_(per_col)
            g_w = F.embedding_bag(rows.index_select(0, order), grad.reshape(-1, grad.shape[-1]),
                                  offsets, mode="sum",
                                  per_sample_weights=vals.index_select(0, order)).t()
            if ctx.has_base:
                g_w = g_w.addmm(grad.sum(0).t(), base)
        if ctx.needs_input_grad[2]:
            g_b = grad.sum((0, 1))
        return g_x, g_w, g_b


class RepeatSteps(torch.autograd.Function):
    """y[slot] along dim 0; the gradient sums the repeats with index_add_ (several times
    faster on the CPU than the autograd formula of index_select)."""

    @staticmethod
    def forward(ctx, y: torch.Tensor, slot: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(slot)
        ctx.n = y.shape[0]
        return y.index_select(0, slot)

    @staticmethod
    def backward(ctx, grad):
        slot, = ctx.saved_tensors
        g = grad.new_zeros(ctx.n, *grad.shape[1:]).index_add_(0, slot, grad)
        return g, None


def distinct_steps(x: torch.Tensor) -> Optional[torch.Tensor]:
    """For x [T, ...]: None if no step repeats an earlier one, else `first` [T], the first
    step equal to each step. Candidates come from two samples' steps (cheap, and nearly always
    distinct for random spikes), then are confirmed on the whole step."""
    steps = x.shape[0]
    if x.shape[1] == 0:
        return None
    probe = x[:, [0, -1]].reshape(steps, -1)
    _, group = torch.unique(probe, dim=0, return_inverse=True)
    group = group.tolist()
    if len(set(group)) == steps:
        return None
    first, seen = list(range(steps)), {}
    for t, g in enumerate(group):
        if g in seen and torch.equal(x[t], x[seen[g]]):
            first[t] = seen[g]
        else:
            seen.setdefault(g, t)
    if first == list(range(steps)):
        return None
    return torch.tensor(first, device=x.device)


def sparse_input_linear(lin: nn.Linear, x: torch.Tensor):
    """lin applied to every step of x [T, B, ...] through the majority split, or None when
    the split does not apply (a GPU, a single step, no bias, or an input needing grad)."""
    if x.device.type != "cpu" or x.shape[0] < 2 or x.requires_grad or lin.bias is None:
        return None
    def linear(xs: torch.Tensor) -> torch.Tensor:  # one distinct step: nothing to split
        return F.linear(xs, lin.weight, lin.bias) if len(xs) == 1 else \
            MajoritySparseLinear.apply(xs, lin.weight, lin.bias)

    x = x.flatten(2)
    repeated = on_distinct_steps(linear, x)
    return repeated if repeated is not None else linear(x)


def on_distinct_steps(fn, x: torch.Tensor) -> Optional[torch.Tensor]:
    """fn (a function of a sequence, step by step) applied to the distinct steps of x [T, ...]
    only and indexed back to T steps, or None if no step of x repeats an earlier one."""
    first = distinct_steps(x)
    if first is None:
        return None
    keep, slot = torch.unique(first, return_inverse=True)  # the distinct steps, in order
    return RepeatSteps.apply(fn(x.index_select(0, keep)), slot)
