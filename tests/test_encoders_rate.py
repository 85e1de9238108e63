"""The rate encoder draws only live pixels; its spikes must be distributed as spikegen.rate's."""
import torch
from snntorch import spikegen

from snn_sweep.encoders import rate


def test_same_statistics_as_spikegen_rate():
    torch.manual_seed(0)
    p = torch.tensor([0.0, 0.03, 0.2, 0.5, 0.77, 0.97, 1.0]).repeat(3000, 1)  # [3000, 7]
    steps = 20
    ours, ref = rate(p, steps), spikegen.rate(p, num_steps=steps)
    assert ours.shape == ref.shape and ours.dtype == ref.dtype
    assert set(torch.unique(ours).tolist()) <= {0.0, 1.0}
    # per-element firing probability: p (60k draws per value)
    for s in (ours, ref):
        torch.testing.assert_close(s.mean((0, 1)), p[0], atol=0.01, rtol=0)
    assert ours[..., 0].sum() == 0 and ours[..., -1].min() == 1
    # spike counts over the window are Binomial(T, p): the variance checks independence in time
    var_expected = steps * p[0] * (1 - p[0])
    assert ((ours.sum(0).var(0) - var_expected).abs() <= 0.1 + 0.1 * var_expected).all()
    # and nothing couples neighbouring steps or elements
    a, b = ours[:-1, :, 3].flatten(), ours[1:, :, 3].flatten()
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.03
    a, b = ours[:, :, 3].flatten(), ours[:, :, 4].flatten()
    assert abs(float(torch.corrcoef(torch.stack([a, b]))[0, 1])) < 0.03


def test_gain_clamps_like_spikegen():
    torch.manual_seed(0)
    p = torch.tensor([0.1, 0.3, 0.6]).repeat(4000, 1)
    freq = rate(p, 10, gain=2.0).mean((0, 1))
    torch.testing.assert_close(freq, torch.tensor([0.2, 0.6, 1.0]), atol=0.01, rtol=0)


def test_image_shape_kept():
    x = torch.rand(4, 1, 28, 28)
    assert rate(x, 3).shape == (3, 4, 1, 28, 28)
