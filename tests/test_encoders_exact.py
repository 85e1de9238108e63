"""The latency and delta encoders give snnTorch's spike trains bit for bit (they only do less
work): compared with the plain snntorch.spikegen construction on random and edge-case batches."""
import itertools

import pytest
import torch
from omegaconf import OmegaConf
from snntorch import spikegen

from snn_sweep.encoders import delta, latency


def settings(cfg):
    """An encoder config's settings: the encoder function's keyword arguments."""
    return {k: v for k, v in cfg.items() if k != "name"}


def reference_delta(x, steps, cfg):
    corners = [(0, 0), (cfg.saccade_px, 0), (cfg.saccade_px, cfg.saccade_px), (0, cfg.saccade_px)]
    frames = torch.stack([torch.roll(x, shifts=corners[t % 4], dims=(-2, -1))
                          for t in range(steps)])
    return spikegen.delta(frames, threshold=cfg.threshold, padding=False,
                          off_spike=cfg.off_spike)


def reference_latency(x, steps, cfg):
    return spikegen.latency(x, num_steps=steps, tau=cfg.tau, threshold=cfg.threshold,
                            linear=cfg.linear, normalize=cfg.normalize, clip=True)


def batches():
    gen = torch.Generator().manual_seed(0)
    yield "uniform", torch.rand(6, 1, 28, 28, generator=gen)
    yield "mnist-like", torch.randint(0, 256, (5, 1, 12, 12), generator=gen).float() / 255
    x = torch.rand(4, 2, 9, 7, generator=gen)  # channels, non-square, many 0 and 1 pixels
    x[x < 0.4], x[x > 0.8] = 0.0, 1.0
    yield "saturated", x
    yield "zeros", torch.zeros(3, 1, 6, 6)
    yield "ones", torch.ones(3, 1, 6, 6)
    x = torch.zeros(2, 1, 6, 6)  # values exactly at the thresholds used below
    x[:, :, ::2] = 0.1
    x[:, :, 1::3] = 0.01
    yield "at-threshold", x


def same_bits(ours, ref):
    assert ours.dtype == ref.dtype and ours.shape == ref.shape
    # int view: +0.0 and -0.0 differ
    assert torch.equal(ours.contiguous().view(torch.int32), ref.contiguous().view(torch.int32))


@pytest.mark.parametrize("name,x", list(batches()))
@pytest.mark.parametrize("steps", [1, 2, 4, 5, 6, 9, 25])
def test_delta_same_bits_as_spikegen(name, x, steps):
    for px, thr, off in itertools.product([0, 1, 2, 8], [0.1, 0.5], [True, False]):
        cfg = OmegaConf.create({"name": "delta", "threshold": thr, "off_spike": off,
                                "saccade_px": px})
        same_bits(delta(x, steps, **settings(cfg)), reference_delta(x, steps, cfg))


@pytest.mark.parametrize("name,x", list(batches()))
@pytest.mark.parametrize("steps", [1, 2, 5, 25, 50])
def test_latency_same_bits_as_spikegen(name, x, steps):
    for tau, thr, linear, normalize in itertools.product([0.5, 5.0], [0.01, 0.1, 0.6],
                                                         [True, False], [True, False]):
        cfg = OmegaConf.create({"name": "latency", "tau": tau, "threshold": thr,
                                "linear": linear, "normalize": normalize})
        try:
            ref = reference_latency(x, steps, cfg)
        except Exception:  # spike times past the window: ours refuses too
            with pytest.raises(Exception):
                latency(x, steps, **settings(cfg))
            continue
        same_bits(latency(x, steps, **settings(cfg)), ref)


def test_latency_rejects_what_spikegen_rejects():
    cfg = OmegaConf.create({"name": "latency", "tau": 5.0, "threshold": 0.01, "linear": True,
                            "normalize": True})
    for bad in (torch.full((2, 3), 1.5), torch.full((2, 3), -0.1)):
        with pytest.raises(Exception):
            reference_latency(bad, 5, **settings(cfg))
        with pytest.raises(Exception, match="between"):
            latency(bad, 5, **settings(cfg))


def test_delta_repeats_with_the_saccade_period():
    """What the input layer's step deduplication relies on (sparse.py)."""
    x = torch.rand(3, 1, 10, 10)
    cfg = OmegaConf.create({"name": "delta", "threshold": 0.1, "off_spike": True,
                            "saccade_px": 1})
    s = delta(x, 25, **settings(cfg))
    assert torch.equal(s[5:], s[1:-4]) and not torch.equal(s[1], s[2])
