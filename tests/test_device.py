"""Where a run computes: the data splits on the run's device, torch.compile (trainer.compile), and
the CUDA runs (marked cuda: skipped without a GPU, run by scripts/gpu_check.sh)."""
import csv
import json
import math

import pytest
import torch

from snn_sweep.errors import NonFiniteLossError
from snn_sweep.train import train
from test_train import run


def test_splits_stay_where_they_are_on_the_cpu(make_cfg):
    """fit moves the splits to the run's device once; on the CPU that is no copy at all."""
    from snn_sweep.data import load_splits
    data = load_splits(make_cfg())
    moved = data.to(torch.device("cpu"))
    assert all(getattr(moved, k) is getattr(data, k)
               for k in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"))


def users_network(cfg, monkeypatch, hidden=32):
    """cfg with examples/byo's snnTorch tutorial-5 network (its own loop over steps) as model."""
    from conftest import ROOT
    monkeypatch.syspath_prepend(str(ROOT / "examples" / "byo"))
    cfg.model = {"_target_": "tutorial_net.Net", "num_hidden": hidden, "num_outputs": 10,
                 "beta": 0.95}
    cfg.trusted_modules = ["tutorial_net"]
    return cfg


def compiled_and_not(cfg_of, tmp_path):
    """Two runs of the config cfg_of(compile) gives, trainer.compile false and true: their
    metrics.csv rows, result.json's and the graphs TorchDynamo compiled for the second."""
    from torch._dynamo.utils import counters
    out = []
    for on in (False, True):
        counters.clear()
        cfg = cfg_of(on)
        train(cfg, str(tmp_path / str(on)))
        res = json.loads((tmp_path / str(on) / "result.json").read_text())
        with open(tmp_path / str(on) / "metrics.csv") as f:
            out.append((res, list(csv.DictReader(f)), counters["stats"]["unique_graphs"]))
    return out


def same_metrics_within_float_tolerance(plain, compiled, tol=1e-4):
    """On the CPU the compiled graphs round as the eager ops do; a GPU's kernels may round
    otherwise, which can flip a spike at the threshold (a looser tol)."""
    keys = ["train_loss", "train_acc", "val_loss", "val_acc"]
    for a, b in zip(plain[1], compiled[1]):
        assert [float(a[k]) for k in keys] == pytest.approx([float(b[k]) for k in keys],
                                                            rel=tol, abs=tol)
    assert plain[0]["val_acc"] == pytest.approx(compiled[0]["val_acc"], abs=tol)
    assert (plain[0]["context"]["compile"], compiled[0]["context"]["compile"]) == (False, True)


@pytest.mark.slow  # torch.compile's first graphs take tens of seconds on 2 cores
def test_compile_trains_a_users_stepped_network_to_the_same_metrics(make_cfg, tmp_path,
                                                                     monkeypatch):
    plain, compiled = compiled_and_not(lambda on: users_network(
        make_cfg("trainer.epochs=2", f"trainer.compile={str(on).lower()}"), monkeypatch),
        tmp_path)
    assert plain[2] == 0 and compiled[2] > 0  # TorchDynamo compiled the network's graphs
    same_metrics_within_float_tolerance(plain, compiled)
    # compiled in place: the checkpoint's keys are the network's own (no _orig_mod. prefix)
    saved = torch.load(tmp_path / "True" / "checkpoint.pt", weights_only=True)["state_dict"]
    assert set(saved) == set(torch.load(tmp_path / "False" / "checkpoint.pt",
                                        weights_only=True)["state_dict"])
    assert "fc1.weight" in saved


def test_compile_leaves_snn_sweep_nn_layers_to_their_kernels(make_cfg, tmp_path):
    """The built-in SNN is snn_sweep.nn's layers: trainer.compile runs them as they are (their
    kernels are fused already and not traceable), so the metrics are the same to the bit."""
    plain, compiled = compiled_and_not(
        lambda on: make_cfg(f"trainer.compile={str(on).lower()}"), tmp_path)
    assert compiled[2] == 0
    assert plain[1] == [{**r, "epoch_time_s": p["epoch_time_s"]}
                        for p, r in zip(plain[1], compiled[1])]
    same_metrics_within_float_tolerance(plain, compiled)


# ----------------------------------------------------- on a CUDA GPU (scripts/gpu_check.sh)
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("encoder", ["rate", "direct"])
@pytest.mark.parametrize("model", ["snn", "csnn_bn"])
def test_a_cuda_run_slices_its_batches_from_device_tensors(make_cfg, tmp_path, monkeypatch,
                                                           model, encoder):
    """On a GPU the splits move there once: every batch the step gets is already on it, and
    the run learns."""
    from snn_sweep.runner import Runner
    seen, step = [], Runner.train_step

    def train_step(self, opt, sched, x, y, where):
        seen.append((x.device.type, y.device.type))
        return step(self, opt, sched, x, y, where)
    monkeypatch.setattr(Runner, "train_step", train_step)
    res, rows = run(make_cfg, tmp_path, f"model={model}", f"encoder={encoder}",
                    "trainer.device=cuda", "trainer.epochs=3", "optimizer.lr=2e-3")
    assert seen and set(seen) == {("cuda", "cuda")}
    assert res["status"] == "completed" and res["context"]["device"] == "cuda"
    assert float(rows[-1]["train_loss"]) < float(rows[0]["train_loss"])
    assert res["test_acc"] > 0.3  # chance is 0.1


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("batch", [3, 6])  # 300 training images in batches of 50: 6 is the last
def test_a_cuda_run_names_the_batch_that_diverged(make_cfg, tmp_path, monkeypatch, batch):
    """On a GPU a step's loss is checked one step later (and the last one at the end of the
    epoch): the error still names the batch whose loss was not finite."""
    import snn_sweep.runner as r
    calls, loss = [], r.readout_loss

    def readout_loss(readout, spk, mem, y):
        calls.append(1)
        out = loss(readout, spk, mem, y)
        return out * math.nan if len(calls) == batch else out
    monkeypatch.setattr(r, "readout_loss", readout_loss)
    where = f"training loss is nan at epoch 1, batch {batch}:"
    with pytest.raises(NonFiniteLossError, match=where):
        train(make_cfg("trainer.device=cuda"), str(tmp_path))
    assert json.loads((tmp_path / "result.json").read_text())["status"] == "failed"


@pytest.mark.cuda
@needs_cuda
def test_compile_on_cuda_trains_a_users_network_to_the_same_metrics(make_cfg, tmp_path,
                                                                    monkeypatch):
    plain, compiled = compiled_and_not(lambda on: users_network(
        make_cfg("trainer.device=cuda", f"trainer.compile={str(on).lower()}"), monkeypatch),
        tmp_path)
    assert compiled[2] > 0
    same_metrics_within_float_tolerance(plain, compiled, tol=0.03)


@pytest.mark.parametrize("overrides", [("model=snn", "encoder=rate", "model.dropout=0.2"),
                                       ("model=csnn_bn", "encoder=direct")])
def test_the_warm_up_changes_neither_weights_nor_random_streams(make_cfg, tmp_path, overrides):
    """The kernels compile in a warm-up step before epoch 1 (result.json's warmup_time_s, not
    epoch_time_s), on a copy of the model with torch's random stream put back: dropout, the rate
    encoder and BatchNorm's running statistics leave the run as it was."""
    from snn_sweep.build import resolve
    from snn_sweep.loop import setup
    cfg = resolve(make_cfg(*overrides))
    _, data, model, runner, _ = setup(cfg)
    before, rng = {k: v.clone() for k, v in model.state_dict().items()}, torch.get_rng_state()
    runner.warm_up(data.train_x[:50], data.train_y[:50])
    assert torch.equal(torch.get_rng_state(), rng)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())
    assert model.training and all(p.grad is None for p in model.parameters())
    res, _ = run(make_cfg, tmp_path, *overrides, "trainer.epochs=1")
    assert res["warmup_time_s"] > 0
