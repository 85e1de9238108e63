"""The Triton LIF kernels against stepping snn.Leaky, on CPU tensors under TRITON_INTERPRET=1,
and the dispatch that sends a CUDA run to them.

Triton reads TRITON_INTERPRET when a kernel is defined, so the kernel tests run in a pytest
subprocess on this file with TRITON_INTERPRET=1 and SNN_SWEEP_KERNELS=triton (Triton's kernels
on CPU tensors too); in the parent they are skipped, and test_kernels_under_the_interpreter
fails unless they all pass there. The dispatch tests run in the parent (no kernel runs); the
`cuda` ones only where a GPU is (-m cuda).
"""
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import snntorch as snn
import torch
from conftest import against_plain
from test_lif import SURROGATES, grads, make_pair, stepped

from snn_sweep.build import build_model
from snn_sweep.models import readout_loss
from snn_sweep.nn import Neurons, kernels, lif
from snn_sweep.nn.derivatives import derivative_of
from snn_sweep.nn.lif import leaky_sequence

ROOT = Path(__file__).resolve().parents[1]
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1" and lif.KERNELS == "triton"
INNER = "runs in test_kernels_under_the_interpreter's subprocess (TRITON_INTERPRET=1)"
interpreted = pytest.mark.skipif(not INTERPRETED, reason=INNER)
outside = pytest.mark.skipif(INTERPRETED, reason="runs outside the interpreter")


@pytest.fixture
def launches(monkeypatch):
    """Counts the Triton kernels' forward and backward calls: a test of them must see them run."""
    module = lif.triton_kernels()
    calls = []
    for name in ("forward", "backward"):
        fn = getattr(module, name)
        monkeypatch.setattr(module, name,
                            lambda *a, _f=fn, _n=name, **k: calls.append(_n) or _f(*a, **k))
    return calls


def close(a, b, tol=1e-4):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def check(launches, reset, surr, cur, beta=0.85, thr=0.9, learn=True, steps=None,
          keep_mem=True):
    """Spikes, membrane and gradients (input, beta, threshold) of leaky_sequence on the Triton
    path against stepping snn.Leaky; a constant cur [B, N] is stepped as its expansion."""
    ref, fused = make_pair(reset, SURROGATES[surr], beta, thr, learn=learn)
    n_steps = steps or cur.shape[0]
    w_spk, w_mem = torch.randn(2, n_steps, *cur.shape[-2:])
    w_mem *= keep_mem
    d = derivative_of(SURROGATES[surr])

    def run(neuron, c):
        spk, mem = leaky_sequence(neuron, c, d, steps, keep_mem)
        assert (mem is None) != keep_mem
        return spk, (mem if keep_mem else torch.zeros_like(spk))
    s_ref, m_ref, g_ref, p_ref = grads(
        ref, cur, lambda n, c: stepped(n, c.expand(n_steps, *c.shape[-2:])), w_spk, w_mem)
    s_tri, m_tri, g_tri, p_tri = grads(fused, cur, run, w_spk, w_mem)
    assert launches == ["forward", "backward"]
    assert s_ref.sum() > 0 and (s_ref == 0).any()  # the case exercises spikes and resets
    assert torch.equal(s_tri, s_ref) and g_tri.shape == cur.shape
    if keep_mem:
        close(m_tri, m_ref, 1e-5)
    close(g_tri, g_ref)
    assert len(p_tri) == len(p_ref) == (2 if learn else 0)
    for a, b in zip(p_tri, p_ref):
        close(a, b)


@interpreted
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("surr", list(SURROGATES))
@pytest.mark.parametrize("learn", [True, False])
def test_matches_stepped_snntorch(reset, surr, learn, launches):
    torch.manual_seed(0)
    check(launches, reset, surr, torch.randn(6, 4, 5) * 0.8 + 0.4, learn=learn)


@interpreted
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("keep_mem", [True, False])
def test_constant_current(reset, keep_mem, launches):
    """Direct coding: cur [B, N] with steps=T; its gradient is summed over time in the kernel."""
    torch.manual_seed(3)
    check(launches, reset, "atan", torch.randn(4, 5) * 0.6 + 0.4, steps=6, keep_mem=keep_mem)


@interpreted
def test_negative_learned_threshold_resets_at_first_step(launches):
    torch.manual_seed(2)
    check(launches, "subtract", "atan", torch.randn(5, 3, 4), beta=0.9, thr=-0.3)


@interpreted
@pytest.mark.parametrize("constant", [False, True])
def test_several_programs(constant, monkeypatch, launches):
    """Blocks of 16 over 60 neurons: 4 programs, the last one partly masked; the parameter
    gradients are the sum of their partial sums."""
    monkeypatch.setattr(lif.triton_kernels(), "_grid", lambda n: (-(-n // 16), 16, 1))
    torch.manual_seed(6)
    cur = torch.randn(*(() if constant else (5,)), 6, 10) * 0.6 + 0.4
    check(launches, "zero", "sigmoid", cur, beta=0.8, thr=0.7, steps=5 if constant else None)


@interpreted
def test_hidden_layer(launches):
    """keep_mem=False (a hidden layer): no membrane returned; the gradient through the spikes
    alone, here a stride-0 dL/dspk (from a sum); without grad, the same spikes."""
    torch.manual_seed(4)
    d = derivative_of(SURROGATES["fast_sigmoid"])
    cur = torch.randn(5, 3, 4) * 0.8 + 0.5
    out = []
    for fn in (stepped, lambda n, c: leaky_sequence(n, c, d, keep_mem=False)):
        neuron = snn.Leaky(beta=0.9, spike_grad=SURROGATES["fast_sigmoid"])
        c = cur.clone().requires_grad_()
        spk, mem = fn(neuron, c)
        spk.sum().backward()
        out.append((spk.detach(), mem, c.grad))
    (s_ref, _, g_ref), (s_tri, m_tri, g_tri) = out
    assert m_tri is None and torch.equal(s_tri, s_ref) and g_ref.abs().sum() > 0
    close(g_tri, g_ref)
    with torch.no_grad():
        spk, mem = leaky_sequence(neuron, cur, d, keep_mem=False)
    assert mem is None and torch.equal(spk, s_ref)
    assert launches == ["forward", "backward", "forward"]


@interpreted
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
def test_bfloat16_current_drives_a_float32_state(reset, launches):
    """A bfloat16 current (an autocast Linear's output): the state and the parameter gradients in
    float32, as snn.Leaky stepped in float32 on the same values; spikes, membrane and the
    current's gradient come back in bfloat16."""
    torch.manual_seed(5)
    ref, fused = make_pair(reset, SURROGATES["atan"], 0.9, 1.0, learn=True)
    cur = (torch.randn(6, 4, 5) * 0.8 + 0.4).bfloat16()
    # weights exact in bfloat16, so that dL/dspk and dL/dmem are the same on both sides
    w_spk, w_mem = torch.randn(2, 6, 4, 5).bfloat16().float()
    s_ref, m_ref, g_ref, p_ref = grads(ref, cur.float(), stepped, w_spk, w_mem)
    d = derivative_of(SURROGATES["atan"])
    c = cur.clone().requires_grad_()
    spk, mem = leaky_sequence(fused, c, d)
    assert spk.dtype == mem.dtype == torch.bfloat16
    ((spk * w_spk).sum() + (mem * w_mem).sum()).backward()
    assert launches == ["forward", "backward"] and c.grad.dtype == torch.bfloat16
    assert torch.equal(spk.float(), s_ref)
    close(mem.float(), m_ref.bfloat16().float(), 1e-2)
    close(c.grad.float(), g_ref, 1e-2)
    for a, b in zip((fused.beta.grad, fused.threshold.grad), p_ref):
        close(a, b)


@interpreted
@pytest.mark.parametrize("overrides", [("model=snn",), ("recipe=csnn_bn",)])
def test_model_matches_plain_snntorch(make_cfg, overrides, launches):
    """A whole model on the Triton path (its Linear's and conv's weight and bias gradients
    too): rate-coded spikes into the MLP, a direct-coded (constant) input into the conv SNN."""
    cfg = make_cfg(*overrides, "neuron.learn_beta=true", "neuron.learn_threshold=true")
    torch.manual_seed(0)
    model = build_model(cfg)
    if overrides[0] == "model=snn":
        x = (torch.rand(4, 3, 1, 28, 28) < 0.3).float()
    else:
        x = torch.rand(3, 1, 28, 28).unsqueeze(0).expand(4, 3, 1, 28, 28)
    y = torch.randint(0, 10, (3,))
    (s_a, l_a, g_a), (s_b, l_b, g_b) = against_plain(model, cfg.model.readout, x, y)
    layers = sum(isinstance(m, Neurons) for m in model.modules())
    assert launches.count("forward") == launches.count("backward") == layers
    assert torch.equal(s_a, s_b)
    close(l_a, l_b, 1e-5)
    assert len(g_a) == len(g_b)
    for a, b in zip(g_a, g_b):
        close(a, b)


@outside
def test_kernels_under_the_interpreter(request):
    """Runs the tests above in a subprocess under TRITON_INTERPRET=1: all must pass there."""
    inner = [i for i in request.session.items if i.path == Path(__file__)
             and any(m.kwargs.get("reason") == INNER for m in i.iter_markers("skipif"))]
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(TRITON_INTERPRET="1", SNN_SWEEP_KERNELS="triton")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                        str(Path(__file__).relative_to(ROOT))], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    passed = re.search(r"(\d+) passed", r.stdout)
    assert passed and int(passed.group(1)) >= len(inner) > 0, r.stdout[-2000:]


# Every surrogate config (conf/neuron/surrogate/): the path a CUDA run of Leaky takes with it.
SURROGATE_PATHS = {"atan": "triton", "fast_sigmoid": "triton", "sigmoid": "triton",
                   "triangular": "eager", "spike_rate_escape": "eager",
                   "straight_through_estimator": "eager"}


@outside
def test_every_surrogate_config_is_in_the_table():
    configs = {p.stem for p in (ROOT / "snn_sweep/conf/neuron/surrogate").glob("*.yaml")}
    assert configs == set(SURROGATE_PATHS)


@outside
@pytest.mark.parametrize("surr", list(SURROGATE_PATHS))
@pytest.mark.parametrize("reset", ["subtract", "zero", "none"])
@pytest.mark.parametrize("learn", ["learn_beta", "learn_threshold", None])
def test_cuda_dispatch_of_built_in_neurons(make_cfg, surr, reset, learn):
    """A CUDA run of the built-in Leaky takes the Triton kernels wherever they cover its
    config (float32, or a bfloat16 current under autocast); a fast path missed fails here."""
    pytest.importorskip("triton")
    overrides = ["neuron=leaky", f"neuron/surrogate={surr}", f"neuron.reset_mechanism={reset}"]
    model = build_model(make_cfg(*overrides, *([f"neuron.{learn}=true"] if learn else [])))
    layers = [m for m in model.modules() if isinstance(m, Neurons)]
    assert layers
    for m in layers:
        n = m.neuron
        for dtype in (torch.float32, torch.bfloat16):
            assert lif.path("cuda", dtype, n.beta, n.threshold, m.derivative) == \
                SURROGATE_PATHS[surr], (surr, reset, learn, dtype)
        assert lif.path("cuda", torch.float64, n.beta, n.threshold, m.derivative) == "eager"
        assert lif.path("cuda", torch.float16, n.beta, n.threshold, m.derivative) == "eager"


@outside
def test_dispatch_by_device_dtype_and_neuron(monkeypatch):
    beta, thr = torch.tensor(0.9), torch.tensor(1.0)
    atan, sigmoid = (derivative_of(SURROGATES[s]) for s in ("atan", "sigmoid"))
    assert lif.path("cpu", torch.float32, beta, thr, atan) == "cpu"
    assert lif.path("cpu", torch.float32, beta, thr, sigmoid) == "eager"  # lif_cpu: no sigmoid
    assert lif.path("cpu", torch.bfloat16, beta, thr, atan) == "eager"
    assert lif.path("cpu", torch.float64, beta, thr, atan) == "eager"
    assert lif.path("cuda", torch.float32, beta, thr, None) == "eager"  # autograd surrogate
    assert lif.path("cuda", torch.float32, torch.full((4,), 0.9), thr, atan) == "eager"
    assert lif.path("cuda", torch.float32, beta, torch.full((4,), 1.0), atan) == "eager"
    monkeypatch.setattr(lif, "CPU_KERNELS", False)
    assert lif.path("cpu", torch.float32, beta, thr, atan) == "eager"


@outside
def test_without_triton_cuda_falls_back_with_one_warning(monkeypatch, caplog):
    monkeypatch.setattr(lif, "_lif_triton", None)
    monkeypatch.setattr(lif, "TRITON_UNAVAILABLE", None)
    monkeypatch.setitem(sys.modules, "snn_sweep.nn.kernels.lif_triton", None)  # import fails
    monkeypatch.delattr(kernels, "lif_triton", raising=False)
    beta, thr, atan = torch.tensor(0.9), torch.tensor(1.0), derivative_of(SURROGATES["atan"])
    with caplog.at_level(logging.WARNING, logger=lif.__name__):
        for _ in range(2):
            assert lif.path("cuda", torch.float32, beta, thr, atan) == "eager"
    assert len([r for r in caplog.records if "Triton LIF kernels unavailable" in r.message]) == 1
    assert lif.path("cpu", torch.float32, beta, thr, atan) == "cpu"


def triton_against_eager(make_cfg, overrides, device, batch, launches, monkeypatch):
    """A model's loss and gradients on the Triton path, which must run, equal the eager path's."""
    cfg = make_cfg(*overrides, "neuron.learn_beta=true", "neuron.learn_threshold=true")
    torch.manual_seed(0)
    model = build_model(cfg).to(device)
    x = torch.rand(4, batch, 1, 28, 28, device=device)
    x = (x < 0.3).float() if "encoder=rate" in overrides else x[:1].expand_as(x)
    y = torch.randint(0, 10, (batch,), device=device)
    monkeypatch.setattr(lif, "CPU_KERNELS", False)  # the reference is the eager loop
    results = []
    for devices in ((device,), ()):
        monkeypatch.setattr(lif, "TRITON_DEVICES", devices)
        model.zero_grad()
        spk, mem = model(x)
        loss = readout_loss(cfg.model.readout, spk, mem, y)
        loss.backward()
        results.append((spk.detach(), loss.detach(), [p.grad.clone() for p in model.parameters()]))
    layers = sum(isinstance(m, Neurons) for m in model.modules())
    assert launches.count("forward") == launches.count("backward") == layers
    (s_a, l_a, g_a), (s_b, l_b, g_b) = results
    assert torch.equal(s_a, s_b)
    close(l_a, l_b, 1e-5)
    for a, b in zip(g_a, g_b):
        close(a, b, 1e-3)


MODELS = pytest.mark.parametrize("overrides", [("model=snn", "encoder=rate"), ("recipe=csnn_bn",)],
                                 ids=["snn_rate", "csnn_bn"])


@interpreted
@MODELS
def test_model_on_triton_matches_eager(make_cfg, overrides, launches, monkeypatch):
    """test_cuda_model_takes_triton_and_matches_eager's check, here on CPU tensors."""
    triton_against_eager(make_cfg, overrides, "cpu", 3, launches, monkeypatch)


@outside
@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@MODELS
def test_cuda_model_takes_triton_and_matches_eager(make_cfg, overrides, launches, monkeypatch):
    """On a GPU: the default SNN (rate) and csnn_bn (direct) forward and backward."""
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # the same convs both ways
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", False)
    triton_against_eager(make_cfg, overrides, "cuda", 32, launches, monkeypatch)
