"""The NIR export (snn_sweep/export.py): a trained run's graph re-imported by snnTorch and Norse
computes what the run computes (output spikes per step, predicted class), and every setting
NIR cannot express is refused in one line."""
import json
import os
import subprocess
import sys

import pytest
import torch
from omegaconf import OmegaConf

pytest.importorskip("nir")
pytest.importorskip("norse")

import nir  # noqa: E402

from snn_sweep import export, nir_graph  # noqa: E402
from snn_sweep.build import build_model, resolve  # noqa: E402
from snn_sweep.errors import InputError  # noqa: E402
from snn_sweep.train import train  # noqa: E402

EXPORTABLE = ("neuron.reset_mechanism=zero", "model.readout=rate_ce", "timesteps=8")


def make_run(make_cfg, path, *overrides, trained=True):
    """A run dir: trained by snn_sweep.train, or (trained=False) the built model's initial
    weights as its checkpoint, which is all a refusal needs."""
    cfg = make_cfg(*overrides)
    if trained:  # result.json and checkpoint.pt alone: no .hydra/
        train(cfg, str(path))
    else:  # a run made before checkpoints carried their model: .hydra/ and a bare state dict
        os.makedirs(path / ".hydra", exist_ok=True)
        OmegaConf.save(cfg, path / ".hydra" / "config.yaml")
        torch.save(build_model(resolve(cfg)).state_dict(), path / "checkpoint.pt")
    return str(path)


def check(record, images):
    a = record["agreement"]
    assert a["images"] == images
    for kind in ("snntorch", "norse"):
        r = a[kind]
        assert r["supported"], r
        assert r["output_spikes_ours"] > 0  # else equal spikes would prove little
        assert r["spikes_equal"] >= 0.99 and r["class_equal"] >= 0.99, (kind, r)
    return a


def test_mlp_export_reimports_to_the_same_spikes_and_classes(make_cfg, tmp_path):
    run = make_run(make_cfg, tmp_path / "run", "model=snn", *EXPORTABLE, "trainer.epochs=2")
    record = export.export_run(run, images=100, log=lambda s: None)
    a = check(record, 100)
    assert a["snntorch"]["spikes_equal"] == 1.0 and a["norse"]["spikes_equal"] == 1.0
    assert a["ours_acc"] > 0.5  # a trained network, not a silent one
    saved = json.load(open(os.path.join(run, "export.json")))
    assert saved["agreement"] == a and saved["readout"] == "rate_ce"
    assert json.load(open(os.path.join(run, "model.json")))["encoder"]["name"] == "rate"
    graph = nir.read(os.path.join(run, "model.nir"))
    assert [type(n).__name__ for n in graph.nodes.values()].count("LIF") == 2
    meta = graph.metadata
    assert float(meta["dt"]) == nir_graph.DT and int(meta["timesteps"]) == 8
    assert json.loads(meta["encoder"])["target"] == "snn_sweep.encoders.rate"

    # The check can fail: a graph whose output threshold is 10% off is caught.
    cfg, model = export.load_run(run)
    seq, y = export.encoded_slice(cfg, 100)
    bad = nir_graph.to_nir(cfg, model)
    out = bad.nodes[nir_graph.last_lif(bad)]
    out.v_threshold = out.v_threshold * 1.1
    wrong = export.verify(cfg, model, bad, seq, y)
    assert wrong["snntorch"]["spikes_equal"] < 1.0 and wrong["norse"]["spikes_equal"] < 1.0


@pytest.mark.parametrize("model, pool, hidden", [
    ("csnn", "sum", []), ("csnn", "avg", []), ("csnn_bn", "sum", []), ("csnn_bn", "avg", []),
    ("csnn_bn", "avg", [16])])
def test_conv_export_with_sum_or_avg_pooling(make_cfg, tmp_path, model, pool, hidden):
    """csnn_bn: padded convs, BatchNorm folded into them, each layer's learned decay; with a
    hidden fully connected layer, its Affine-LIF pair between the convs and the output's."""
    run = make_run(make_cfg, tmp_path / "run", f"model={model}", f"model.pool={pool}",
                   f"model.hidden={hidden}", *EXPORTABLE, "neuron.threshold=0.5",
                   "data.train_subset=100",
                   *(["neuron.learn_beta=true"] if model == "csnn_bn" else []))
    record = export.export_run(run, images=40, log=lambda s: None)
    check(record, 40)
    assert list(record["nodes"].values()) == [
        "Input", "Conv2d", "SumPool2d", "LIF", "Conv2d", "SumPool2d", "LIF", "Flatten",
        *["Affine", "LIF"] * len(hidden), "Affine", "LIF", "Output"]


@pytest.mark.parametrize("overrides, message", [
    (("model=snn",), "error: neuron.reset_mechanism=subtract: NIR's LIF resets to v_reset"),
    (("model=snn", "neuron.reset_mechanism=none"), "error: neuron.reset_mechanism=none"),
    (("model=csnn", "neuron.reset_mechanism=zero"), "error: model.pool=max: NIR has no max "
                                                    "pooling; train with model.pool=avg"),
    (("model=snn", "neuron=synaptic", "neuron.reset_mechanism=zero"), "error: neuron.name: "
                                                                     "Synaptic has no exact"),
    (("model=snn", "neuron=lapicque", "neuron.reset_mechanism=zero"), "error: neuron.name: "
                                                                     "Lapicque"),
    (("model=ann",), "error: "),
])
def test_unsupported_settings_are_refused_in_one_line(make_cfg, tmp_path, overrides, message):
    run = make_run(make_cfg, tmp_path / "run", *overrides, trained=False)
    with pytest.raises(InputError) as e:
        export.export_run(run, images=0, log=lambda s: None)
    assert f"error: {e.value}".startswith(message) and "\n" not in str(e.value)
    assert not os.path.exists(os.path.join(run, "model.nir"))


def test_cli_one_line_errors(make_cfg, tmp_path):
    """Through the real command: a subtract-reset run; in-process: a dir without a checkpoint."""
    sub = make_run(make_cfg, tmp_path / "sub", "model=snn", trained=False)
    p = subprocess.run([sys.executable, "-m", "snn_sweep.export", sub, "--images", "0"],
                       capture_output=True, text=True)
    assert p.returncode != 0
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: neuron.reset_mechanism=subtract"), \
        p.stderr
    with pytest.raises(InputError, match="no checkpoint.pt"):
        export.export_run(str(tmp_path), images=0)


def test_study_front_exported_one_file_per_trial(make_cfg, tmp_path):
    """--study: every trial on an accuracy-energy study's Pareto front is exported, named by the
    trial, and a dominated trial is not."""
    import optuna
    runs = [make_run(make_cfg, tmp_path / f"job{i}", "model=snn", *EXPORTABLE, trained=False)
            for i in range(3)]
    url = f"sqlite:///{tmp_path / 'pareto.db'}"
    study = optuna.create_study(study_name="pareto", storage=url,
                                directions=["maximize", "minimize"])
    dist = {"x": optuna.distributions.FloatDistribution(0, 1)}
    # (accuracy, energy): trials 0 and 2 are on the front, trial 1 is dominated by trial 0.
    for run, values in zip(runs, [(0.9, 1.0), (0.8, 2.0), (0.95, 3.0)]):
        study.add_trial(optuna.trial.create_trial(params={"x": 0.5}, distributions=dist,
                                                  values=list(values),
                                                  user_attrs={"job_dir": run}))
    out = tmp_path / "nir"
    export.main(["--study", url, "--out-dir", str(out), "--images", "0"])
    assert sorted(os.listdir(out)) == ["pareto_trial_0.json", "pareto_trial_0.nir",
                                       "pareto_trial_2.json", "pareto_trial_2.nir"]
    assert json.load(open(out / "pareto_trial_2.json"))["run_dir"] == runs[2]
    with pytest.raises(SystemExit, match="no study named 'nope'"):
        export.main(["--study", url, "--name", "nope", "--out-dir", str(out)])
