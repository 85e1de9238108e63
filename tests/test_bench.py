"""The benchmark runs end to end (on tiny data: its timings mean nothing here; the targets are
checked by running it on full MNIST, never by a timed test), and its peers build the same
networks with snnTorch's decay."""
import csv
import sys
from types import SimpleNamespace

import pytest
import torch
from conftest import make_dataset

from snn_sweep import bench

INSTALLED, _ = bench.find_peers()


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    # > default val_size 5000: the bench composes the default data config
    return make_dataset(tmp_path_factory.mktemp("bench_data"), n_train=5400, n_test=300)


@pytest.fixture
def fast(monkeypatch):
    """A cheap conv case and one matmul per peak measurement, so a run takes seconds."""
    monkeypatch.setitem(bench.CASES, "csnn_direct2",
                        bench.Case("csnn_direct2", "csnn", "direct", 2))
    monkeypatch.setattr(bench, "PEAK_REPEATS", 1)


def run(root, out, cases):
    assert bench.main(["--data-root", str(root), "--cases", cases, "--batches", "1",
                       "--rounds", "1", "--eval-samples", "128", "--no-memory",
                       "--out", str(out)]) == 0
    return list(csv.DictReader(open(out)))


def test_bench_writes_every_side_ratios_and_verdicts(tiny_root, tmp_path, fast, capsys):
    out = tmp_path / "b" / "bench.csv"
    rows = run(tiny_root, out, "rate1,csnn_direct2")
    assert [r["case"] for r in rows] == ["rate1", "csnn_direct2"]
    assert rows[1]["model"] == "csnn" and rows[1]["timesteps"] == "2"
    for r in rows:
        for kind in ("train", "eval"):
            for side in ("ours", "ref", "tensor", *INSTALLED):
                assert float(r[f"{kind}_{side}"]) > 0
            for side, suffix in bench.RATIO_SUFFIX.items():
                if side == "peer" and not INSTALLED:
                    continue
                other = max(float(r[f"{kind}_{p}"]) for p in INSTALLED) if side == "peer" \
                    else float(r[f"{kind}_{side}"])
                ratio = float(r[f"{kind}_ratio{suffix}"])
                # one round: the median ratio is the ratio of the two rates
                assert abs(ratio - float(r[f"{kind}_ours"]) / other) < 0.01 * ratio + 0.01
        assert float(r["train_gflops_ours"]) > 0 and float(r["peak_frac"]) > 0
    md = (tmp_path / "b" / "bench.md").read_text()
    assert "| rate1 |" in md and "| csnn_direct2 |" in md and "fp32 matmul peak:" in md
    assert "- target csnn_direct2 eval_ratio >= 3.0:" in md
    if INSTALLED:
        assert "- target csnn_direct2 train_ratio_peer >= 3.0:" in md
        assert "- target rate1 eval_ratio_peer >= 3.0:" in md
    assert "target direct25" not in md  # verdicts only for the cases that ran
    printed = capsys.readouterr().out
    assert "train_ratio_tensor" in printed and ("met" in printed or "MISSED" in printed)


def test_bench_without_a_peer_leaves_its_columns_blank(tiny_root, tmp_path, fast, capsys,
                                                        monkeypatch):
    monkeypatch.setitem(sys.modules, "norse.torch", None)  # importing it now fails
    rows = run(tiny_root, tmp_path / "bench.csv", "rate1")
    for kind in ("train", "eval"):
        assert rows[0][f"{kind}_norse"] == "" and rows[0][f"{kind}_ratio_norse"] == ""
        assert float(rows[0][f"{kind}_ours"]) > 0 and float(rows[0][f"{kind}_tensor"]) > 0
    assert "norse not available" in capsys.readouterr().out


def test_bench_without_any_peer(tiny_root, tmp_path, fast, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "norse.torch", None)
    monkeypatch.setitem(sys.modules, "spikingjelly.activation_based.neuron", None)
    rows = run(tiny_root, tmp_path / "bench.csv", "rate1")
    assert all(rows[0][f"train_{p}"] == "" for p in bench.PEER_NAMES)
    assert rows[0]["train_ratio_peer"] == "" and float(rows[0]["train_ratio_tensor"]) > 0
    printed = capsys.readouterr().out
    assert "spikingjelly not available" in printed
    assert "targets against the peers: not checked (no peer measured)" in printed


def fake_data(n=160):
    g = torch.Generator().manual_seed(0)
    x = torch.rand(n, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n,), generator=g)
    return SimpleNamespace(train_x=x, train_y=y, test_x=x, test_y=y, num_classes=10)


def peer(name, case, root):
    return bench.PEERS[name][1](case, bench.compose_cfg(case, str(root)), fake_data(),
                                INSTALLED[name])


@pytest.mark.parametrize("name", bench.PEER_NAMES)
@pytest.mark.parametrize("case", [bench.Case("mlp", "snn", "rate", 3),
                                  bench.Case("conv", "csnn", "direct", 2)], ids=["mlp", "conv"])
def test_peer_nets_train_and_output_the_membrane(name, case, tiny_root):
    if name not in INSTALLED:
        pytest.skip(f"{name} not installed")
    p = peer(name, case, tiny_root)
    mem = p.run(p.data.train_x[:5])
    assert mem.shape == (case.steps, 5, 10)
    p.after_batch()
    weights = [w.detach().clone() for w in p.net.parameters()]
    assert p.train_batch() == bench.BATCH and p.evaluate(20) == 20
    assert any(not torch.equal(a, b) for a, b in zip(weights, p.net.parameters()))
    shapes = [tuple(w.shape) for w in p.net.parameters() if w.dim() > 1]
    tutorial = [tuple(w.shape) for w in bench.TensorTutorial(
        case, bench.compose_cfg(case, str(tiny_root)), p.data).net.parameters() if w.dim() > 1]
    assert shapes == tutorial  # the same architecture as the tutorial network (and ours)


def membrane_under_constant_current(name, lib, node, current, steps):
    if name == "spikingjelly":
        node(torch.full((steps, 1), current))
        v = node.v_seq.flatten().tolist()
        lib.functional.reset_net(node)
        return v
    state, v = None, []
    for _ in range(steps):
        _, state = node(torch.full((1,), current), state)
        v.append(float(state.v.detach()))
    return v


@pytest.mark.parametrize("name", bench.PEER_NAMES)
def test_peer_lif_decays_by_beta(name, tiny_root):
    """A constant sub-threshold current: the membrane follows v = beta * v + gain * current,
    beta from conf/neuron/leaky.yaml (0.95). SpikingJelly takes the input unscaled, as snnTorch;
    Norse's Euler step scales it by dt * tau_mem_inv = 1 - beta."""
    if name not in INSTALLED:
        pytest.skip(f"{name} not installed")
    p = peer(name, bench.Case("mlp", "snn", "direct", 4), tiny_root)
    beta, gain = 0.95, {"spikingjelly": 1.0, "norse": 0.05}[name]
    node = list(p.net.children())[-1]  # the readout LIF
    current = 0.03
    v = membrane_under_constant_current(name, INSTALLED[name], node, current, 8)
    expected, m = [], 0.0
    for _ in range(8):
        m = beta * m + gain * current
        expected.append(m)
    assert v == pytest.approx(expected, rel=1e-5)
    assert max(v) < p.arch.threshold  # sub-threshold throughout: no reset involved


def test_dense_flops_count_every_layer_at_every_step(tiny_root):
    data = fake_data()
    for case, macs in [(bench.Case("mlp", "snn", "rate", 3), 784 * 1000 + 1000 * 10),
                       (bench.Case("conv", "csnn", "direct", 2),
                        12 * 25 * 24 * 24 + 64 * 12 * 25 * 8 * 8 + 64 * 4 * 4 * 10),
                       (bench.Case("ann", "ann", "direct", 0), 784 * 1000 + 1000 * 10)]:
        side = bench.TensorTutorial(case, bench.compose_cfg(case, str(tiny_root)), data)
        assert bench.train_flops_per_sample(side) == 6 * max(1, case.steps) * macs


def test_bench_bad_data_root_is_one_line(tmp_path):
    with pytest.raises(SystemExit) as info:
        bench.main(["--data-root", str(tmp_path / "nowhere"), "--quick", "--no-memory"])
    assert str(info.value).startswith(f"error: --data-root {tmp_path / 'nowhere'}: ")
