"""The fused LIF recurrence against stepping snn.Leaky through time with plain autograd."""
import inspect
import os
from pathlib import Path

import pytest
import snntorch as snn
import torch
import torch.nn.functional as F
from conftest import against_plain
from snntorch import surrogate

from snn_sweep.nn import lif
from snn_sweep.nn.kernels import lif_cpu
from snn_sweep.nn import run_neuron
from snn_sweep.nn.derivatives import DERIVATIVES, derivative_of
from snn_sweep.nn.lif import fusable, leaky_sequence
from snn_sweep.nn.lif_linear import leaky_linear
from snn_sweep.build import build_model

SURROGATE_ARGS = {"atan": {}, "fast_sigmoid": {"slope": 10}, "sigmoid": {"slope": 5}}
SURROGATES = {name: getattr(surrogate, name)(**args) for name, args in SURROGATE_ARGS.items()}


@pytest.fixture(params=["compiled", "eager"])
def cpu_path(request, monkeypatch):
    """Run a test on both CPU paths of the fused recurrence: lif_cpu's compiled loops (float32,
    scalar beta and threshold) and the eager PyTorch loop."""
    monkeypatch.setattr(lif, "CPU_KERNELS", request.param == "compiled")
    return request.param


def make_pair(reset, spike_grad, beta, threshold, learn):
    kw = dict(beta=beta, threshold=threshold, spike_grad=spike_grad, reset_mechanism=reset,
              learn_beta=learn, learn_threshold=learn)
    return snn.Leaky(**kw), snn.Leaky(**kw)


def stepped(neuron, cur):
    """The snnTorch reference: one call per step, autograd through everything."""
    mem = neuron.reset_mem()
    spk_rec, mem_rec = [], []
    for t in range(cur.shape[0]):
        spk, mem = neuron(cur[t], mem)
        spk_rec.append(spk)
        mem_rec.append(mem)
    return torch.stack(spk_rec), torch.stack(mem_rec)


def grads(neuron, cur, fn, w_spk, w_mem):
    cur = cur.clone().requires_grad_()
    spk, mem = fn(neuron, cur)
    ((spk * w_spk).sum() + (mem * w_mem).sum()).backward()
    params = [p.grad.clone() for p in (neuron.beta, neuron.threshold)
              if isinstance(p, torch.nn.Parameter)]
    return spk.detach(), mem.detach(), cur.grad, params


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("surr", list(SURROGATES))
@pytest.mark.parametrize("beta", [0.9, "per_neuron"])
@pytest.mark.parametrize("derivative", ["hand_written", "autograd"])
@pytest.mark.parametrize("learn", [True, False])  # lif_cpu skips the parameter terms if False
def test_fused_matches_stepped_snntorch(reset, surr, beta, derivative, learn, cpu_path):
    torch.manual_seed(0)
    steps, batch, n = 12, 5, 7
    if beta == "per_neuron":  # includes values that the clamp to [0, 1] cuts
        beta = torch.tensor([0.5, 0.9, 1.2, -0.1, 0.99, 0.7, 0.3])
        threshold = torch.tensor(0.8)
    else:
        threshold = 1.0
    ref, fused = make_pair(reset, SURROGATES[surr], beta, threshold, learn=learn)
    cur = torch.randn(steps, batch, n) * 0.8 + 0.4
    w_spk, w_mem = torch.randn(steps, batch, n), torch.randn(steps, batch, n)
    s_ref, m_ref, g_ref, p_ref = grads(ref, cur, stepped, w_spk, w_mem)
    d = derivative_of(SURROGATES[surr]) if derivative == "hand_written" else None
    assert (d is None) == (derivative == "autograd")
    s_fus, m_fus, g_fus, p_fus = grads(fused, cur, lambda n, c: leaky_sequence(n, c, d),
                                       w_spk, w_mem)
    assert s_ref.sum() > 0 and (s_ref == 0).any()  # the case exercises spikes and resets
    assert torch.equal(s_fus, s_ref)
    torch.testing.assert_close(m_fus, m_ref)
    torch.testing.assert_close(g_fus, g_ref, rtol=1e-4, atol=1e-5)
    assert len(p_fus) == len(p_ref) == (2 if learn else 0)
    for a, b in zip(p_fus, p_ref):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_gradient_only_through_spikes_or_membrane(cpu_path):
    torch.manual_seed(1)
    cur = torch.randn(6, 3, 4) + 0.5
    for use in ("spk", "mem"):
        ref, fused = make_pair("subtract", surrogate.atan(), 0.8, 1.0, learn=False)
        out = []
        for neuron, fn in ((ref, stepped), (fused, leaky_sequence)):
            c = cur.clone().requires_grad_()
            spk, mem = fn(neuron, c)
            (spk if use == "spk" else mem).pow(2).sum().backward()
            out.append(c.grad)
        torch.testing.assert_close(out[0], out[1])


def test_surrogate_derivative_written_out_only_where_known():
    assert derivative_of(lambda x: x) is None
    assert derivative_of(surrogate.triangular()) is None


@pytest.mark.parametrize("name", sorted(DERIVATIVES))
@pytest.mark.parametrize("args", [{}, "other"])
def test_written_out_derivative_is_the_surrogates_gradient(name, args):
    """The fused kernels' derivative is read off the neuron's spike_grad; it must equal what
    autograd gets from that very spike_grad, at snnTorch's default slope and at another."""
    factory = getattr(surrogate, name)
    if args == "other":
        (param,) = inspect.signature(factory).parameters  # alpha or slope
        args = {param: 3.0 if param == "alpha" else 7.0}
    spike_grad = factory(**args)
    x = torch.linspace(-2, 2, 41)
    leaf = x.clone().requires_grad_()
    spike_grad(leaf).sum().backward()
    torch.testing.assert_close(derivative_of(spike_grad)(x.clone()), leaf.grad)


def test_fusable_only_for_plain_leaky():
    assert fusable(snn.Leaky(beta=0.9))
    assert not fusable(snn.Leaky(beta=0.9, inhibition=True))
    assert not fusable(snn.Leaky(beta=0.9, reset_delay=False))
    assert not fusable(snn.Synaptic(alpha=0.8, beta=0.9))
    assert not fusable(snn.Lapicque(beta=0.9))


@pytest.mark.parametrize("inputs", ["spikes", "constant"])
def test_model_matches_plain_snntorch(make_cfg, inputs, cpu_path):
    """Whole MLP: the fused layers and the tutorial's per-step computation give the same loss
    and grads, for spike input and for a time-constant (direct-coded) input."""
    cfg = make_cfg("neuron.learn_beta=true", "neuron.learn_threshold=true")
    torch.manual_seed(0)
    model = build_model(cfg)
    if inputs == "spikes":
        x = (torch.rand(6, 16, 1, 28, 28) < 0.3).float()
    else:
        x = torch.rand(16, 1, 28, 28).unsqueeze(0).expand(6, 16, 1, 28, 28)
    y = torch.randint(0, 10, (16,))
    (_, l_a, g_a), (_, l_b, g_b) = against_plain(model, cfg.model.readout, x, y)
    torch.testing.assert_close(l_a, l_b)
    assert len(g_a) == len(g_b) == 8  # 2 x (weight, bias, beta, threshold)
    for a, b in zip(g_a, g_b):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_run_neuron_uses_snntorch_for_other_neurons():
    torch.manual_seed(0)
    neuron = snn.Synaptic(alpha=0.8, beta=0.9)
    cur = torch.randn(5, 2, 3) + 0.5
    spk, mem = run_neuron(neuron, cur)
    assert spk.shape == mem.shape == cur.shape


def test_negative_learned_threshold_resets_at_first_step(cpu_path):
    """snnTorch's first reset is H(0 - thr): a threshold learned below zero resets at t=0."""
    torch.manual_seed(2)
    ref, fused = make_pair("subtract", surrogate.atan(), 0.9, -0.3, learn=True)
    cur = torch.randn(5, 3, 4)
    w_spk, w_mem = torch.randn(5, 3, 4), torch.randn(5, 3, 4)
    s_ref, m_ref, g_ref, p_ref = grads(ref, cur, stepped, w_spk, w_mem)
    d = derivative_of(surrogate.atan())
    s_fus, m_fus, g_fus, p_fus = grads(fused, cur, lambda n, c: leaky_sequence(n, c, d),
                                       w_spk, w_mem)
    assert torch.equal(s_fus, s_ref)
    torch.testing.assert_close(m_fus, m_ref)
    torch.testing.assert_close(g_fus, g_ref)
    for a, b in zip(p_fus, p_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("size", ["small", "several_chunks"])
def test_constant_current_matches_stepping_its_expansion(reset, size, cpu_path):
    """Direct coding: cur [B, N] given once with steps=T is the expanded [T, B, N] input, and
    its gradient is the sum over time (here also across the backward's time chunks)."""
    torch.manual_seed(3)
    steps, batch, n = (9, 4, 6) if size == "small" else (5, 4, 40000)  # 160k/step: 3 chunks
    ref, fused = make_pair(reset, surrogate.atan(), 0.85, 0.9, learn=True)
    base = torch.randn(batch, n) * 0.6 + 0.4
    w_spk, w_mem = torch.randn(steps, batch, n), torch.randn(steps, batch, n)
    s_ref, m_ref, g_ref, p_ref = grads(
        ref, base, lambda nrn, c: stepped(nrn, c.unsqueeze(0).expand(steps, *c.shape)),
        w_spk, w_mem)
    d = derivative_of(surrogate.atan())
    s_fus, m_fus, g_fus, p_fus = grads(
        fused, base, lambda nrn, c: leaky_sequence(nrn, c, d, steps), w_spk, w_mem)
    assert s_ref.sum() > 0 and (s_ref == 0).any()
    assert g_fus.shape == base.shape
    assert torch.equal(s_fus, s_ref)
    torch.testing.assert_close(m_fus, m_ref)
    torch.testing.assert_close(g_fus, g_ref, rtol=1e-4, atol=1e-4)
    for a, b in zip(p_fus, p_ref):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-2)  # sums over 800k elements


def test_compiled_path_is_taken_where_it_applies(monkeypatch):
    """The tests above cover the compiled loops only if LeakyFunction really calls them."""
    calls = []
    for name in ("_forward", "_backward"):
        kernel = getattr(lif_cpu, name)
        monkeypatch.setattr(lif_cpu, name,
                            lambda *a, _k=kernel, _n=name: calls.append(_n) or _k(*a))
    d = derivative_of(surrogate.atan())
    cur = torch.randn(4, 3, 5, requires_grad=True)
    spk, mem = leaky_sequence(snn.Leaky(beta=0.9), cur, d)
    (spk.sum() + mem.sum()).backward()
    assert calls == ["_forward", "_backward"]
    calls.clear()
    spk, mem = leaky_sequence(snn.Leaky(beta=0.9), cur.double(), d)  # float64: eager
    (spk.sum() + mem.sum()).backward()
    assert calls == []


@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("constant", [False, True])
@pytest.mark.parametrize("surr", ["atan", "fast_sigmoid"])
# lif_cpu takes 4 steps per pass over the weight: a last pass that is partial, full, the only one;
# with and without the (separately computed) beta and threshold gradients
@pytest.mark.parametrize(("steps", "learn"), [(7, True), (8, False), (1, False)])
@pytest.mark.parametrize("dropout", [0.0, 0.5])
def test_leaky_linear_matches_neuron_then_linear(reset, constant, surr, steps, learn, dropout):
    """LeakyLinearFunction (the Linear's output formed row by row, dL/dspk never stored, the
    Linear's weight gradient from replayed spikes, dropout's mask applied in cache) against the
    eager neuron, the same mask on every step, then nn.Linear."""
    torch.manual_seed(4)
    batch, hidden, out = 6, 300, 4  # 6 rows over the tasks
    base = torch.randn(batch, hidden) * 0.6 + 0.4 if constant else \
        torch.randn(steps, batch, hidden) * 0.6 + 0.4
    w_out = torch.randn(steps, batch, out)
    scale = F.dropout(torch.ones(batch, hidden), dropout) if dropout else None
    d = derivative_of(SURROGATES[surr])
    results = []
    for fused in (True, False):
        torch.manual_seed(5)
        neuron = snn.Leaky(beta=0.85, threshold=0.9, spike_grad=SURROGATES[surr],
                           reset_mechanism=reset, learn_beta=learn, learn_threshold=learn)
        linear = torch.nn.Linear(hidden, out)
        cur = base.clone().requires_grad_()
        k = steps if constant else None
        if fused:
            y, spk = leaky_linear(neuron, cur, linear.weight, linear.bias, d, k, scale=scale)
        else:
            lif.CPU_KERNELS = False
            try:
                spk, _ = leaky_sequence(neuron, cur, d, k)
            finally:
                lif.CPU_KERNELS = True
            y = linear(spk if scale is None else spk * scale)
        (y * w_out).sum().backward()
        results.append((y.detach(), spk, cur.grad, neuron.beta.grad, neuron.threshold.grad,
                        linear.weight.grad, linear.bias.grad))
    (y_a, s_a, *g_a), (y_b, s_b, *g_b) = results
    assert s_b.sum() > 0 and (s_b == 0).any()
    assert torch.equal(s_a, s_b)
    torch.testing.assert_close(y_a, y_b)
    assert [g is None for g in g_a] == [g is None for g in g_b] == [False, not learn, not learn,
                                                                    False, False]
    for a, b in zip(g_a, g_b):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


def test_leaky_linear_spikes_only_when_kept():
    torch.manual_seed(7)
    d = derivative_of(surrogate.atan())
    cur, linear = torch.randn(5, 3, 8) + 0.5, torch.nn.Linear(8, 2)
    y, spk = leaky_linear(snn.Leaky(beta=0.9), cur, linear.weight, linear.bias, d)
    y_none, none = leaky_linear(snn.Leaky(beta=0.9), cur, linear.weight, linear.bias, d,
                                keep_spikes=False)
    assert none is None and spk.sum() > 0
    torch.testing.assert_close(y_none, y)
    torch.testing.assert_close(y, linear(leaky_sequence(snn.Leaky(beta=0.9), cur, d)[0]))


def test_leaky_linear_only_where_it_applies():
    d = derivative_of(surrogate.atan())
    cur = torch.randn(5, 3, 8)
    linear = torch.nn.Linear(8, 2)
    assert leaky_linear(snn.Leaky(beta=0.9), cur, linear.weight, linear.bias, d) is not None
    # autograd surrogate
    assert leaky_linear(snn.Leaky(beta=0.9), cur, linear.weight, linear.bias, None) is None
    with torch.no_grad():  # nothing to fuse in a backward; the Linear's own forward runs
        assert leaky_linear(snn.Leaky(beta=0.9), cur, linear.weight, linear.bias, d) is None
    assert leaky_linear(snn.Leaky(beta=0.9), cur, linear.weight, linear.bias, derivative_of(surrogate.sigmoid()))\
        is None  # no compiled derivative
    assert leaky_linear(snn.Leaky(beta=0.9), cur.double(), linear.double().weight, linear.bias, d) is None
    assert leaky_linear(snn.Synaptic(alpha=0.8, beta=0.9), cur, linear.weight, linear.bias, d) is None
    assert leaky_linear(snn.Leaky(beta=0.9), cur, linear.weight, None, d) is None
    assert leaky_linear(snn.Leaky(beta=torch.full((8,), 0.9)), cur, linear.weight, linear.bias, d) is None


def test_non_contiguous_current(cpu_path):
    """A current that is a strided view (e.g. a transposed matmul result) gets its gradient."""
    torch.manual_seed(6)
    d = derivative_of(surrogate.atan())
    base = torch.randn(4, 5, 3) * 0.8 + 0.5
    grads_ = []
    for view in (False, True):
        cur = (base.transpose(0, 1).contiguous().transpose(0, 1) if view else base.clone())
        cur.requires_grad_()
        spk, mem = leaky_sequence(snn.Leaky(beta=0.9), cur, d)
        (spk.sum() + (mem * base).sum()).backward()
        grads_.append(cur.grad)
    assert not base.transpose(0, 1).contiguous().transpose(0, 1).is_contiguous()
    assert grads_[0].abs().sum() > 0
    torch.testing.assert_close(grads_[0], grads_[1])


@pytest.mark.slow
def test_without_numba_training_falls_back_with_one_notice(data_root, tmp_path):
    """Where Numba cannot be imported, a run takes the eager path, says so once, and ends with
    the metrics of the compiled path (the same arithmetic)."""
    import json
    import subprocess
    import sys

    from conftest import small_overrides

    (tmp_path / "fake" / "numba").mkdir(parents=True)
    (tmp_path / "fake" / "numba" / "__init__.py").write_text(
        "raise ImportError('no Numba for this platform')\n")
    root = Path(__file__).resolve().parents[1]
    results = {}
    for kind, path in (("compiled", ""), ("eager", str(tmp_path / "fake"))):
        env = {**os.environ, "PYTHONPATH": path}
        out = tmp_path / kind
        r = subprocess.run([sys.executable, "-m", "snn_sweep", *small_overrides(data_root),
                            "trainer.epochs=2", f"hydra.run.dir={out}"], cwd=root, env=env,
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stderr[-2000:]
        notices = [ln for ln in (r.stdout + r.stderr).splitlines() if "kernels unavailable" in ln]
        assert len(notices) == (kind == "eager")
        results[kind] = json.loads((out / "result.json").read_text())
    assert "ImportError: no Numba for this platform" in notices[0]
    for key in ("val_acc", "test_acc", "spikes_per_sample"):
        assert results["eager"][key] == pytest.approx(results["compiled"][key], rel=1e-3), key
    for key in ("val_loss", "test_loss"):
        assert results["eager"][key] == pytest.approx(results["compiled"][key], rel=1e-4), key
