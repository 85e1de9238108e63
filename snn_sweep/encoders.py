"""Spike encoders: an image batch [B, C, H, W] in [0, 1] becomes a sequence [T, B, C, H, W].

Event data are already spikes in time: `frames` only puts their time first.

Each is a function (x, num_steps, **settings), the `_target_` of a conf/encoder/ option, the
signature of snntorch.spikegen's; a user's encoder is any such function.

Each gives snntorch.spikegen's spike trains (rate: the same distribution, latency and delta:
the same bits) with less work; `direct` returns a zero-copy view that is constant over time
(stride 0 along T), which the model uses to compute a time-invariant first layer only once.
"""
import torch
from snntorch import spikegen


def rate(x: torch.Tensor, num_steps: int, gain: float = 1.0) -> torch.Tensor:
    """The same distribution as spikegen.rate(x, num_steps, gain=gain): every step and
    element an independent Bernoulli(clamp(gain * x, 0, 1)) draw. Elements with probability 0
    never fire, so only the others are drawn (on MNIST a minority of pixels): less work than
    drawing all of them; the draws differ from snnTorch's for the same seed, the statistics do
    not (tests/test_encoders_rate.py)."""
    p = (x * gain).clamp(0, 1).reshape(-1)
    live = p.nonzero().squeeze(1)
    out = torch.zeros(num_steps, p.numel(), dtype=x.dtype, device=x.device)
    out[:, live] = (torch.rand(num_steps, len(live), dtype=x.dtype, device=x.device) < p[live]
                    ).to(x.dtype)
    return out.view(num_steps, *x.shape)


def latency(x: torch.Tensor, num_steps: int, tau: float = 5.0, threshold: float = 0.01,
            linear: bool = True, normalize: bool = True) -> torch.Tensor:
    """spikegen.latency(x, num_steps, ..., clip=True), bit for bit: the spike times come
    from snnTorch's latency_code, but each pixel fires at most once, so the train is written
    by one scatter into zeros instead of spikegen's several passes over [T, ...]."""
    lo, hi = torch.aminmax(x)
    if lo < 0 or hi > 1:
        raise ValueError(f"Elements of ``data`` must be between [0, 1], but input is [{lo}, {hi}]")
    if threshold < 0 or threshold > 1:
        raise ValueError(f"``threshold`` [{threshold}] must be between [0, 1]")
    spike_time, dark = spikegen.latency_code(x, num_steps=num_steps, threshold=threshold,
                                             tau=tau, normalize=normalize, linear=linear)
    late = torch.round(spike_time).long()
    if late.max() > num_steps - 1:
        raise ValueError(f"The maximum value in ``spike_time`` [{late.max()}] is out of bounds "
                         f"for ``num_steps`` [{num_steps}-1]; decrease tau or set normalize=True.")
    # as spikegen: spikes past the window are dropped, pixels below threshold never fire
    fire = ~dark & (late <= num_steps - 1)
    at = torch.round(torch.clamp_max(spike_time, num_steps - 1)).long()
    out = torch.zeros(num_steps, *x.shape, dtype=spikegen.dtype, device=x.device)
    return out.scatter_(0, at.unsqueeze(0), fire.to(out.dtype).unsqueeze(0))


def saccade(x: torch.Tensor, steps: int, px: int) -> torch.Tensor:
    """The image moving around a square of side `px` pixels, one corner per step: a static
    image would give delta modulation nothing to encode after the first step."""
    corners = [(0, 0), (px, 0), (px, px), (0, px)]
    frames = [torch.roll(x, shifts=corners[t % 4], dims=(-2, -1)) for t in range(steps)]
    return torch.stack(frames)


# The saccade visits 4 corners, so step t >= 5 subtracts the same two rolled frames as step
# t - 4: after step 0 (the image appearing) the events repeat with period 4.
PERIOD = 4


def delta(x: torch.Tensor, num_steps: int, threshold: float = 0.1, off_spike: bool = True,
          saccade_px: int = 1) -> torch.Tensor:
    """spikegen.delta(saccade(x, num_steps), padding=False, ...), bit for bit, computing only the
    first PERIOD + 1 distinct steps and repeating them. padding=False: step 0 is compared with
    a blank frame, so the whole image spikes once."""
    n = min(num_steps, PERIOD + 1)
    frames = saccade(x, n, saccade_px)
    change = frames.clone()
    change[1:] -= frames[:-1]
    events = (change >= threshold).to(x.dtype)
    if off_spike:
        events -= (change <= -threshold).to(x.dtype)
    if num_steps == n:
        return events
    t = torch.arange(num_steps, device=x.device)
    return events.index_select(0, torch.where(t <= PERIOD, t, 1 + (t - 1) % PERIOD))


def direct(x: torch.Tensor, num_steps: int) -> torch.Tensor:
    return x.unsqueeze(0).expand(num_steps, *x.shape)


def frames(x: torch.Tensor, num_steps: int) -> torch.Tensor:
    """Event data's batch of frames [B, T, C, H, W] (snn_sweep/events.py) as [T, B, C, H, W]:
    nothing is encoded, the frames are the spikes."""
    if x.dim() < 3 or x.shape[1] != num_steps:
        raise ValueError(f"encoder=frames takes event frames [B, {num_steps}, ...], "
                         f"got {list(x.shape)}: use it with an event dataset")
    return x.transpose(0, 1).contiguous()


def frame_counts(x: torch.Tensor) -> torch.Tensor:
    """What an ANN sees of event data [B, T, C, H, W]: the frames summed over time, one count
    image per sample [B, C, H, W] (the events its SNN twin sees, as a static image)."""
    return x.sum(1)
