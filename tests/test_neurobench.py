"""energy.py's metrics are NeuroBench's: each built-in model and the bring-your-own example, trained
one epoch, counted by our hooks on their own layers and by NeuroBench 2.3's Benchmark on a copy
stepped in plain PyTorch (nn.Linear / nn.Conv2d, pooling, BatchNorm, snn.Leaky), on the same
checkpoint and the same encoded test inputs: operation counts equal, sparsities within float."""
import importlib.util
import shutil
from pathlib import Path

import pytest
import torch
from conftest import EVENTS, run_cli, small_overrides
from torch import nn

from snn_sweep.build import build_model
from snn_sweep.data import load_splits
from snn_sweep.encoders import rate
from snn_sweep.train import train

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("neurobench_check",
                                              ROOT / "scripts" / "neurobench_check.py")
check = importlib.util.module_from_spec(spec)
spec.loader.exec_module(check)


def assert_same(ours, theirs):
    ops = theirs["SynapticOperations"]
    assert ours["effective_macs_per_sample"] == ops["Effective_MACs"]
    assert ours["effective_acs_per_sample"] == ops["Effective_ACs"]
    assert ours["dense_ops_per_sample"] == ops["Dense"]
    assert ours["membrane_updates_per_sample"] == theirs["MembraneUpdates"]
    assert ours["activation_sparsity"] == pytest.approx(theirs["ActivationSparsity"], abs=1e-9)
    assert ours["footprint_bytes"] == theirs["Footprint"]
    assert ours["n_params"] == theirs["ParameterCount"]
    assert ours["connection_sparsity"] == pytest.approx(theirs["ConnectionSparsity"], abs=5e-5)
    assert ours["synops_per_sample"] == ops["Effective_MACs"] + ops["Effective_ACs"]
    assert ours["energy_pj_per_sample"] == pytest.approx(
        ops["Effective_ACs"] * 0.9 + ops["Effective_MACs"] * 4.6)




def silence(model: nn.Module) -> None:
    """Every 4th unit of each weight layer silenced (its weights and bias zero): zero weights,
    and neurons at rest whose membrane never moves, which the counts must tell apart."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.Linear, nn.Conv2d)):
                m.weight[::4] = 0
                if m.bias is not None:
                    m.bias[::4] = 0


@pytest.mark.parametrize("overrides", [
    ("model=snn", "encoder=rate"), ("model=snn", "encoder=direct"),
    ("model=snn_single_step", "encoder=direct"), ("model=ann",),
    ("model=csnn", "encoder=rate"), ("model=csnn_bn", "encoder=direct"),
    ("model=csnn", "encoder=rate", "model.padding=2"), ("model=snn", "encoder=delta"),
    ("model=csnn", "encoder=delta"), ("model=cnn_bn", "model.padding=1"),
], ids=lambda o: "-".join(v.split("=")[1] for v in o))
def test_built_in_models_count_as_neurobench(make_cfg, tmp_path, overrides):
    train(make_cfg(*overrides, "trainer.epochs=1"), str(tmp_path))
    ours, theirs = check.compare_run(str(tmp_path), prepare=silence)
    assert_same(ours, theirs)
    assert ours["connection_sparsity"] > 0.2
    if "encoder=direct" in overrides:  # analog pixels at every step: MACs, not ACs
        assert ours["effective_macs_per_sample"] > 0
    if "encoder=delta" in overrides:  # on and off (-1) events are spikes: ACs only
        assert ours["effective_macs_per_sample"] == 0 < ours["effective_acs_per_sample"]


def test_bring_your_own_network_counts_as_neurobench(tmp_path, data_root, monkeypatch):
    user = tmp_path / "my_project"
    shutil.copytree(ROOT / "examples" / "byo", user)
    tiny = [o for o in small_overrides(data_root)
            if not o.startswith(("model.hidden", "timesteps"))] + ["model.num_hidden=32"]
    out = tmp_path / "run"
    monkeypatch.syspath_prepend(str(user))  # as `python -m` run from the folder has it
    r = run_cli("--config-dir", "conf", "model=tutorial5", "encoder=rate", "timesteps=4",
                *tiny, "trainer.epochs=1", "trusted_modules=[tutorial_net]",
                f"hydra.run.dir={out}", cwd=user)
    assert r.returncode == 0, r.stderr[-2000:]
    ours, theirs = check.compare_run(str(out), prepare=silence)
    assert_same(ours, theirs)
    assert ours["effective_acs_per_sample"] > 0 and ours["effective_macs_per_sample"] == 0


def test_each_step_is_judged_spikes_or_not_on_its_own(make_cfg, data_root):
    """A sequence whose first step is analog pixels and the rest spikes: MACs for that step,
    ACs for the others, as NeuroBench judges each stepped call."""
    cfg = make_cfg("model=snn", "encoder=rate")
    model = build_model(cfg).eval()
    silence(model)
    data = load_splits(cfg)
    x, y = data.test_x.float()[:20], data.test_y[:20]
    torch.manual_seed(0)
    encoded = rate(x, num_steps=4)
    encoded[0] = x
    ours, theirs = check.ours_and_neurobench(model, check.Stepped(model),
                                             encoded.transpose(0, 1).contiguous(),
                                             encoded, y, spiking=True)
    assert_same(ours, theirs)
    assert ours["effective_macs_per_sample"] > 0 and ours["effective_acs_per_sample"] > 0


@pytest.mark.parametrize("model", ["csnn", "cnn"])
def test_event_frames_count_as_neurobench(make_cfg, event_root, tmp_path, model):
    """N-MNIST's frames through the conv SNN (counts above 1 in a frame are not spikes by
    NeuroBench's rule: those steps are MACs) and its ANN twin (the frames summed)."""
    train(make_cfg("dataset=nmnist", "encoder=frames", f"model={model}", *EVENTS["nmnist"],
                   f"data.root={event_root}", f"data.cache={tmp_path / 'cache'}",
                   "trainer.epochs=1"), str(tmp_path / "run"))
    ours, theirs = check.compare_run(str(tmp_path / "run"), prepare=silence)
    assert_same(ours, theirs)
    assert check.agree(ours, theirs)
