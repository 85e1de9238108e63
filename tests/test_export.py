"""The NIR export (snn_sweep/export.py): a trained run's graph re-imported by snnTorch and Norse
computes what the run computes (output spikes per step, predicted class), and every setting
NIR cannot express is refused in one line."""
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

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
ROOT = Path(__file__).resolve().parents[1]
# A user's conv SNN written with snn_sweep.nn, in a folder of its own (the user's project).
USER_NET = """import snntorch as snn
from torch import nn

from snn_sweep import nn as fast


class Net(fast.Sequential):
    def __init__(self, reset: str = "zero", pool: str = "sum"):
        super().__init__(
            fast.ConvPool(nn.Conv2d(1, 4, 5), pool=pool),
            fast.Neurons(snn.Leaky(beta=0.9, threshold=0.5, reset_mechanism=reset)),
            fast.Linear(nn.Linear(4 * 12 * 12, 10)),
            fast.Neurons(snn.Leaky(beta=0.9, threshold=0.5, reset_mechanism=reset)))
"""


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

    # docs/export.md's snippet reads the file back with snnTorch and steps it through a batch:
    # our spikes, with export.batched; without it, the importer's Flatten fails on the batch.
    snippet = reading_back_snippet().replace("RUN_DIR", run)
    scope = {"seq": seq}
    exec(snippet, scope)
    with torch.no_grad():
        assert torch.equal(scope["spikes"], model(seq)[0])
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        exec(snippet.replace("batched(import_from_nir", "(import_from_nir"), {"seq": seq})


def reading_back_snippet() -> str:
    """The Python block of docs/export.md's "Reading the file back"."""
    text = (ROOT / "docs" / "export.md").read_text().split("## Reading the file back", 1)[1]
    return text.split("```python\n", 1)[1].split("```", 1)[0]


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


def users_module(folder: Path, name: str):
    """The user's module from their folder, imported without touching sys.path."""
    spec = importlib.util.spec_from_file_location(name, folder / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def user_run(make_cfg, folder: Path, run: str, target: str, **args) -> str:
    """A run dir of a user's model (`target` in folder): .hydra/config.yaml and its initial
    weights, as a run made before checkpoints carried their model."""
    cfg = OmegaConf.to_container(make_cfg("model=snn", *EXPORTABLE))
    cfg["model"] = {"_target_": target, **args}
    path = folder / run
    os.makedirs(path / ".hydra")
    OmegaConf.save(OmegaConf.create(cfg), path / ".hydra" / "config.yaml")
    module, name = target.rsplit(".", 1)
    torch.save(getattr(users_module(folder, module), name)(**args).state_dict(),
               path / "checkpoint.pt")
    return run


def test_console_script_exports_the_users_network_from_its_folder(make_cfg, tmp_path):
    """snn-sweep-export, run from the user's folder, imports their module as
    `python -m snn_sweep.export` does; the refusal of their net names what they can change in
    their code, not a config key that never reaches it."""
    script = Path(sys.executable).with_name("snn-sweep-export")
    if not script.exists():
        pytest.skip("the console script is not installed (pip install -e .)")
    (tmp_path / "mynet.py").write_text(USER_NET)
    shutil.copy(ROOT / "examples" / "byo" / "fast_net.py", tmp_path)
    good = user_run(make_cfg, tmp_path, "good", "mynet.Net")
    fast = user_run(make_cfg, tmp_path, "fast", "fast_net.FastNet", num_hidden=16)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run([str(script), good, fast, "--images", "20"], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=300)
    assert (tmp_path / "good" / "model.nir").is_file(), p.stderr[-2000:]
    record = json.loads((tmp_path / "good" / "export.json").read_text())
    assert record["agreement"]["snntorch"]["spikes_equal"] == 1.0
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 1 and len(lines) == 1, p.stderr[-2000:]
    assert lines[0].startswith("error: model.layers.1.") and "reset_mechanism='subtract'" in \
        lines[0] and lines[0].endswith("train with reset_mechanism='zero' on its snn.Leaky "
                                       "layers"), lines[0]
    assert not (tmp_path / "fast" / "model.nir").exists()


def plain_tutorial6():
    """snnTorch tutorial 6's conv SNN as written there: max pooling, stepped snn.Leaky."""
    import snntorch as snn
    from torch import nn
    return nn.Sequential(nn.Conv2d(1, 12, 5), nn.MaxPool2d(2), snn.Leaky(0.5, init_hidden=True),
                         nn.Conv2d(12, 64, 5), nn.MaxPool2d(2), snn.Leaky(0.5, init_hidden=True),
                         nn.Flatten(), nn.Linear(64 * 4 * 4, 10),
                         snn.Leaky(0.5, init_hidden=True, output=True))


@pytest.mark.parametrize("net, model, message", [
    (dict(reset="subtract"), {}, "model.layers.1.neurons.neuron (snn.Leaky reset_mechanism="
     "'subtract'): NIR's LIF resets to v_reset (subtract and none are not expressible); train "
     "with reset_mechanism='zero' on its snn.Leaky layers"),
    (dict(pool="max"), {}, "model.layers.0 (ConvPool pool='max'): NIR has no max pooling; "
     "build it as snn_sweep.nn.ConvPool(conv, pool='sum') (or pool='avg')"),
    (None, {}, "NIR has no max pooling: pool with snn_sweep.nn.ConvPool(conv, pool='sum')"),
    # a user's model built from the neuron group's node: that key reaches it
    (dict(reset="subtract"), {"neuron": "${neuron}"}, "neuron.reset_mechanism=subtract: NIR's "
     "LIF resets to v_reset (subtract and none are not expressible); train with "
     "neuron.reset_mechanism=zero"),
    (dict(reset="subtract"), {"neuron": {"_target_": "snntorch.Leaky", "beta": 0.5}},
     "model.neuron.reset_mechanism=subtract:"),
])
def test_refusals_of_a_users_network_name_what_they_can_change(tmp_path, net, model, message):
    (tmp_path / "mynet.py").write_text(USER_NET)
    built = plain_tutorial6() if net is None else users_module(tmp_path, "mynet").Net(**net)
    cfg = OmegaConf.create({"model": {"_target_": "mynet.Net", **model},
                            "neuron": {"_target_": "snntorch.Leaky", "beta": 0.9},
                            "data": {"shape": [1, 28, 28]}})
    with pytest.raises(InputError) as e:
        nir_graph.to_nir(cfg, built)
    assert message in str(e.value) and "\n" not in str(e.value)
    if not model:  # no config key reaches a network the user wrote
        assert "neuron.reset_mechanism" not in str(e.value) and "model.pool" not in str(e.value)
