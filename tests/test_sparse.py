"""The input layer's majority split (sparse.py) computes exactly what a dense Linear does."""
import pytest
import torch
from torch import nn

import snn_sweep.sparse as sparse
from snn_sweep.sparse import MajoritySparseLinear, sparse_input_linear


def dense_and_sparse(x, n_out=6, seed=0):
    torch.manual_seed(seed)
    layer = nn.Sequential(nn.Flatten(), nn.Linear(x[0, 0].numel(), n_out))
    g = torch.randn(x.shape[0], x.shape[1], n_out)
    out = {}
    for name in ("dense", "sparse"):
        layer.zero_grad()
        if name == "dense":
            y = layer(x.flatten(0, 1)).view(x.shape[0], x.shape[1], -1)
        else:
            y = sparse_input_linear(layer, x)
            assert y is not None
        (y * g).sum().backward()
        out[name] = (y.detach(), layer[1].weight.grad.clone(), layer[1].bias.grad.clone())
    return out["dense"], out["sparse"]


def spike_train(steps, batch, shape, seed=0):
    """Rate-coded spikes with dark, grey and saturated pixels, as in MNIST."""
    gen = torch.Generator().manual_seed(seed)
    p = torch.rand(batch, *shape, generator=gen)
    p = torch.where(p < 0.5, torch.zeros_like(p), torch.where(p > 0.8, torch.ones_like(p), p))
    return (torch.rand(steps, batch, *shape, generator=gen) < p).float()


@pytest.mark.parametrize("steps", [2, 5, 25])
def test_binary_input_matches_dense_linear(steps):
    x = spike_train(steps, 9, (1, 6, 7))
    (y_d, w_d, b_d), (y_s, w_s, b_s) = dense_and_sparse(x)
    torch.testing.assert_close(y_s, y_d, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w_s, w_d, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b_s, b_d)


def test_exact_for_any_input_values():
    """The split x = m + (x - m) is an identity, so ternary or graded input is exact too."""
    x = spike_train(8, 5, (10,)) * torch.randint(-1, 3, (8, 5, 10)).float()
    (y_d, w_d, _), (y_s, w_s, _) = dense_and_sparse(x)
    torch.testing.assert_close(y_s, y_d, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w_s, w_d, rtol=1e-5, atol=1e-5)


def test_dense_input_falls_back_to_matmul(monkeypatch):
    x = torch.rand(4, 3, 10)  # analog and changing every step: nothing to skip
    calls = []
    monkeypatch.setattr(sparse.F, "embedding_bag", lambda *a, **k: calls.append(1))
    (y_d, w_d, _), (y_s, w_s, _) = dense_and_sparse(x)
    assert not calls
    torch.testing.assert_close(y_s, y_d)
    torch.testing.assert_close(w_s, w_d)


def test_split_skips_what_repeats():
    """Saturated pixels fire every step: the split leaves nothing for them to gather."""
    x = torch.zeros(10, 2, 8)
    x[:, :, :3] = 1.0
    layer = nn.Linear(8, 4)
    y = MajoritySparseLinear.apply(x, layer.weight, layer.bias)
    torch.testing.assert_close(y, layer(x))


def test_not_used_where_it_does_not_apply():
    lin = nn.Linear(10, 4)
    x = (torch.rand(3, 2, 10) < 0.2).float()
    assert sparse_input_linear(nn.Conv2d(1, 2, 3), x) is None
    assert sparse_input_linear(lin, x[:1]) is None  # a single step: plain matmul
    assert sparse_input_linear(lin, x.requires_grad_()) is None
    assert sparse_input_linear(lin, x.detach()) is not None
