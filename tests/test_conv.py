"""The conv SNN's layers (conv.py, conv_cpu.py) against F.conv2d, F.max_pool2d and the whole
csnn against the tutorial's per-step snnTorch computation: outputs and gradients."""
import pytest
import torch
import torch.nn.functional as F
from conftest import against_plain

from snn_sweep.nn import conv, lif
from snn_sweep.nn import ConvPool
from snn_sweep.build import build_model


@pytest.fixture(params=["compiled", "pytorch"])
def conv_path(request, monkeypatch):
    """conv_cpu's loops, or PyTorch's ops where Numba is missing (or on a GPU)."""
    if request.param == "pytorch":
        monkeypatch.setattr(conv, "conv_cpu", None)
    return request.param


def nhwc_of(x_nchw):  # [T, B, C, H, W] -> [T, B, H, W, C]
    return x_nchw.permute(0, 1, 3, 4, 2)


def rate_coded(steps, batch, shape, seed=0):
    """Spike trains that fire like MNIST: most pixels never, strokes often."""
    g = torch.Generator().manual_seed(seed)
    p = torch.rand(1, batch, *shape, generator=g)
    p = torch.where(p < 0.7, 0.0, p)
    return (torch.rand(steps, batch, *shape, generator=g) < p).float()


def reference_conv_pool(layer, x_nchw):
    steps, batch = x_nchw.shape[:2]
    y = F.max_pool2d(layer(x_nchw.flatten(0, 1)), 2)
    return nhwc_of(y.view(steps, batch, *y.shape[1:]))


def input_conv_pool(layer):
    """ConvPool as a Sequential's first layer: the model's input, spike trains split."""
    first = ConvPool(layer)
    first.first = True
    return first


def check_input_layer(layer, x):
    """The input ConvPool against conv then pool: output and weight gradients."""
    y = input_conv_pool(layer)(x)
    g = torch.randn(y.shape)
    y.backward(g)
    grads = [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    ref = reference_conv_pool(layer, x)
    ref.backward(g)
    torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)
    for a, p in zip(grads, layer.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-4, atol=1e-4)
    return y


def test_pool_ties_and_gradient_match_pytorch(conv_path):
    torch.manual_seed(0)
    x = torch.randn(7, 10, 9, 5)  # odd width: the last column is dropped, as PyTorch does
    x[:, :4, :4] = 0.5  # ties: the first maximum in row-major order gets the gradient
    a = x.clone().requires_grad_()
    b = x.permute(0, 3, 1, 2).clone().requires_grad_()
    y_a, y_b = conv.pool2(a), F.max_pool2d(b, 2)
    g = torch.randn_like(y_a)
    y_a.backward(g)
    y_b.backward(g.permute(0, 3, 1, 2))
    assert torch.equal(y_a, y_b.permute(0, 2, 3, 1))
    assert torch.equal(a.grad, b.grad.permute(0, 2, 3, 1))


@pytest.mark.parametrize("kind", ["rate", "dense", "constant"])
def test_input_conv_pool_matches_conv_then_pool(kind, conv_path):
    """The model's input: through the majority split (sparse spike trains), the dense conv
    (too many deviations) or once (constant over time)."""
    torch.manual_seed(0)
    steps, batch = 6, 5
    if kind == "rate":
        x = rate_coded(steps, batch, (2, 14, 14))
        if conv_path == "compiled":
            assert conv._majority_split(x) is not None  # the split is what is tested
    elif kind == "dense":
        x = (torch.rand(steps, batch, 2, 14, 14) < 0.5).float()
    else:
        x = torch.rand(batch, 2, 14, 14).unsqueeze(0).expand(steps, -1, -1, -1, -1)
    y = check_input_layer(torch.nn.Conv2d(2, 6, 3), x)
    if kind == "constant":
        assert y.stride(0) == 0


def test_hidden_conv_pool_matches_conv_then_pool(conv_path):
    torch.manual_seed(0)
    steps, batch = 4, 6
    s = (torch.rand(steps, batch, 12, 12, 5) < 0.2).float().requires_grad_()
    layer = torch.nn.Conv2d(5, 8, 5)
    y = conv.conv_pool(layer, s)
    g = torch.randn(y.shape)
    y.backward(g)
    grads = [s.grad.clone()] + [p.grad.clone() for p in layer.parameters()]
    layer.zero_grad()
    s_ref = s.detach().permute(0, 1, 4, 2, 3).clone().requires_grad_()
    reference_conv_pool(layer, s_ref).backward(g)
    torch.testing.assert_close(y, reference_conv_pool(layer, s_ref).detach())
    torch.testing.assert_close(grads[0], nhwc_of(s_ref.grad), rtol=1e-4, atol=1e-5)
    for a, p in zip(grads[1:], layer.parameters()):
        torch.testing.assert_close(a, p.grad, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("lif_path", ["compiled", "eager"])
@pytest.mark.parametrize("inputs", ["spikes", "constant"])
def test_csnn_matches_plain_snntorch(make_cfg, monkeypatch, inputs, lif_path, conv_path):
    """The whole conv SNN, every layer choice against the tutorial's per-step computation:
    loss and the gradients of all weights, beta and threshold."""
    monkeypatch.setattr(lif, "CPU_KERNELS", lif_path == "compiled")
    cfg = make_cfg("model=csnn", "model.channels=[6,8]", "neuron.learn_beta=true",
                   "neuron.learn_threshold=true", "neuron.threshold=0.5")
    torch.manual_seed(0)
    model = build_model(cfg)
    if inputs == "spikes":
        x = rate_coded(5, 12, (1, 28, 28))
    else:
        x = torch.rand(12, 1, 28, 28).unsqueeze(0).expand(5, -1, -1, -1, -1)
    y = torch.randint(0, 10, (12,))
    (s_a, l_a, g_a), (s_b, l_b, g_b) = against_plain(model, cfg.model.readout, x, y)
    assert s_a.sum() > 0  # the comparison covers spikes, not silence
    torch.testing.assert_close(s_a, s_b)
    torch.testing.assert_close(l_a, l_b)
    assert len(g_a) == len(g_b) == 12  # 3 x (weight, bias, beta, threshold)
    for a, b in zip(g_a, g_b):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_repeated_steps_computed_once(monkeypatch):
    """Delta coding's periodic steps: the input conv runs on the distinct steps only."""
    torch.manual_seed(0)
    distinct = rate_coded(3, 4, (1, 12, 12))
    x = distinct[torch.tensor([0, 1, 2, 1, 2, 1, 2])]
    layer = torch.nn.Conv2d(1, 6, 3)
    seen = []
    split = conv._majority_split
    monkeypatch.setattr(conv, "_majority_split", lambda xs: seen.append(len(xs)) or split(xs))
    check_input_layer(layer, x)
    assert seen == [3]


def test_hidden_linear_after_convs_matches_plain_snntorch():
    """A conv SNN with a hidden fully connected layer (conv - LIF - fc - LIF - fc - LIF, as
    TSSL-BP's and PLIF's MNIST nets): only the first Linear after the convs takes their
    channels_last output; the next one takes a flat vector."""
    import snntorch as snn
    from torch import nn

    from snn_sweep import nn as fast
    from snn_sweep.models import Readout
    torch.manual_seed(0)
    model = fast.Sequential(
        fast.ConvPool(nn.Conv2d(1, 4, 5)), fast.Neurons(snn.Leaky(beta=0.9)),
        fast.Linear(nn.Linear(4 * 12 * 12, 16)), fast.Neurons(snn.Leaky(beta=0.9)),
        fast.Linear(nn.Linear(16, 10)), fast.Neurons(snn.Leaky(beta=0.9)))
    with torch.no_grad():  # weights large enough that every layer spikes
        for p in model.parameters():
            p.mul_(4)
    x, y = torch.rand(3, 2, 1, 28, 28) * 3, torch.tensor([1, 7])
    (spk, loss, grads), (spk_ref, loss_ref, grads_ref) = against_plain(
        model, Readout.membrane_ce, x, y)
    assert spk.sum() > 0
    torch.testing.assert_close(spk, spk_ref)
    torch.testing.assert_close(loss, loss_ref)
    for g, g_ref in zip(grads, grads_ref):
        torch.testing.assert_close(g, g_ref, rtol=1e-4, atol=1e-5)


def test_conv_net_hidden_layers(make_cfg):
    """model.hidden adds fully connected layers before the output: ReLU (and dropout) in the
    ANN, LIF in the SNN, which matches plain snnTorch step by step."""
    ann = build_model(make_cfg("model=cnn_bn", "model.channels=[4,8]", "model.hidden=[16,12]",
                               "model.dropout=0.2"))
    linears = [m for m in ann.modules() if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8 * 7 * 7, 16), (16, 12),
                                                                 (12, 10)]
    kinds = [type(m).__name__ for m in ann.body]
    assert kinds[kinds.index("Flatten"):] == ["Flatten", "Linear", "ReLU", "Dropout", "Linear",
                                              "ReLU", "Dropout", "Linear"]
    cfg = make_cfg("model=csnn_bn", "model.channels=[4,8]", "model.hidden=[16]",
                   "neuron.learn_beta=true", "neuron.threshold=0.5")
    torch.manual_seed(0)
    model = build_model(cfg)
    with torch.no_grad():  # weights large enough that every layer spikes
        for name, p in model.named_parameters():
            if "weight" in name:
                p.mul_(3)
    x, y = rate_coded(4, 6, (1, 28, 28)), torch.randint(0, 10, (6,))
    model.train()
    (s_a, l_a, g_a), (s_b, l_b, g_b) = against_plain(model, cfg.model.readout, x, y)
    assert s_a.sum() > 0
    torch.testing.assert_close(s_a, s_b)
    torch.testing.assert_close(l_a, l_b)
    for a, b in zip(g_a, g_b):  # large gradients (scaled weights): float32 sums differ more
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
