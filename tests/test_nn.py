"""snn_sweep.nn as a user's API: a network written with its layers computes what snnTorch's
step-by-step loop computes (outputs and gradients), is fused where it can be, and its spikes,
synops and energy, counted by hooks, equal those of the same network written in plain snnTorch."""
import pytest
import snntorch as snn
import torch
from conftest import against_plain
from torch import nn

from snn_sweep import nn as fast
from snn_sweep.nn import lif
from snn_sweep.config import Readout
from snn_sweep.energy import Recorder, dense_macs


def mlp(beta=0.9):
    torch.manual_seed(0)
    return fast.Sequential(fast.Linear(nn.Linear(784, 32)), fast.Neurons(snn.Leaky(beta=beta)),
                           fast.Linear(nn.Linear(32, 10)), fast.Neurons(snn.Leaky(beta=beta)))


def conv_net():
    torch.manual_seed(0)
    return fast.Sequential(fast.ConvPool(nn.Conv2d(1, 4, 5)), fast.Neurons(snn.Leaky(beta=0.9)),
                           fast.ConvPool(nn.Conv2d(4, 8, 5)), fast.Neurons(snn.Leaky(beta=0.9)),
                           fast.Linear(nn.Linear(8 * 4 * 4, 10)),
                           fast.Neurons(snn.Leaky(beta=0.9)))


def conv_bn_net():
    """conv-BN-LIF blocks with padded 3x3 convs and learnable decay (model=csnn_bn's layout)."""
    torch.manual_seed(0)
    return fast.Sequential(
        fast.ConvPool(nn.Conv2d(1, 4, 3, padding=1, bias=False), norm=nn.BatchNorm2d(4)),
        fast.Neurons(snn.Leaky(beta=0.5, learn_beta=True)),
        fast.ConvPool(nn.Conv2d(4, 8, 3, padding=1, bias=False), norm=nn.BatchNorm2d(8)),
        fast.Neurons(snn.Leaky(beta=0.5, learn_beta=True)),
        fast.Linear(nn.Linear(8 * 7 * 7, 10)), fast.Neurons(snn.Leaky(beta=0.5, learn_beta=True)))


def spikes(steps=5, batch=6, seed=1):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(steps, batch, 1, 28, 28, generator=g) < 0.2).float()


@pytest.mark.parametrize("make", [mlp, conv_net, conv_bn_net])
@pytest.mark.parametrize("direct", [False, True])
def test_users_network_matches_snntorch_step_by_step(make, direct):
    net, y = make(), torch.arange(6) % 10
    x = torch.rand(6, 1, 28, 28).expand(5, 6, 1, 28, 28) if direct else spikes()
    (spk, loss, grads), (spk_ref, loss_ref, grads_ref) = against_plain(
        net, Readout.membrane_ce, x, y)
    torch.testing.assert_close(spk, spk_ref)
    torch.testing.assert_close(loss, loss_ref, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_sequential_wires_the_layers():
    net = mlp()
    kinds = [type(m).__name__ for m in net.layers]
    assert kinds == ["Linear", "LeakyLinear", "Neurons"]  # hidden neurons fused with the Linear
    assert net.layers[0].first and net.layers[-1].readout
    assert net.layers[1].neurons.derivative.name == "atan"  # read off snn.Leaky's default
    convs = conv_net()
    assert convs.layers[0].first and not convs.layers[2].first
    assert [type(m).__name__ for m in convs.layers] == ["ConvPool", "Neurons", "ConvPool",
                                                       "LeakyLinear", "Neurons"]
    assert convs.layers[3].synapses.channels_last  # the Linear after the convs reads NHWC
    with pytest.raises(ValueError, match="last layer of a Sequential must be Neurons"):
        fast.Sequential(fast.Linear(nn.Linear(4, 2)))


@pytest.mark.parametrize("direct", [False, True])
def test_dropout_is_fused_and_keeps_one_mask_for_all_steps(direct, monkeypatch):
    """Neurons -> Dropout -> Linear runs as one LeakyLinear; training through it gives the
    outputs and gradients of the layers run in turn with the same mask (the compiled path
    against the eager one, same seed), and that mask is the same at every step."""
    def run(compiled):
        monkeypatch.setattr(lif, "CPU_KERNELS", compiled)
        torch.manual_seed(0)
        net = fast.Sequential(fast.Linear(nn.Linear(784, 64)), fast.Neurons(snn.Leaky(beta=0.9)),
                              fast.Dropout(0.5), fast.Linear(nn.Linear(64, 10)),
                              fast.Neurons(snn.Leaky(beta=0.9)))
        x = torch.rand(6, 1, 28, 28).expand(5, 6, 1, 28, 28) if direct else spikes()
        torch.manual_seed(3)
        spk, mem = net.train()(x)
        mem.square().sum().backward()
        return net, mem, [p.grad for p in net.parameters()]
    net, mem, grads = run(True)
    assert [type(m).__name__ for m in net.layers] == ["Linear", "LeakyLinear", "Neurons"]
    _, mem_ref, grads_ref = run(False)
    torch.testing.assert_close(mem, mem_ref)
    for a, b in zip(grads, grads_ref):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
    drop = fast.Dropout(0.5)
    out = drop(torch.ones(4, 3, 100))
    assert torch.equal(out, out[:1].expand_as(out)) and set(out.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(drop.eval()(out), out)


class PlainNet(nn.Module):
    """mlp() as snnTorch's tutorial 5 writes it."""

    def __init__(self):
        super().__init__()
        self.fc1, self.lif1 = nn.Linear(784, 32), snn.Leaky(beta=0.9)
        self.fc2, self.lif2 = nn.Linear(32, 10), snn.Leaky(beta=0.9)

    def forward(self, x):
        mem1, mem2 = self.lif1.init_leaky(), self.lif2.init_leaky()
        spk_rec, mem_rec = [], []
        for step in range(x.shape[0]):
            spk1, mem1 = self.lif1(self.fc1(x[step].flatten(1)), mem1)
            spk2, mem2 = self.lif2(self.fc2(spk1), mem2)
            spk_rec.append(spk2)
            mem_rec.append(mem2)
        return torch.stack(spk_rec), torch.stack(mem_rec)


@pytest.mark.parametrize("analog", [False, True])
def test_energy_hooks_count_a_plain_snntorch_network_as_ours(analog):
    fast_net, plain = mlp(), PlainNet()
    plain.fc1.load_state_dict(fast_net.layers[0].layer.state_dict())
    plain.fc2.load_state_dict(fast_net.layers[1].synapses.layer.state_dict())
    x = torch.rand(1, 6, 1, 28, 28).expand(5, 6, 1, 28, 28) if analog else spikes()
    stats = []
    for net in (fast_net, plain):
        macs = dense_macs(net, x[:1, :1])
        assert macs == [784 * 32, 32 * 10]
        with torch.no_grad(), Recorder(net) as rec:
            net.eval()(x)
        stats.append(rec.stats(n_samples=6, steps=5))
    assert stats[0].keys() == stats[1].keys()
    for key in stats[0]:
        assert stats[0][key] == pytest.approx(stats[1][key]), key
    assert stats[0]["spikes_per_sample"] > 0
    if analog:  # the first layer multiplies analog (non-zero) input at every step: MACs
        assert stats[0]["effective_macs_per_sample"] == 5 * 784 * 32


def test_bf16_runs_the_convs_in_bf16_and_the_neurons_in_float32():
    """Under autocast (trainer.precision=bf16, runner.Runner) each conv computes in bfloat16,
    every neuron integrates a float32 current, the readout is float32, and the network computes
    what it does in float32 up to bfloat16's rounding: the first layer's current within 1%,
    its spikes nearly all the same (a current at the threshold may round across it), the
    readout's membrane correlated (later layers compound those flips)."""
    net, x = conv_bn_net(), spikes()
    dtypes = {"conv": set(), "neuron": set()}
    outs = {"current": [], "spikes": []}
    for m in net.modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(lambda _m, _i, out: dtypes["conv"].add(out.dtype))
        if isinstance(m, fast.Neurons):
            m.register_forward_pre_hook(lambda _m, inp: dtypes["neuron"].add(inp[0].dtype))
    net.layers[0].register_forward_hook(lambda _m, _i, out: outs["current"].append(out))
    net.layers[1].register_forward_hook(lambda _m, _i, out: outs["spikes"].append(out))
    with torch.autocast("cpu", torch.bfloat16):
        spk, mem = net(x)
    assert dtypes == {"conv": {torch.bfloat16}, "neuron": {torch.float32}}
    assert spk.dtype == mem.dtype == torch.float32
    _, mem_ref = net(x)
    (cur, cur_ref), (s, s_ref) = outs["current"], outs["spikes"]
    assert (cur - cur_ref).abs().mean() < 0.01 * cur_ref.abs().mean()
    assert (s == s_ref).float().mean() > 0.99
    assert torch.corrcoef(torch.stack([mem.flatten(), mem_ref.flatten()]))[0, 1] > 0.95


@pytest.mark.parametrize("dropout", [False, True])
@pytest.mark.parametrize("width", [10, fast.FUSED_MAX_OUT + 1])
def test_bf16_leaky_linear_trains_and_evaluates_alike(dropout, width):
    """Under autocast a LeakyLinear's Linear computes in float32 where training fuses it (up
    to FUSED_MAX_OUT outputs) and in bfloat16 where it does not (wider), in training and in
    evaluation alike: both give the same output for the same input, and gradients flow (the
    sparse input layer's backward under autocast included)."""
    torch.manual_seed(0)
    net = fast.Sequential(fast.Linear(nn.Linear(784, 64)), fast.Neurons(snn.Leaky(beta=0.9)),
                          *([fast.Dropout(0.0)] if dropout else []),
                          fast.Linear(nn.Linear(64, width)), fast.Neurons(snn.Leaky(beta=0.9)))
    assert [type(m).__name__ for m in net.layers] == ["Linear", "LeakyLinear", "Neurons"]
    seen = []
    net.layers[1].synapses.layer.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
    x = spikes(batch=8)
    with torch.autocast("cpu", torch.bfloat16):
        _, mem_train = net(x)  # parameters need grad: the fused kernel, if it applies
        with torch.no_grad():
            _, mem_eval = net(x)
        mem_train.sum().backward()
    wide = width > fast.FUSED_MAX_OUT
    assert seen == ([torch.bfloat16] * 2 if wide else [torch.float32])  # fused: no hook
    torch.testing.assert_close(mem_train.detach(), mem_eval, rtol=1e-5, atol=1e-5)
    assert all(p.grad is not None and p.grad.dtype == torch.float32 for p in net.parameters())
