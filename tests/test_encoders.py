"""Encoders: shapes, value ranges and spike statistics."""
import pytest
import torch
from omegaconf import OmegaConf

from snn_sweep import encoders


def encode(x, steps, cfg):
    """The encoder a config names, as the pipeline calls it: (x, num_steps, **settings)."""
    return getattr(encoders, cfg.name)(x, steps, **{k: v for k, v in cfg.items() if k != "name"})

CFG = {
    "rate": {"name": "rate", "gain": 1.0},
    "latency": {"name": "latency", "tau": 5.0, "threshold": 0.01, "linear": True, "normalize": True},
    "delta": {"name": "delta", "threshold": 0.1, "off_spike": True, "saccade_px": 1},
    "direct": {"name": "direct"},
}


def images(b=8):
    torch.manual_seed(0)
    x = torch.zeros(b, 1, 28, 28)
    x[:, :, 8:20, 8:20] = torch.rand(b, 1, 12, 12)
    return x


@pytest.mark.parametrize("name", list(CFG))
@pytest.mark.parametrize("steps", [1, 7])
def test_shape_and_range(name, steps):
    x = images()
    s = encode(x, steps, OmegaConf.create(CFG[name]))
    assert s.shape == (steps, *x.shape)
    low = -1 if name == "delta" else 0
    assert s.min() >= low and s.max() <= 1
    if name in ("rate", "latency", "delta"):
        assert set(torch.unique(s).tolist()) <= {-1.0, 0.0, 1.0}


def test_rate_spike_probability_tracks_intensity():
    torch.manual_seed(0)
    p = torch.linspace(0, 1, 11).repeat(4000, 1)  # [4000, 11]
    s = encode(p, 50, OmegaConf.create(CFG["rate"]))
    freq = s.mean(dim=(0, 1))
    assert torch.allclose(freq, torch.linspace(0, 1, 11), atol=0.01)
    assert s[:, :, 0].sum() == 0 and s[:, :, -1].min() == 1


def test_rate_gain_scales_probability():
    torch.manual_seed(0)
    p = torch.full((2000, 4), 0.4)
    s = encode(p, 20, OmegaConf.create({"name": "rate", "gain": 0.5}))
    assert abs(float(s.mean()) - 0.2) < 0.01


def test_latency_fires_at_most_once_brighter_earlier():
    x = torch.tensor([[0.0, 0.2, 0.5, 0.8, 1.0]])
    s = encode(x, 25, OmegaConf.create(CFG["latency"]))
    counts = s.sum(0)[0]
    assert counts.tolist() == [0, 1, 1, 1, 1]  # the dark pixel never fires
    first = s[:, 0].argmax(0)[1:]
    assert torch.all(first[:-1] > first[1:])  # brighter fires strictly earlier
    assert (s.sum(0) <= 1).all()


def test_delta_carries_the_image_beyond_the_first_step():
    x = images()
    s = encode(x, 8, OmegaConf.create(CFG["delta"]))
    assert torch.equal(s[0], (x >= 0.1).float())  # step 0: the image appears
    assert s[1:].abs().sum() > 0  # the saccade keeps edges spiking
    assert (s[1:] < 0).any()  # off spikes
    still = encode(x, 8, OmegaConf.create({**CFG["delta"], "saccade_px": 0}))
    assert still[1:].abs().sum() == 0  # a static image would spike only at t=0


def test_direct_is_the_image_every_step_without_a_copy():
    x = images()
    s = encode(x, 5, OmegaConf.create(CFG["direct"]))
    assert torch.equal(s[3], x) and s.stride(0) == 0
