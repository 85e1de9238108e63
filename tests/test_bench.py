"""The benchmark runs end to end (on tiny data: its timings mean nothing here; the targets are
checked by running it on full MNIST, never by a timed test), and its peers build the same
networks with snnTorch's decay."""
import csv
import re
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import make_dataset

from bench import cases, cli, measure, peers, report, sides

INSTALLED, _ = peers.find_peers()
ROOT = Path(__file__).resolve().parents[1]
# a verdict line: target <case> <column> >= <minimum>: <value> met|MISSED
VERDICT = re.compile(r"target (\S+) (\S+) (>=|<=) ([0-9.]+): ([0-9.]+) (met|MISSED)")


@pytest.fixture(scope="module")
def tiny_root(tmp_path_factory):
    # > default val_size 5000: the bench composes the default data config
    return make_dataset(tmp_path_factory.mktemp("bench_data"), n_train=5400, n_test=300)


@pytest.fixture
def fast(monkeypatch):
    """A cheap conv case and one matmul per peak measurement, so a run takes seconds."""
    monkeypatch.setitem(cases.CASES, "csnn_direct2",
                        cases.Case("csnn_direct2", "csnn", "direct", 2))
    monkeypatch.setitem(cases.CASES, "rate1_affine",
                        cases.Case("rate1_affine", "snn", "rate", 1, ("augment=affine",),
                                   base="rate1", others=False))
    monkeypatch.setitem(cases.CASES, "rate1_dropout",
                        cases.Case("rate1_dropout", "snn", "rate", 1, ("model.dropout=0.5",),
                                   base="rate1"))
    monkeypatch.setattr(measure, "PEAK_REPEATS", 1)


def run(root, out, cases, device="cpu"):
    assert cli.main(["--data-root", str(root), "--cases", cases, "--batches", "1",
                       "--rounds", "1", "--eval-samples", "128", "--no-memory",
                       "--out", str(out), "--device", device]) == 0
    return list(csv.DictReader(open(out)))


def test_bench_writes_every_side_ratios_and_verdicts(tiny_root, tmp_path, fast, capsys):
    out = tmp_path / "b" / "bench.csv"
    rows = run(tiny_root, out, "rate1,csnn_direct2,rate1_dropout")
    assert [r["case"] for r in rows] == ["rate1", "csnn_direct2", "rate1_dropout"]
    assert rows[1]["model"] == "csnn" and rows[1]["timesteps"] == "2"
    for r in rows:
        has_base = r["case"] == "rate1_dropout"  # ours on its base case, timed beside it
        assert (r["train_base"] != "") == (r["train_ratio_base"] != "") == has_base
        for kind in ("train", "eval"):
            for side in ("ours", "ref", "tensor", *INSTALLED):
                assert float(r[f"{kind}_{side}"]) > 0
            for side, suffix in cases.RATIO_SUFFIX.items():
                if (side == "peer" and not INSTALLED) or (side == "base" and not has_base):
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
    assert all(r["augment_frac"] == "" for r in rows)
    printed = capsys.readouterr().out
    assert "train_ratio_tensor" in printed
    verdicts = check_verdicts(printed, rows)
    assert ("csnn_direct2", "eval_ratio") in verdicts and ("rate1", "eval_ratio") in verdicts
    assert sorted(f"- {v}" for v in verdicts.values()) == \
        sorted(ln for ln in md.splitlines() if VERDICT.match(ln[2:]))


def check_verdicts(printed, rows):
    """Every verdict line printed says met exactly when the ratio it shows, the CSV's, reaches
    the minimum it shows; returns them by (case, column)."""
    by_case = {r["case"]: r for r in rows}
    found = {}
    for line in printed.splitlines():
        m = VERDICT.fullmatch(line)
        if m is None:
            continue
        case, column, op, bound, value, word = m.groups()
        assert float(value) == float(by_case[case][column]), line
        ok = float(value) >= float(bound) if op == ">=" else float(value) <= float(bound)
        assert ok == (word == "met"), line
        found[case, column] = line
    assert found
    return found


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
    assert all(rows[0][f"train_{p}"] == "" for p in cases.PEER_NAMES)
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
    return peers.PEERS[name][1](case, cases.compose_cfg(case, str(root)), fake_data(),
                                INSTALLED[name])


@pytest.mark.parametrize("name", cases.PEER_NAMES)
@pytest.mark.parametrize("case", [
    cases.Case("mlp", "snn", "rate", 3), cases.Case("conv", "csnn", "direct", 2),
    cases.Case("mlp_dropout", "snn", "rate", 3, ("model.dropout=0.5",)),
    cases.Case("conv_bn", "csnn_bn", "direct", 2, ("neuron.learn_beta=true",))],
    ids=["mlp", "conv", "mlp_dropout", "conv_bn"])
def test_peer_nets_train_and_output_the_membrane(name, case, tiny_root):
    if name not in INSTALLED:
        pytest.skip(f"{name} not installed")
    p = peer(name, case, tiny_root)
    mem = p.run(p.data.train_x[:5])
    assert mem.shape == (case.steps, 5, 10)
    p.after_batch()
    weights = [w.detach().clone() for w in p.net.parameters()]
    assert p.train_batch() == cases.BATCH and p.evaluate(20) == 20
    assert any(not torch.equal(a, b) for a, b in zip(weights, p.net.parameters()))
    tutorial = sides.TensorTutorial(case, cases.compose_cfg(case, str(tiny_root)), p.data)
    # the same architecture as the tutorial network, ours and byo's
    assert weight_shapes(p.net) == weight_shapes(tutorial.net)
    ours = sides.Ours(case, str(tiny_root), p.data)
    assert weight_shapes(ours.model) == weight_shapes(tutorial.net) == weight_shapes(
        sides.user_network(case, p.arch))
    kinds = {type(m).__name__ for net in (p.net, tutorial.net, ours.model) for m in net.modules()}
    assert ("BatchNorm2d" in kinds) == ("norm" in case.name or "bn" in case.name)
    assert any("Dropout" in k for k in kinds) == ("dropout" in case.name)


def weight_shapes(net):
    return [tuple(w.shape) for w in net.parameters() if w.dim() > 1]


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


@pytest.mark.parametrize("name", cases.PEER_NAMES)
def test_peer_lif_decays_by_beta(name, tiny_root):
    """A constant sub-threshold current: the membrane follows v = beta * v + gain * current,
    beta from conf/neuron/leaky.yaml (0.95). SpikingJelly takes the input unscaled, as snnTorch;
    Norse's Euler step scales it by dt * tau_mem_inv = 1 - beta."""
    if name not in INSTALLED:
        pytest.skip(f"{name} not installed")
    p = peer(name, cases.Case("mlp", "snn", "direct", 4), tiny_root)
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
    """Counted on ours as the trainer counts macs_per_sample; the tutorial side has the same
    weights and evaluates in the same batches (Runner.eval_batch_size)."""
    data = fake_data()
    for case, macs in [(cases.Case("mlp", "snn", "rate", 3), 784 * 1000 + 1000 * 10),
                       (cases.Case("conv", "csnn", "direct", 2),
                        12 * 25 * 24 * 24 + 64 * 12 * 25 * 8 * 8 + 64 * 4 * 4 * 10),
                       (cases.Case("ann", "ann", "direct", 0), 784 * 1000 + 1000 * 10)]:
        ours = sides.Ours(case, str(tiny_root), data)
        assert measure.train_flops_per_sample(ours) == 6 * max(1, case.steps) * macs
        tutorial = sides.TensorTutorial(case, ours.cfg, data)
        assert weight_shapes(ours.model) == weight_shapes(tutorial.net)
        assert tutorial.eval_bs == ours.runner.eval_batch_size()


def test_arch_takes_the_conv_shape_from_the_model_and_leaves_the_rng(tiny_root):
    cfg = cases.compose_cfg(cases.Case("conv", "csnn", "direct", 2), str(tiny_root))
    torch.manual_seed(0)
    expected = torch.rand(3)
    torch.manual_seed(0)
    a = cases.arch(cfg, (1, 28, 28))
    assert torch.equal(torch.rand(3), expected)  # the sides' weights are seeded as before
    assert (a.channels, a.k, a.flat) == ((1, 12, 64), 5, 64 * 4 * 4)


def test_verdicts_follow_the_targets(monkeypatch):
    monkeypatch.setattr(report, "TARGETS", [("rate25", "train_ratio", ">=", 3.0),
                                            ("direct25", "train_ratio", ">=", 10.0),
                                            ("rate25", "augment_frac", "<=", 0.1)])
    monkeypatch.setattr(report, "EVAL_TARGET", 3.0)
    monkeypatch.setattr(report, "CSNN_PEER_TARGET", 2.0)
    monkeypatch.setattr(report, "MEMORY_LIMIT_MIB", 100)
    blank = dict.fromkeys(["train_ratio", "train_ratio_peer", "eval_ratio", "eval_ratio_peer"], "")
    rows = [{**blank, "case": "rate25", "model": "snn", "train_ratio": 3.0, "eval_ratio": 2.99,
             "augment_frac": 0.11},
            {**blank, "case": "csnn_x", "model": "csnn", "train_ratio_peer": 1.5,
             "eval_ratio": 4.0, "eval_ratio_peer": 3.0}]
    lines = report.verdicts(rows, [{"case": "memory", "peak_rss_mib_ours": 101}], True)
    t = cases.MEMORY_CASE.steps
    assert lines == ["target rate25 train_ratio >= 3.0: 3.0 met",  # direct25 did not run
                     "target rate25 augment_frac <= 0.1: 0.11 MISSED",
                     "target csnn_x train_ratio_peer >= 2.0: 1.5 MISSED",
                     "target rate25 eval_ratio >= 3.0: 2.99 MISSED",
                     "target csnn_x eval_ratio >= 3.0: 4.0 met",
                     "target csnn_x eval_ratio_peer >= 3.0: 3.0 met",
                     f"target T={t} training peak RSS <= 100 MiB: 101 MISSED"]
    assert "not checked" in report.verdicts(rows, [], False)[-1]


def test_targets_come_from_the_shipped_yaml():
    raw = cases.load_targets()
    assert cases.TARGETS == [(t["case"], t["column"], ">=" if "min" in t else "<=",
                              t["min"] if "min" in t else t["max"]) for t in raw["train"]]
    assert ("rate25_affine", "augment_frac", "<=", 0.1) in cases.TARGETS
    assert all(c in cases.CASES for c, *_ in cases.TARGETS)  # no target names a missing case
    assert (cases.EVAL_TARGET, cases.CSNN_PEER_TARGET) == \
        (raw["eval_ratio_min"], raw["csnn_train_ratio_peer_min"])
    assert (cases.MEMORY_CASE.steps, cases.MEMORY_LIMIT_MIB) == \
        (raw["memory"]["timesteps"], raw["memory"]["peak_rss_mib_max"])
    assert cases.TARGETS_FILE.parent == ROOT / "bench"
    # on a GPU (--device cuda), issue 40's: 10x the tutorial loop on rate25, SpikingJelly's pace
    assert cases.CUDA_TARGETS == cases.bounds(raw["cuda"]["train"])
    assert ("rate25", "train_ratio", ">=", 10.0) in cases.CUDA_TARGETS
    assert cases.CUDA_SJ_TARGET == raw["cuda"]["spikingjelly_train_ratio_min"] >= 1.0


def test_bench_stays_out_of_the_installed_package():
    """The bench (its peers are not the package's dependencies) sits beside snn_sweep, in no
    package or package data that setuptools installs."""
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    setup = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert not [p for p in setup["packages"] if "bench" in p]
    assert not [p for p in setup.get("package-data", {}) if "bench" in p]
    assert not (ROOT / "snn_sweep" / "bench").exists()
    assert Path(cli.__file__).parent == ROOT / "bench"


@pytest.mark.slow
def test_memory_check_runs_the_bench_in_child_processes(tiny_root, tmp_path, monkeypatch):
    """memory_case spawns `python -m bench --memory-child` for each side, from the project
    root, whatever the caller's working directory."""
    monkeypatch.chdir(tmp_path)  # not the project root
    row = measure.memory_case(2, str(tiny_root), 1)
    assert row["case"] == f"memory_rate2_batch{cases.BATCH}"
    for which in ("ours", "ref"):
        assert 0 < row[f"after_data_rss_mib_{which}"] <= row[f"peak_rss_mib_{which}"]


def test_bench_bad_data_root_is_one_line(tmp_path):
    with pytest.raises(SystemExit) as info:
        cli.main(["--data-root", str(tmp_path / "nowhere"), "--quick", "--no-memory"])
    assert str(info.value).startswith(f"error: --data-root {tmp_path / 'nowhere'}: ")


def test_augmentation_case_times_ours_against_its_base_only(tiny_root, tmp_path, fast):
    """A case without the others' sides (others=False): ours and its base; augment_frac is the
    share of ours' training time spent augmenting, > 0 and < 1."""
    [row] = run(tiny_root, tmp_path / "a.csv", "rate1_affine")
    assert float(row["train_ours"]) > 0 and float(row["train_base"]) > 0
    assert row["train_ref"] == row["train_spikingjelly"] == row["train_ratio_peer"] == ""
    assert 0 < float(row["augment_frac"]) < 1


@pytest.mark.parametrize("device", ["cuda", "cuda:7", "tpu", "nonsense"])
def test_bench_on_a_device_this_machine_lacks_is_one_line(tmp_path, device):
    if device.startswith("cuda") and torch.cuda.device_count() > int(device[5:] or 0):
        pytest.skip(f"this machine has {device}")
    with pytest.raises(SystemExit) as info:  # before any data is read
        cli.main(["--data-root", str(tmp_path / "nowhere"), "--quick", "--device", device])
    message = str(info.value)
    assert message.startswith(f"error: --device {device}: ") and "\n" not in message
    assert ("no CUDA device" in message) == device.startswith("cuda")


def test_cuda_verdicts_follow_the_cuda_targets(monkeypatch):
    """On a GPU: targets.yaml's cuda list, and every spiking case's training against
    SpikingJelly; none of the CPU's."""
    monkeypatch.setattr(report, "CUDA_TARGETS", [("rate25", "train_ratio", ">=", 10.0)])
    monkeypatch.setattr(report, "CUDA_SJ_TARGET", 1.0)
    rows = [{"case": "rate25", "model": "snn", "train_ratio": 12.0, "eval_ratio": 0.5,
             "train_ratio_spikingjelly": 0.9, "train_ratio_peer": 0.8},
            {"case": "ann", "model": "ann", "train_ratio": 2.0, "train_ratio_spikingjelly": ""}]
    assert report.verdicts(rows, [], True, "cuda") == [
        "target rate25 train_ratio >= 10.0: 12.0 met",
        "target rate25 train_ratio_spikingjelly >= 1.0: 0.9 MISSED"]


@pytest.mark.slow  # torch.compile of the stepped loop: ~15 s on 2 cores
@pytest.mark.skipif("norse" not in INSTALLED, reason="norse not installed")
def test_norse_runs_compiled_when_torch_compile_takes_it(tiny_root):
    """On a GPU Norse's loop is compiled (the bench's default there); here forced on the CPU."""
    case = cases.Case("mlp", "snn", "rate", 3)
    p = peers.NorsePeer(case, cases.compose_cfg(case, str(tiny_root)), fake_data(),
                        INSTALLED["norse"], compiled=True)
    assert p.mode == "torch.compile" and "forward" in vars(p)  # the compiled loop
    assert p.train_batch() == cases.BATCH and p.evaluate(20) == 20
    assert peer("norse", case, tiny_root).mode == "plain"  # on the CPU by default


def test_norse_falls_back_to_its_plain_loop_when_compiling_fails(tiny_root, monkeypatch):
    if "norse" not in INSTALLED:
        pytest.skip("norse not installed")

    def broken(fn):
        def run(*a):
            raise RuntimeError("Inductor\ncannot")
        return run
    monkeypatch.setattr(torch, "compile", broken)
    case = cases.Case("mlp", "snn", "rate", 3)
    p = peers.NorsePeer(case, cases.compose_cfg(case, str(tiny_root)), fake_data(),
                        INSTALLED["norse"], compiled=True)
    assert p.mode == "plain (torch.compile failed: RuntimeError: Inductor cannot)"
    assert p.train_batch() == cases.BATCH


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_bench_on_cuda_runs_every_side_there(tiny_root, tmp_path, fast, capsys):
    """--device cuda: every side on the GPU, the CPU-only parts left out with a note, which
    SpikingJelly implementation and whether Norse compiled said, the cuda targets' verdicts."""
    rows = run(tiny_root, tmp_path / "gpu.csv", "rate1,csnn_direct2", device="cuda")
    for r in rows:
        for side in ("ours", "ref", "tensor", "byo", *INSTALLED):
            assert float(r[f"train_{side}"]) > 0 and float(r[f"eval_{side}"]) > 0
        assert r["peak_frac"] == "" and float(r["train_gflops_ours"]) > 0
    md = (tmp_path / "gpu.md").read_text()
    assert "fp32 matmul peak" not in md and "the CPU-only parts skipped" in md
    assert torch.cuda.get_device_name(0) in md.splitlines()[0]
    if "spikingjelly" in INSTALLED:
        assert "spikingjelly on cuda: lif: " in md
        assert "- target rate1 train_ratio_spikingjelly >= " in md
    if "norse" in INSTALLED:
        assert "norse on rate1: " in md and "norse on csnn_direct2: " in md
    assert "eval_ratio >=" not in md  # the CPU's targets


def test_event_case_runs_ours_against_the_tutorial_loop_on_frames(tiny_root, tmp_path,
                                                                  monkeypatch, capsys):
    """The event case (nmnist_csnn10, here 2 steps): the csnn and the tutorial's conv loop on the
    same synthetic N-MNIST frames; only the tensor side beside ours."""
    case = cases.Case("nmnist_csnn2", "csnn", "frames", 2, others=False)
    monkeypatch.setitem(cases.CASES, case.name, case)
    monkeypatch.setattr(measure, "PEAK_REPEATS", 1)
    data = cases.event_splits(case, (2, 34, 34), n_train=cases.BATCH, n_test=cases.BATCH)
    assert data.train_x.shape == (cases.BATCH, 2, 2, 34, 34)
    assert data.train_x.dtype == torch.uint8 and 0.02 < (data.train_x > 0).float().mean() < 0.05
    ours = sides.Ours(case, str(tiny_root), data)
    tutorial = sides.TensorTutorial(case, cases.compose_cfg(case, str(tiny_root)), data)
    assert list(ours.cfg.model.in_shape) == [2, 34, 34] and ours.cfg.encoder.name == "frames"
    assert weight_shapes(ours.model) == weight_shapes(tutorial.net)
    assert tutorial.run(data.test_x[:3]).shape == (2, 3, 10)
    rows = run(tiny_root, tmp_path / "bench.csv", case.name)
    (r,) = rows
    assert float(r["train_ratio_tensor"]) > 0 and float(r["eval_ratio_tensor"]) > 0
    assert r["train_ref"] == r["train_byo"] == r["train_ratio"] == ""
    assert re.search(r"nmnist_csnn2: train x[0-9.]+ tensor; eval x[0-9.]+ tensor",
                     capsys.readouterr().out)
