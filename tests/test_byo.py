"""Bring your own network: a user folder outside the package (examples/byo, copied) with its own
conf/ and a .py file, run through the CLI from that folder: a plain snnTorch tutorial-5 network,
an encoder, an optimizer and a neuron of the user's, grid and Optuna sweeps, the aggregator; bad
targets."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from conftest import small_overrides

pytestmark = pytest.mark.slow  # subprocess sweeps: make test runs them, pytest alone does not

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def user_dir(tmp_path) -> Path:
    """examples/byo copied where no part of the checkout is: the user's project folder."""
    folder = tmp_path / "my_project"
    shutil.copytree(ROOT / "examples" / "byo", folder)
    return folder


def tiny(data_root: str):
    """small_overrides for the user's model (model.num_hidden, not model.hidden)."""
    return [o for o in small_overrides(data_root)
            if not o.startswith(("model.hidden", "timesteps"))] + ["model.num_hidden=32"]


def snn_sweep(cwd: Path, *args: str, check: bool = True, module: str = "snn_sweep"):
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    r = subprocess.run([sys.executable, "-W", "default", "-m", module, *args], cwd=cwd, env=env,
                       capture_output=True, text=True, timeout=300)
    if check:
        assert r.returncode == 0, r.stderr[-3000:]
    return r


def test_tutorial_network_grid_sweep_and_aggregate(user_dir, data_root):
    out = user_dir / "multirun" / "grid"
    r = snn_sweep(user_dir, "--config-dir", "conf", "model=tutorial5", "encoder=rate", "-m",
                  "timesteps=4,8", *tiny(data_root), "trainer.epochs=3", "optimizer.lr=5e-3",
                  f"hydra.sweep.dir={out}")
    assert "deprecated" not in r.stderr and "_execution_whitelist_" not in r.stderr
    snn_sweep(user_dir, str(out), module="snn_sweep.aggregate")
    res = pd.read_csv(out / "results.csv")
    assert list(res["status"]) == ["completed"] * 2
    assert set(res["model"]) == {"tutorial5"} and set(res["arch"]) == {"tutorial_net.Net(beta=0.95, num_hidden=32, num_outputs=10)"}
    assert sorted(res["timesteps"]) == [4, 8] and res["spiking"].all()
    # counted by hooks on the user's nn.Linear and snn.Leaky layers
    assert (res["spikes_per_sample"] > 0).all() and (res["synops_per_sample"] > 0).all()
    assert (res["energy_pj_per_sample"] > 0).all()
    assert {"firing_rate_0", "firing_rate_1"} <= set(res.columns)
    assert (res["test_acc"] > 0.5).all()  # it learns the tiny data's bars (chance: 0.1)
    assert (out / "learning_curves.png").stat().st_size > 1000
    result = json.loads((out / "0" / "result.json").read_text())
    assert result["snn_sweep_version"] and result["neuron"] is None  # no neuron group used
    saved = torch.load(out / "0" / "checkpoint.pt", weights_only=True)
    assert {"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias", "lif1.beta"} <= \
        set(saved["state_dict"])
    assert saved["model"]["_target_"] == "tutorial_net.Net"  # what rebuilds it (load_run)
    shutil.rmtree(out / "0" / ".hydra")  # the record and checkpoint suffice, from the user's folder
    loaded = subprocess.run(
        [sys.executable, "-c", "import snn_sweep; r = snn_sweep.load_run('multirun/grid/0'); "
         "print(type(r.model).__module__, r.model.training, r.record['val_acc'])"],
        cwd=user_dir, capture_output=True, text=True, timeout=120)
    assert loaded.stdout.split() == ["tutorial_net", "False", str(result["val_acc"])], loaded.stderr


def test_optuna_study_over_a_constructor_argument(user_dir, data_root):
    db, out = user_dir / "study.db", user_dir / "multirun" / "study"
    snn_sweep(user_dir, "--config-dir", "conf", "-m", "hydra/sweeper=optuna_trials",
              "hydra/sweeper/pruner=median", "model=tutorial5", "encoder=rate", "timesteps=3",
              *[o for o in tiny(data_root) if not o.startswith("model.num_hidden")],
              "model.num_hidden=int(interval(8, 48))", "hydra.sweeper.n_trials=3",
              "trainer.epochs=2", f"hydra.sweeper.storage=sqlite:///{db}",
              "hydra.sweeper.study_name=byo", f"hydra.sweep.dir={out}")
    snn_sweep(user_dir, str(out), "--study", f"sqlite:///{db}", module="snn_sweep.aggregate")
    res = pd.read_csv(out / "results.csv")
    assert len(res) == 3 and set(res["optuna_trial"]) == {0, 1, 2}
    sizes = [json.loads((out / str(i) / ".hydra" / "overrides.yaml").read_text()
                        .split("model.num_hidden=")[1].split("\n")[0].strip('"\' '))
             for i in range(3)]
    assert all(8 <= s <= 48 for s in sizes) and len(set(sizes)) > 1
    n_params = {int(s): int(p) for s, p in zip(sizes, res["n_params"])}
    assert all(p == 784 * s + s + s * 10 + 10 for s, p in n_params.items())
    trials = pd.read_csv(out / "trials.csv")
    assert "model.num_hidden" in trials.columns or "params_model.num_hidden" in trials.columns
    assert (res["val_spikes_per_sample"] > 0).all()
    # tuning never looks at the test set: a study's trials skip it (trainer.test)
    assert res["test_skipped"].all() and "test_acc" not in res


def test_users_encoder_and_optimizer_by_target(user_dir, data_root):
    out = user_dir / "multirun" / "own"
    snn_sweep(user_dir, "--config-dir", "conf", "model=tutorial5", "encoder=binarized",
              "-m", "optimizer=rmsprop,sgd", "timesteps=3", *tiny(data_root),
              f"hydra.sweep.dir={out}")
    results = [json.loads((out / str(i) / "result.json").read_text()) for i in range(2)]
    assert [r["optimizer"] for r in results] == ["rmsprop", "sgd"]
    assert {r["encoder"] for r in results} == {"binarized"}
    # binarized input is spikes: the input layer's synops count events, not dense MACs
    assert all(r["energy_pj_per_sample"] == pytest.approx(0.9 * r["synops_per_sample"])
               for r in results)
    # any torch.optim class on the command line
    one = user_dir / "run"
    snn_sweep(user_dir, "--config-dir", "conf", "model=tutorial5", "encoder=rate",
              "optimizer._target_=torch.optim.NAdam", "~optimizer.fused", "timesteps=3",
              *tiny(data_root), f"hydra.run.dir={one}")
    assert json.loads((one / "result.json").read_text())["status"] == "completed"
    assert "torch.optim.NAdam" in (one / ".hydra" / "config.yaml").read_text()


@pytest.mark.parametrize("override,expected", [
    ("model._target_=json.loads", "model._target_='json.loads' is not in a trusted module: "
                                  "add trusted_modules=[json]"),
    ("model._target_=tutorial_net.Nope", "model._target_='tutorial_net.Nope': "),
    ("model._target_=nowhere_pkg.Net", "is not in a trusted module"),
    ("+model.depth=3", "model (tutorial_net.Net): TypeError: "),
    ("+model.spiking=false", "a non-spiking model must return logits [B, num_classes]"),
    ("encoder._target_=torch.nn.functional.relu", "encoder (torch.nn.functional.relu) failed"),
    ("optimizer._target_=torch.nn.Linear", "optimizer"),
])
def test_bad_target_is_one_line_before_training(user_dir, data_root, override, expected):
    run = user_dir / "bad"
    r = snn_sweep(user_dir, "--config-dir", "conf", "model=tutorial5", *tiny(data_root),
                  override, f"hydra.run.dir={run}", check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "Warning" not in ln]
    assert len(lines) == 1 and expected in lines[0], r.stderr
    assert not (run / "metrics.csv").exists()  # nothing trained


def test_trusted_modules_allows_a_module_outside_the_launch_folder(user_dir, data_root, tmp_path):
    lib = tmp_path / "lib" / "mylab"
    lib.mkdir(parents=True)
    (lib / "__init__.py").write_text("")
    shutil.move(str(user_dir / "tutorial_net.py"), lib / "nets.py")
    env_path = f"{tmp_path / 'lib'}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    args = ["--config-dir", "conf", "model=tutorial5", "model._target_=mylab.nets.Net",
            "encoder=rate", *tiny(data_root)]
    for extra, ok in (([], False), (["trusted_modules=[mylab]"], True)):
        r = subprocess.run([sys.executable, "-m", "snn_sweep", *args, *extra,
                            f"hydra.run.dir={user_dir / str(ok)}"], cwd=user_dir,
                           env={**os.environ, "PYTHONPATH": env_path},
                           capture_output=True, text=True, timeout=300)
        assert (r.returncode == 0) == ok, r.stderr[-2000:]
        if not ok:
            assert "add trusted_modules=[mylab]" in r.stderr


def test_network_of_snn_sweep_nn_layers_from_the_users_folder(user_dir, data_root):
    run = user_dir / "fast"
    snn_sweep(user_dir, "--config-dir", "conf", "model=fast", "encoder=rate", "timesteps=4",
              *tiny(data_root), "trainer.epochs=3", "optimizer.lr=5e-3", f"hydra.run.dir={run}")
    res = json.loads((run / "result.json").read_text())
    assert res["model"] == "fast" and res["spiking"] and res["test_acc"] > 0.5
    assert res["spikes_per_sample"] > 0 and res["firing_rate_1"] >= 0


def test_users_neuron_in_a_built_in_model_with_a_surrogate_sweep(user_dir, data_root):
    """neuron=<the user's YAML> in the built-in model=snn: their snn.Leaky subclass in every
    layer, run on the stepped path (one log line says so), its surrogate swept with
    snn_sweep's neuron/surrogate group."""
    out = user_dir / "multirun" / "neuron"
    r = snn_sweep(user_dir, "--config-dir", "conf", "model=snn", "neuron=adaptive", "encoder=rate",
                  "-m", "neuron/surrogate=atan,fast_sigmoid", *small_overrides(data_root),
                  "trainer.epochs=3", "optimizer.lr=5e-3", f"hydra.sweep.dir={out}")
    results = [json.loads((out / str(i) / "result.json").read_text()) for i in range(2)]
    assert [r["status"] for r in results] == ["completed"] * 2
    assert [r["neuron"] for r in results] == ["adaptive"] * 2 and results[0]["beta"] == 0.9
    assert all(r["test_acc"] > 0.5 for r in results)
    assert results[0]["val_loss"] != results[1]["val_loss"]  # another surrogate, other gradients
    grads = [(out / str(i) / ".hydra" / "config.yaml").read_text() for i in range(2)]
    assert "snntorch.surrogate.atan" in grads[0] and "snntorch.surrogate.fast_sigmoid" in grads[1]
    said = "AdaptiveLeaky neurons run the stepped path, not the fused LIF kernels"
    assert (r.stdout + r.stderr).count(said) == 1  # once per process


RLEAKY = """\
# snnTorch's recurrent LIF: a Linear of linear_features x linear_features feeds each layer's
# spikes back, so every layer must be that wide (model.hidden=[10], 10 classes).
defaults:
  - surrogate: atan
  - _self_
_target_: snntorch.RLeaky
_partial_: true
beta: 0.9
linear_features: 10
"""


def test_snntorch_recurrent_neuron_through_the_pipeline(user_dir, data_root):
    (user_dir / "conf" / "neuron" / "rleaky.yaml").write_text(RLEAKY)
    run = user_dir / "rleaky"
    snn_sweep(user_dir, "--config-dir", "conf", "model=snn", "neuron=rleaky", "encoder=rate",
              *[o for o in small_overrides(data_root) if not o.startswith("model.hidden")],
              "model.hidden=[10]", "trainer.epochs=3", "optimizer.lr=5e-3",
              f"hydra.run.dir={run}")
    res = json.loads((run / "result.json").read_text())
    assert res["status"] == "completed" and res["neuron"] == "rleaky" and res["test_acc"] > 0.5
    # the two Linear layers, and each layer's recurrent weights trained with them
    assert res["n_params"] == (784 * 10 + 10) + (10 * 10 + 10) + 2 * (10 * 10 + 10)


@pytest.mark.parametrize("override,expected", [
    ("+neuron.jmp=0.3", "neuron (adaptive_neuron.AdaptiveLeaky): TypeError: "),
    ("neuron.beta=2", "neuron.beta=2 is not allowed: a number in [0, 1]"),
    ("neuron._target_=adaptive_neuron.Nope", "neuron._target_='adaptive_neuron.Nope': "),
])
def test_bad_user_neuron_is_one_line_before_training(user_dir, data_root, override, expected):
    run = user_dir / "bad"
    r = snn_sweep(user_dir, "--config-dir", "conf", "model=snn", "neuron=adaptive",
                  *small_overrides(data_root), override, f"hydra.run.dir={run}", check=False)
    assert r.returncode != 0 and "Traceback" not in r.stderr, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "Warning" not in ln]
    assert len(lines) == 1 and expected in lines[0], r.stderr
    assert not (run / "metrics.csv").exists()  # nothing trained


def test_grid_over_users_models_overrides_their_own_key(user_dir, data_root):
    """`model.num_hidden` is a key of the user's models only: Hydra used to apply it to the
    sweep-level config, composed with the default model (`Key ... not in 'MLPConfig'`)."""
    out = user_dir / "multirun" / "models"
    snn_sweep(user_dir, "--config-dir", "conf", "-m", "model=tutorial5,fast", "encoder=rate",
              "timesteps=3", *tiny(data_root), "model.num_hidden=24", f"hydra.sweep.dir={out}")
    results = [json.loads((out / str(i) / "result.json").read_text()) for i in range(2)]
    assert [r["model"] for r in results] == ["tutorial5", "fast"]
    assert all(r["status"] == "completed" and "num_hidden=24" in r["arch"] for r in results)
    # a misspelt key of a built-in model still fails at composition, in one line
    r = snn_sweep(user_dir, "-m", "model=snn,csnn", "model.hiden=3", *small_overrides(data_root),
                  f"hydra.sweep.dir={user_dir / 'bad'}", check=False)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip() and "Warning" not in ln]
    assert r.returncode != 0 and len(lines) == 1 and "'model.hiden'" in lines[0], r.stderr
