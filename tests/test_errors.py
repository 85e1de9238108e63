"""Bad input: one clear line naming the key or file, non-zero exit, no traceback. The messages
are checked in-process (train raises InputError with them); the command line, which prints any
InputError as that one line, is checked once per kind of input."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.errors import HydraException

from conftest import CONF_DIR, make_dataset, small_overrides
from snn_sweep.errors import InputError
from snn_sweep.train import train

ROOT = Path(__file__).resolve().parents[1]


def cli(tmp_path, *overrides):
    cmd = [sys.executable, "-m", "snn_sweep", *overrides, f"hydra.run.dir={tmp_path}/run"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


def one_line_error(p) -> str:
    """The command failed with exactly one line on stderr and no traceback: that line."""
    assert p.returncode != 0 and "Traceback" not in p.stderr, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, p.stderr
    return lines[0]


def train_error(make_cfg, tmp_path, *overrides) -> str:
    with pytest.raises(InputError) as e:
        train(make_cfg(*overrides), str(tmp_path))
    return str(e.value)



@pytest.mark.parametrize("override,expected", [
    ("timesteps=0", "timesteps=0 is not allowed: an integer >= 1"),
    ("timesteps=-3", "timesteps=-3 is not allowed"),
    ("neuron.beta=1.5", "neuron.beta=1.5 is not allowed: a number in [0, 1]"),
    ("neuron.beta=-0.1", "neuron.beta=-0.1 is not allowed"),
    ("optimizer.lr=0", "optimizer.lr=0 is not allowed: a number > 0"),
    ("optimizer.lr=-1e-3", "optimizer.lr=-0.001 is not allowed"),
    ("trainer.epochs=0", "trainer.epochs=0 is not allowed: an integer >= 1"),
    ("data.batch_size=0", "data.batch_size=0 is not allowed: an integer >= 1"),
    ("data.val_size=400", "data.val_size=400 is not allowed: an integer smaller than the 400 training samples"),
    ("repeats=0", "repeats=0 is not allowed: an integer >= 1"),
    ("model.dropout=1", "model.dropout=1.0 is not allowed: a number in [0, 1)"),
    ("pareto_metric=energy", "pareto_metric='energy' is not allowed: null or one of "
                             "val_energy_pj_per_sample, val_spikes_per_sample, "
                             "val_synops_per_sample"),
])
def test_bad_value_is_named_with_what_is_allowed(make_cfg, tmp_path, override, expected):
    message = train_error(make_cfg, tmp_path, override)
    assert message == expected or message.startswith(expected)


@pytest.mark.parametrize("overrides,expected", [
    (["neuron.threshold=0"], "neuron.threshold=0.0 is not allowed: a number > 0"),
    (["neuron=synaptic", "neuron.alpha=1.2"], "neuron.alpha=1.2 is not allowed: a number in [0, 1]"),
    (["neuron=alpha", "neuron.alpha=0.5"],
     "neuron.alpha=0.5 is not allowed: snntorch.Alpha needs alpha > neuron.beta (0.9)"),
    (["neuron._partial_=false"], "neuron._partial_=False is not allowed: true: a model makes one "
                                 "neuron per layer from the node"),
    (["neuron._target_=snntorch.Nope"], "neuron._target_='snntorch.Nope': cannot be imported"),
    (["neuron._target_=torch.nn.functional.relu"],
     "neuron (torch.nn.functional.relu): TypeError: "),
    (["neuron._target_=snntorch.surrogate.atan"],  # arguments it does not take
     "neuron (snntorch.surrogate.atan): TypeError: atan() got an unexpected keyword argument"),
    (["+neuron.spike_grad.alpah=3"],  # the surrogate's
     "neuron (snntorch.Leaky): TypeError: atan() got an unexpected keyword argument 'alpah'"),
    (["model=csnn", "neuron.spike_grad._target_=snntorch.surrogate.nope"],
     "neuron.spike_grad._target_='snntorch.surrogate.nope': cannot be imported"),
    (["neuron.spike_grad._target_=json.loads"],
     "neuron.spike_grad._target_='json.loads' is not in a trusted module: add "
     "trusted_modules=[json]"),
])
def test_bad_neuron_is_named(make_cfg, tmp_path, overrides, expected):
    """The neuron node's values, target and arguments fail in one line naming `neuron` (not the
    model built from it), before training."""
    message = train_error(make_cfg, tmp_path, *overrides)
    assert message.startswith(expected), message
    assert not (tmp_path / "metrics.csv").exists()


def test_neuron_target_that_makes_no_neuron(make_cfg, tmp_path):
    from omegaconf import open_dict
    cfg = make_cfg()
    with open_dict(cfg):
        cfg.neuron = {"_target_": "snntorch.surrogate.atan", "_partial_": True}
    with pytest.raises(InputError) as e:
        train(cfg, str(tmp_path))
    assert str(e.value) == ("neuron._target_='snntorch.surrogate.atan' made a function, not a "
                            "neuron (a torch.nn.Module)")


def test_model_with_a_neuron_of_its_own_is_named_by_its_key(make_cfg, tmp_path):
    """A model node that holds its neuron node (not ${neuron}): errors name model.neuron."""
    from omegaconf import open_dict
    for neuron, expected in (({"beta": 1.5}, "model.neuron.beta=1.5 is not allowed"),
                             ({"beta": 0.9, "betta": 1}, "model.neuron (snntorch.Leaky): "
                              "TypeError: Leaky.__init__() got an unexpected keyword argument")):
        cfg = make_cfg()
        with open_dict(cfg):
            cfg.model.neuron = {"_target_": "snntorch.Leaky", "_partial_": True, **neuron}
        with pytest.raises(InputError) as e:
            train(cfg, str(tmp_path))
        assert str(e.value).startswith(expected), str(e.value)


def test_bad_value_on_the_command_line_is_one_line(data_root, tmp_path):
    line = one_line_error(cli(tmp_path, *small_overrides(data_root), "timesteps=0"))
    assert line == "error: timesteps=0 is not allowed: an integer >= 1"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_missing_gpu_is_named(make_cfg, tmp_path):
    assert train_error(make_cfg, tmp_path, "trainer.device=cuda") == (
        "trainer.device='cuda': this machine has no cuda device(s); use trainer.device=auto or cpu")


@pytest.mark.parametrize("override,expected", [
    ("timesteps=2.5", ["timesteps", "could not be converted to Integer"]),
    ("model=foo", ["Could not find 'model/foo'", "ann", "csnn", "snn_single_step"]),
    ("encoder=morse", ["Could not find 'encoder/morse'", "latency", "delta"]),
    ("neuron.betta=0.5", ["Key 'betta' not in 'NeuronConfig'"]),
    ("neuron/surrogate=tanh", ["Could not find 'neuron/surrogate/tanh'", "fast_sigmoid"]),
])
def test_composition_errors_name_key_and_options(data_root, override, expected):
    with pytest.raises(HydraException) as e:
        with initialize_config_dir(config_dir=CONF_DIR):
            compose("config", overrides=[*small_overrides(data_root), override])
    shown = f"{e.value}\n{e.value.__cause__}"  # Hydra prints both
    for text in expected:
        assert text in shown


def test_composition_error_on_the_command_line(data_root, tmp_path):
    p = cli(tmp_path, *small_overrides(data_root), "model=foo")
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert "Could not find 'model/foo'" in p.stderr and "snn_single_step" in p.stderr


def test_missing_root_without_download(make_cfg, tmp_path):
    message = train_error(make_cfg, tmp_path, f"data.root={tmp_path}/nowhere")
    assert message == (f"data.root='{tmp_path}/nowhere' does not exist (data.download=false): "
                       "point it at a folder that holds <root>/MNIST/raw or set "
                       "data.download=true")


def test_root_without_mnist_names_the_files(make_cfg, tmp_path):
    (tmp_path / "empty").mkdir()
    message = train_error(make_cfg, tmp_path, f"data.root={tmp_path / 'empty'}")
    assert "no MNIST in" in message and "train-images-idx3-ubyte" in message


@pytest.mark.parametrize("damage", ["truncate", "bad_magic"])
def test_corrupt_idx_file(make_cfg, tmp_path, damage):
    root = make_dataset(tmp_path / "d")
    f = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x07\x07" + data[2:])
    damaged = f.read_bytes()
    (tmp_path / "run").mkdir()
    message = train_error(make_cfg, tmp_path / "run", f"data.root={root}")
    assert str(f) in message and "not a readable IDX file" in message
    assert f.read_bytes() == damaged  # the input file is left as it was


def test_data_error_on_the_command_line(tmp_path):
    root = make_dataset(tmp_path / "d")
    f = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    f.write_bytes(f.read_bytes()[:100])
    line = one_line_error(cli(tmp_path, *small_overrides(str(root))))
    assert line.startswith(f"error: {f}") and "not a readable IDX file" in line
