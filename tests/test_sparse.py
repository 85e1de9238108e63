"""The input layer's majority split (sparse.py) computes exactly what a dense Linear does."""
import pytest
import torch
from torch import nn

import snn_sweep.nn.sparse as sparse
from snn_sweep.nn.sparse import MajoritySparseLinear, sparse_input_linear


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
            y = sparse_input_linear(layer[1], x)
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
    assert sparse_input_linear(nn.Linear(10, 4, bias=False), x) is None
    assert sparse_input_linear(lin, x[:1]) is None  # a single step: plain matmul
    assert sparse_input_linear(lin, x.requires_grad_()) is None
    assert sparse_input_linear(lin, x.detach()) is not None


def signed_train(steps, batch, n, seed=0, period=None):
    """Delta-like events: +-1, mostly 0, no majority; with `period`, steps >= 1 repeat."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randint(-1, 2, (steps, batch, n), generator=gen).float()
    x *= torch.rand(steps, batch, n, generator=gen) < 0.2
    if period:
        for t in range(1 + period, steps):
            x[t] = x[t - period]
    return x


@pytest.mark.parametrize("steps,period", [(3, None), (25, None), (25, 4), (6, 4), (9, 1)])
def test_signed_events_match_dense_linear(steps, period):
    x = signed_train(steps, 7, 30, period=period)
    (y_d, w_d, b_d), (y_s, w_s, b_s) = dense_and_sparse(x)
    torch.testing.assert_close(y_s, y_d, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w_s, w_d, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(b_s, b_d)


def test_signed_events_take_the_sparse_path_without_a_base_matmul(monkeypatch):
    """No majority (delta, latency coding): gathers only, no dense matmul over inputs."""
    x = signed_train(10, 4, 50)
    lin = nn.Linear(50, 3)
    gathers, matmuls = [], []
    bag, linear = sparse.F.embedding_bag, sparse.F.linear
    monkeypatch.setattr(sparse.F, "embedding_bag",
                        lambda *a, **k: gathers.append(1) or bag(*a, **k))
    monkeypatch.setattr(sparse.F, "linear", lambda *a, **k: matmuls.append(1) or linear(*a, **k))
    y = sparse_input_linear(lin, x)
    y.sum().backward()
    assert len(gathers) == 2 and not matmuls  # forward and weight gradient
    torch.testing.assert_close(y, lin(x), rtol=1e-5, atol=1e-5)


def test_repeated_steps_computed_once(monkeypatch):
    x = signed_train(25, 5, 40, period=4)
    seen = []
    apply = MajoritySparseLinear.apply
    monkeypatch.setattr(MajoritySparseLinear, "apply",
                        lambda x, *a: seen.append(x.shape[0]) or apply(x, *a))
    (y_d, w_d, _), (y_s, w_s, _) = dense_and_sparse(x)
    assert seen == [5]  # step 0 and one period
    torch.testing.assert_close(y_s, y_d, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w_s, w_d, rtol=1e-5, atol=1e-5)


def test_constant_copy_is_one_step():
    x = spike_train(1, 4, (12,)).expand(6, 4, 12).contiguous()  # not a stride-0 view
    assert sparse.distinct_steps(x).tolist() == [0] * 6
    (y_d, w_d, _), (y_s, w_s, _) = dense_and_sparse(x)
    torch.testing.assert_close(y_s, y_d, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w_s, w_d, rtol=1e-5, atol=1e-5)


def test_steps_merged_only_when_equal_in_every_sample():
    """Candidates come from the first and last samples; the others must agree too."""
    x = signed_train(6, 5, 20, period=2)
    assert sparse.distinct_steps(x).tolist() == [0, 1, 2, 1, 2, 1]
    x[3, 2, 0] = 5.0  # a middle sample differs at step 3
    assert sparse.distinct_steps(x).tolist() == [0, 1, 2, 3, 2, 1]
    (y_d, w_d, _), (y_s, w_s, _) = dense_and_sparse(x)
    torch.testing.assert_close(y_s, y_d, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(w_s, w_d, rtol=1e-5, atol=1e-5)
    assert sparse.distinct_steps(spike_train(25, 4, (30,))) is None  # rate: nothing repeats
