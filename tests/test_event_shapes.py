"""The built-in models on event data's shapes (N-MNIST's [2, 34, 34], non-square and DVS Gesture's
[2, 128, 128] frames, SHD's [1, 1, 700] spike trains), snnTorch's recurrent RLeaky through the
`neuron` group, and per-neuron learnable decay: outputs and gradients against the same network
stepped in plain snnTorch (conftest.plain_forward)."""
import json
import os
import re
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import snntorch as snn
import torch
from conftest import against_plain, run_cli, small_overrides
from test_conv import conv_path  # noqa: F401 (fixture: conv_cpu's loops or PyTorch's ops)

from snn_sweep.build import build_model, resolve
from snn_sweep.config import Readout
from snn_sweep.models import conv_net, layer_neuron, mlp
from snn_sweep.nn import Neurons, conv, lif

ROOT = Path(__file__).resolve().parents[1]
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1" and lif.KERNELS == "triton"


def event_frames(steps, batch, shape, density=0.04, seed=0):
    """Sparse event counts as N-MNIST's frames hold them: a few % of pixels non-zero, some
    with two events."""
    g = torch.Generator().manual_seed(seed)
    x = (torch.rand(steps, batch, *shape, generator=g) < density).float()
    return x + x * (torch.rand(x.shape, generator=g) < 0.2).float()


def leaky(**kw):
    return partial(snn.Leaky, beta=0.8, threshold=0.5, learn_beta=True, learn_threshold=True,
                   **kw)


def check_against_plain(model, x, y, tol=1e-4):
    (s_a, l_a, g_a), (s_b, l_b, g_b) = against_plain(model, Readout.membrane_ce, x, y)
    assert s_a.sum() > 0  # the comparison covers spikes, not silence
    torch.testing.assert_close(s_a, s_b)
    torch.testing.assert_close(l_a, l_b)
    assert len(g_a) == len(g_b) > 0
    for a, b in zip(g_a, g_b):
        assert a.abs().sum() > 0  # every parameter gets a gradient
        torch.testing.assert_close(a, b, rtol=tol, atol=tol)


def scaled(model, factor):
    """Weights large enough that sparse events make every layer spike."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "weight" in name:
                p.mul_(factor)
    return model


CONV_SHAPES = pytest.mark.parametrize("in_shape,padding", [
    ((2, 34, 34), 0),  # N-MNIST: sparse input through the majority split
    ((2, 32, 48), 0),  # non-square
    ((2, 128, 128), 2),  # DVS Gesture, padded convs: the dense input path
], ids=["nmnist", "non_square", "dvs_gesture_padded"])


@CONV_SHAPES
@pytest.mark.parametrize("lif_path", ["compiled", "eager"])
def test_conv_net_on_event_frames_matches_plain_snntorch(in_shape, padding, lif_path, conv_path,
                                                        monkeypatch):
    monkeypatch.setattr(lif, "CPU_KERNELS", lif_path == "compiled")
    split = []  # the input conv's runs through the majority split (conv_cpu's sparse loops)
    apply = conv.SparseConvPool.apply
    monkeypatch.setattr(conv.SparseConvPool, "apply", lambda *a: split.append(1) or apply(*a))
    torch.manual_seed(0)
    model = scaled(conv_net(list(in_shape), 10, channels=(4, 8), neuron=leaky(),
                            padding=padding), 3)
    check_against_plain(model, event_frames(4, 3, in_shape), torch.tensor([1, 5, 9]))
    assert len(split) == (conv_path == "compiled" and padding == 0)


@CONV_SHAPES
def test_conv_ann_twin_takes_event_frames(in_shape, padding):
    """The ANN twin has the SNN's weights' shapes and runs on the frames summed over time."""
    torch.manual_seed(0)
    ann = conv_net(list(in_shape), 10, channels=(4, 8), padding=padding)
    snn_net = conv_net(list(in_shape), 10, channels=(4, 8), neuron=leaky(), padding=padding)
    shapes = [p.shape for n, p in ann.named_parameters()]
    assert shapes == [p.shape for n, p in snn_net.named_parameters()
                      if n.rsplit(".", 1)[-1] not in ("beta", "threshold")]
    x = event_frames(4, 3, in_shape).sum(0).requires_grad_()
    ann(x).sum().backward()
    assert ann(x).shape == (3, 10) and x.grad.abs().sum() > 0


def test_mlp_on_shd_spike_trains_matches_plain_snntorch():
    """SHD's 700 channels as [1, 1, 700], flattened by the MLP."""
    torch.manual_seed(0)
    model = scaled(mlp([1, 1, 700], 20, hidden=[32], neuron=leaky()), 2)
    check_against_plain(model, event_frames(6, 4, (1, 1, 700), 0.05), torch.tensor([0, 3, 7, 19]))


# ---------------------------------------------------------------- snnTorch's RLeaky
def test_rleaky_gets_each_layers_width_and_equals_stepping_it(make_cfg, caplog, monkeypatch):
    from snn_sweep.nn import layers
    monkeypatch.setattr(layers, "_stepped", set())  # logged once per process: maybe already
    cfg = make_cfg("model=snn", "neuron=rleaky", "model.hidden=[24,16]")
    torch.manual_seed(0)
    with caplog.at_level("INFO"):
        model = build_model(cfg)
    neurons = [m.neuron for m in model.modules() if isinstance(m, Neurons)]
    assert [type(n) for n in neurons] == [snn.RLeaky] * 3
    assert [n.recurrent.weight.shape for n in neurons] == [(24, 24), (16, 16), (10, 10)]
    assert "RLeaky neurons run the stepped path" in caplog.text
    assert resolve(cfg).neuron.name == "rleaky"
    with torch.no_grad():
        for n in neurons:  # feedback strong enough to matter
            n.recurrent.weight.mul_(4)
    check_against_plain(scaled(model, 3), event_frames(5, 4, (1, 28, 28), 0.2),
                        torch.tensor([0, 1, 2, 3]))


def test_rleaky_one_to_one_in_the_conv_net(make_cfg):
    cfg = make_cfg("model=csnn", "neuron=rleaky", "+neuron.all_to_all=false", "+neuron.V=0.5",
                   "model.in_shape=[2,34,34]")
    torch.manual_seed(0)
    model = scaled(build_model(cfg), 3)
    assert all(type(m.neuron) is snn.RLeaky for m in model.modules() if isinstance(m, Neurons))
    check_against_plain(model, event_frames(4, 3, (2, 34, 34)), torch.tensor([1, 5, 9]))


def test_rleaky_mlp_trains(make_cfg):
    """A few Adam steps on one batch of SHD-shaped spike trains: the loss goes down."""
    cfg = make_cfg("model=snn", "neuron=rleaky", "model.hidden=[32]", "model.in_shape=[1,1,700]",
                   "data.num_classes=20")
    torch.manual_seed(0)
    model = build_model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=5e-3)
    x, y = event_frames(8, 16, (1, 1, 700), 0.1), torch.arange(16) % 20
    losses = []
    for _ in range(8):
        spk, mem = model(x)
        loss = torch.nn.functional.cross_entropy(mem.mean(0), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.8 * losses[0], losses


@pytest.mark.slow
def test_rleaky_option_trains_through_the_pipeline(data_root, tmp_path):
    """neuron=rleaky (conf/neuron/rleaky.yaml) with layers of different widths, end to end."""
    r = run_cli("model=snn", "neuron=rleaky", "encoder=rate", *small_overrides(data_root),
                "model.hidden=[24]", "trainer.epochs=1", f"hydra.run.dir={tmp_path}")
    assert r.returncode == 0, r.stderr[-3000:]
    res = json.loads((tmp_path / "result.json").read_text())
    assert res["status"] == "completed" and res["neuron"] == "rleaky"
    assert res["n_params"] == (784 * 24 + 24) + (24 * 10 + 10) + (24 * 24 + 24) + (10 * 10 + 10)


def test_neuron_needing_a_width_fails_in_one_line_without_one():
    with pytest.raises(TypeError, match="linear_features"):
        layer_neuron(partial(snn.RLeaky, beta=0.9))  # a conv layer has no width
    assert layer_neuron(partial(snn.RLeaky, beta=0.9), 7).recurrent.weight.shape == (7, 7)
    assert type(layer_neuron(partial(snn.Leaky, beta=0.9), 7)) is snn.Leaky  # no width taken


# ---------------------------------------------------------------- per-neuron decay
forward_of_leaky = snn.Leaky.forward


def test_beta_per_neuron_learns_one_decay_per_neuron(make_cfg, monkeypatch):
    cfg = make_cfg("model=snn", "model.hidden=[24]", "model.beta_per_neuron=true",
                   "neuron.learn_beta=true", "neuron.beta=0.9")
    torch.manual_seed(0)
    model = build_model(cfg)
    betas = [m.neuron.beta for m in model.modules() if isinstance(m, Neurons)]
    assert [b.shape for b in betas] == [(24,), (10,)]
    assert all(isinstance(b, torch.nn.Parameter) and torch.all(b == 0.9) for b in betas)
    # the fused recurrence on lif_cpu's compiled loops, not snnTorch's steps
    compiled, stepped = [], []
    forward = lif.lif_cpu.forward
    monkeypatch.setattr(lif.lif_cpu, "forward", lambda *a: compiled.append(a[2]) or forward(*a))
    monkeypatch.setattr(snn.Leaky, "forward", lambda *a: stepped.append(1))
    with torch.no_grad():  # distinct decays, some cut by the clamp to [0, 1]
        betas[0].copy_(torch.linspace(-0.1, 1.1, 24))
    x, y = event_frames(6, 4, (1, 28, 28), 0.2), torch.tensor([0, 1, 2, 3])
    model(x)
    assert not stepped and [b.shape for b in compiled] == [(4 * 24,), (4 * 10,)]
    monkeypatch.setattr(snn.Leaky, "forward", forward_of_leaky)  # plain snnTorch for the check
    check_against_plain(scaled(model, 2), x, y)


def test_beta_per_neuron_off_keeps_a_scalar_beta(make_cfg):
    model = build_model(make_cfg("model=snn", "model.hidden=[24]"))
    betas = [m.neuron.beta for m in model.modules() if isinstance(m, Neurons)]
    assert all(b.dim() == 0 for b in betas)
    with pytest.raises(ValueError, match="beta_per_neuron"):
        layer_neuron(partial(snn.Leaky, beta=0.9), None, beta_per_neuron=True)


# ---------------------------------------------------------------- the Triton kernels
@pytest.mark.skipif(not INTERPRETED, reason="runs in test_triton_path_under_the_interpreter")
@pytest.mark.parametrize("in_shape", [(2, 34, 34), (2, 32, 48)])
def test_conv_net_on_event_frames_on_triton(in_shape, monkeypatch):
    launched = []
    module = lif.triton_kernels()
    fwd = module.forward
    monkeypatch.setattr(module, "forward", lambda *a, **k: launched.append(1) or fwd(*a, **k))
    torch.manual_seed(0)
    model = scaled(conv_net(list(in_shape), 10, channels=(4, 8), neuron=leaky()), 3)
    check_against_plain(model, event_frames(3, 2, in_shape), torch.tensor([1, 5]))
    assert len(launched) == 3  # each LIF layer on the Triton path (our forward only)


@pytest.mark.skipif(INTERPRETED, reason="runs outside the interpreter")
def test_triton_path_under_the_interpreter():
    """The Triton test above, in a subprocess under TRITON_INTERPRET=1 (test_lif_triton's way)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(TRITON_INTERPRET="1", SNN_SWEEP_KERNELS="triton")
    r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-n", "0", "-p", "no:cacheprovider",
                        "tests/test_event_shapes.py", "-k", "on_triton"], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-6000:] + r.stderr[-2000:]
    assert re.search(r"\b2 passed", r.stdout), r.stdout[-2000:]
