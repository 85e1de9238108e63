"""The conv SNN's fast layer: conv -> 2x2 pool over every step of a sequence, channels-last.

Pooling is max by default; avg or sum, which NIR can express.

Sequences here are [T, B, H, W, C] (channels last, contiguous): oneDNN's convolutions run
faster on that layout than on [N, C, H, W], and a neuron, being elementwise, does not mind
it. On the CPU the pooling runs as conv_cpu's compiled loops (one byte per argmax instead of
PyTorch's int64), and an input that changes sparsely over time (spike trains) enters its first
conv as the majority split of sparse.py: one dense conv over the batch plus a scatter of the
few elements that differ from it at each step. Elsewhere (a GPU) the same arithmetic runs as
F.conv2d and F.max_pool2d.
"""
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from . import lif
from .sparse import MAX_DENSITY, on_distinct_steps

# The conv loops run where the LIF loops do: the same Numba, the same way out
# (SNN_SWEEP_KERNELS=eager), and as many threads (lif_cpu.threads: torch's setting).
try:
    if lif.lif_cpu is None:
        raise ImportError(lif.UNAVAILABLE)
    from .kernels import conv_cpu
except Exception:  # no usable Numba: PyTorch's own ops compute the same (lif.py says why)
    conv_cpu = None  # type: ignore[assignment]


def _compiled(x: torch.Tensor) -> bool:
    return conv_cpu is not None and x.device.type == "cpu" and x.dtype == torch.float32


def full(y: torch.Tensor) -> torch.Tensor:
    """y in float32 if autocast computed it in a lower precision (trainer.precision=bf16):
    pooling, BatchNorm and the neurons after a weight layer run in float32."""
    return y.float() if y.dtype in (torch.bfloat16, torch.float16) else y


def to_nchw(x: torch.Tensor) -> torch.Tensor:
    """[N, H, W, C] -> the same memory as an [N, C, H, W] tensor in channels_last format."""
    return x.permute(0, 3, 1, 2)


def to_nhwc(x: torch.Tensor) -> torch.Tensor:
    """[N, C, H, W] -> [N, H, W, C], contiguous (a view if x is channels_last)."""
    return x.permute(0, 2, 3, 1).contiguous()


class Pool2(torch.autograd.Function):
    """2x2 max pooling of x [N, H, W, C] (contiguous) by conv_cpu.pool."""

    @staticmethod
    def forward(ctx, x):
        n, h, w, c = x.shape
        out = x.new_empty((n, h // 2, w // 2, c))
        idx = torch.empty(out.shape, dtype=torch.uint8)
        lif.lif_cpu.threads()
        conv_cpu.pool(x.detach().numpy(), out.numpy(), idx.numpy())
        ctx.save_for_backward(idx)
        ctx.in_shape = x.shape
        return out

    @staticmethod
    def backward(ctx, g):
        (idx,) = ctx.saved_tensors
        g_in = g.new_empty(ctx.in_shape)
        lif.lif_cpu.threads()
        conv_cpu.unpool(g.contiguous().numpy(), idx.numpy(), g_in.numpy())
        return g_in


def pool2(x: torch.Tensor) -> torch.Tensor:
    """2x2 max pooling (stride 2, floor) of x [N, H, W, C] -> [N, H // 2, W // 2, C]."""
    if _compiled(x):
        return Pool2.apply(x.contiguous())
    return to_nhwc(F.max_pool2d(to_nchw(x), 2))


class SparseConvPool(torch.autograd.Function):
    """pool(conv(m) + W * d[t]) for every step, given base = conv(m) [B, H, W, C] (with its
    bias; autograd takes its gradient on through the conv) and d [T, B, Hin, Win, Cin]."""

    @staticmethod
    def forward(ctx, dev, base, weight):
        steps, batch = dev.shape[:2]
        h, w, c = base.shape[1:]
        out = base.new_empty((steps, batch, h // 2, w // 2, c))
        idx = torch.empty(out.shape, dtype=torch.uint8)
        w_slabs = weight.detach().permute(2, 3, 1, 0).contiguous()  # [KH, KW, Cin, C]
        lif.lif_cpu.threads()
        conv_cpu.sparse_conv_pool(base.detach().contiguous().numpy(), dev.numpy(),
                                  w_slabs.numpy(), out.numpy(), idx.numpy())
        ctx.save_for_backward(dev, idx)
        ctx.base_shape, ctx.w_shape = base.shape, w_slabs.shape
        return out

    @staticmethod
    def backward(ctx, g):
        dev, idx = ctx.saved_tensors
        g_base = g.new_zeros(ctx.base_shape)
        tasks = max(1, min(lif.lif_cpu.threads(), ctx.base_shape[0]))
        g_w = g.new_zeros((tasks, *ctx.w_shape))
        conv_cpu.sparse_conv_pool_backward(g.contiguous().numpy(), idx.numpy(), dev.numpy(),
                                           g_base.numpy(), g_w.numpy())
        return None, g_base, g_w.sum(0).permute(3, 2, 0, 1)


POOLS = ("max", "avg", "sum")  # 2x2, stride 2: max (the default), average, sum


def pool_as(x: torch.Tensor, pool: str = "max") -> torch.Tensor:
    """2x2 pooling of x [N, H, W, C] (stride 2, floor): max (pool2), average or sum."""
    if pool == "max":
        return pool2(x)
    if pool not in POOLS:
        raise ValueError(f"pool={pool!r}: one of {', '.join(POOLS)}")
    return to_nhwc(F.avg_pool2d(to_nchw(x), 2, divisor_override=1 if pool == "sum" else None))


def conv_pool(conv: nn.Conv2d, x: torch.Tensor, pool: str = "max",
              norm: Optional[nn.Module] = None) -> torch.Tensor:
    """conv, 2x2 pool (then norm, if any) on every step of x [T, B, H, W, C] ->
    [T, B, H', W', C']."""
    steps, batch = x.shape[:2]
    y = pool_as(to_nhwc(full(conv(to_nchw(x.reshape(steps * batch, *x.shape[2:]))))), pool)
    if norm is not None:  # after the pool: a quarter of the elements to normalize
        y = to_nhwc(norm(to_nchw(y)))  # BatchNorm2d keeps the channels_last layout
    return y.view(steps, batch, *y.shape[1:])


def input_conv_pool(conv: nn.Conv2d, x: torch.Tensor, pool: str = "max",
                    norm: Optional[nn.Module] = None) -> torch.Tensor:
    """conv, 2x2 pool (then norm) on every step of the model's input x [T, B, C, H, W] ->
    [T, B, H', W', C']; with max pooling, an unpadded conv and no norm, a sparse spike train
    goes through the majority split, and steps that repeat an earlier one (delta coding of a
    periodic saccade) are computed once; anything else takes the dense path."""
    if pool != "max" or norm is not None or tuple(conv.padding) != (0, 0):
        return conv_pool(conv, x.permute(0, 1, 3, 4, 2).contiguous(), pool, norm)
    if x.shape[0] > 1 and _compiled(x):
        repeated = on_distinct_steps(lambda xs: _split_conv_pool(conv, xs), x)
        return repeated if repeated is not None else _split_conv_pool(conv, x)
    return conv_pool(conv, x.permute(0, 1, 3, 4, 2).contiguous())


def _split_conv_pool(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """input_conv_pool on the compiled path, through the majority split where it pays."""
    split = _majority_split(x) if x.shape[0] > 1 and not x.requires_grad else None
    if split is None:
        return conv_pool(conv, x.permute(0, 1, 3, 4, 2).contiguous())
    majority, dev = split
    base = to_nhwc(full(conv(majority.contiguous(memory_format=torch.channels_last))))
    return SparseConvPool.apply(dev.permute(0, 1, 3, 4, 2).contiguous(), base, conv.weight)


def _majority_split(x: torch.Tensor) -> Optional[tuple]:
    """(m [B, C, H, W], d = x - m [T, B, C, H, W]) with m the value each element takes more
    than half of the time (else 0), or None when d is too dense to pay."""
    majority = (x.sum(0) > x.shape[0] / 2).to(x.dtype)
    dev = x - majority
    if int(torch.count_nonzero(dev)) > MAX_DENSITY * dev.numel():
        return None
    return majority, dev
