"""Surrogate derivatives written out (snnTorch's atan, fast_sigmoid, sigmoid) for lif.py's backward.

Each is d spike_grad(x)/dx, applied in place on the eager path and passed as (name, p, q) to
the compiled loops."""
import inspect
import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional

import torch


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
