"""Input layer for spike-train input: our own Linear that skips the work a spike train repeats.

A rate-coded pixel of intensity p fires in a fraction p of the T steps, so a dense matmul
over [T*B, features] mostly adds the same columns over and over (MNIST: ~100 of 784 pixels
fire per step). Per sample and feature we take the majority value over time, m = [count >
T/2], and write x[t] = m + d[t]. Then

    W x[t] + b = (W m + b)  +  W d[t]
                 once per sample   only where x[t] differs from m (~20 per step on MNIST)

The first term is a small dense matmul over B rows; the second is a gather-sum of weight
columns (F.embedding_bag with weights d = +-1), and the weight gradient is the same two parts
transposed. This is exact for any input (the identity holds for all x; only the order of
float additions differs from a dense matmul); it only pays when d is sparse, so dense input
falls back to the plain matmul. CPU only: on a GPU the dense matmul is the faster choice.
"""
import torch
import torch.nn.functional as F
from torch import nn

# Above this fraction of non-zero deviations a dense matmul is cheaper than gathering columns.
MAX_DENSITY = 0.2


class MajoritySparseLinear(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        steps, batch, n_in = x.shape
        base = (x.sum(0) > steps / 2).to(x.dtype)  # [B, F] majority over time
        diff = (x - base).view(steps * batch, n_in)
        nz = diff.nonzero()
        if len(nz) > MAX_DENSITY * diff.numel():
            ctx.dense = True
            ctx.save_for_backward(x, weight)
            return F.linear(x, weight, bias)
        rows, cols = nz.unbind(1)
        vals = diff[rows, cols]
        offsets = torch.cumsum(torch.bincount(rows, minlength=steps * batch), 0) - \
            torch.bincount(rows, minlength=steps * batch)
        out = F.embedding_bag(cols, weight.t().contiguous(), offsets, mode="sum",
                              per_sample_weights=vals)
        out = out.view(steps, batch, -1).add_(F.linear(base, weight, bias))
        ctx.dense = False
        ctx.save_for_backward(base, rows, cols, vals, weight)
        ctx.steps = steps
        return out

    @staticmethod
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
            g_w = grad.sum(0).t() @ base
            order = torch.argsort(cols, stable=True)
            per_col = torch.bincount(cols, minlength=n_in)
            offsets = torch.cumsum(per_col, 0) - per_col
            g_w += F.embedding_bag(rows[order], grad.reshape(-1, grad.shape[-1]), offsets,
                                   mode="sum", per_sample_weights=vals[order]).t()
        if ctx.needs_input_grad[2]:
            g_b = grad.sum((0, 1))
        return g_x, g_w, g_b


def input_linear(layer: nn.Module):
    """The Linear of an input block that is a Linear or Flatten -> Linear, else None."""
    if isinstance(layer, nn.Linear):
        return layer
    if isinstance(layer, nn.Sequential) and len(layer) == 2 and \
            isinstance(layer[0], nn.Flatten) and isinstance(layer[1], nn.Linear):
        return layer[1]
    return None


def sparse_input_linear(layer: nn.Module, x: torch.Tensor):
    """layer applied to every step of x [T, B, ...] through the majority split, or None when
    the split does not apply (not a Linear, a GPU, a single step, or an input needing grad)."""
    lin = input_linear(layer)
    if lin is None or x.device.type != "cpu" or x.shape[0] < 2 or x.requires_grad \
            or lin.bias is None:
        return None
    return MajoritySparseLinear.apply(x.flatten(2), lin.weight, lin.bias)
