"""Spike encoders: an image batch [B, C, H, W] in [0, 1] becomes a sequence [T, B, C, H, W].

Each wraps snntorch.spikegen; `direct` returns a zero-copy view that is constant over time
(stride 0 along T), which the model uses to compute a time-invariant first layer only once.
"""
import torch
from snntorch import spikegen


def rate(x: torch.Tensor, steps: int, cfg) -> torch.Tensor:
    """The same distribution as spikegen.rate(x, num_steps=steps, gain=gain): every step and
    element an independent Bernoulli(clamp(gain * x, 0, 1)) draw. Elements with probability 0
    never fire, so only the others are drawn (MNIST: ~19% of pixels), ~4x less work than
    drawing all of them; the draws differ from snnTorch's for the same seed, the statistics do
    not (tests/test_encoders_rate.py)."""
    p = (x * cfg.gain).clamp(0, 1).reshape(-1)
    live = p.nonzero().squeeze(1)
    out = torch.zeros(steps, p.numel(), dtype=x.dtype, device=x.device)
    out[:, live] = (torch.rand(steps, len(live), dtype=x.dtype, device=x.device) < p[live]
                    ).to(x.dtype)
    return out.view(steps, *x.shape)


def latency(x: torch.Tensor, steps: int, cfg) -> torch.Tensor:
    return spikegen.latency(x, num_steps=steps, tau=cfg.tau, threshold=cfg.threshold,
                            linear=cfg.linear, normalize=cfg.normalize, clip=True)


def saccade(x: torch.Tensor, steps: int, px: int) -> torch.Tensor:
    """The image moving around a square of side `px` pixels, one corner per step: a static
    image would give delta modulation nothing to encode after the first step."""
    corners = [(0, 0), (px, 0), (px, px), (0, px)]
    frames = [torch.roll(x, shifts=corners[t % 4], dims=(-2, -1)) for t in range(steps)]
    return torch.stack(frames)


def delta(x: torch.Tensor, steps: int, cfg) -> torch.Tensor:
    # padding=False: step 0 is compared with a blank frame, so the whole image spikes once.
    return spikegen.delta(saccade(x, steps, cfg.saccade_px), threshold=cfg.threshold,
                          padding=False, off_spike=cfg.off_spike)


def direct(x: torch.Tensor, steps: int, cfg) -> torch.Tensor:
    return x.unsqueeze(0).expand(steps, *x.shape)


ENCODERS = {"rate": rate, "latency": latency, "delta": delta, "direct": direct}


def encode(x: torch.Tensor, steps: int, cfg) -> torch.Tensor:
    return ENCODERS[cfg.name](x, steps, cfg)
