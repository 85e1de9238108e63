"""Bad input: one clear line naming the key or file, non-zero exit, no traceback."""
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import make_dataset, small_overrides

ROOT = Path(__file__).resolve().parents[1]


def cli(tmp_path, *overrides):
    cmd = [sys.executable, "-m", "snn_sweep", *overrides, f"hydra.run.dir={tmp_path}/run"]
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("override,expected", [
    ("timesteps=0", "timesteps=0 is not allowed: an integer >= 1"),
    ("timesteps=-3", "timesteps=-3 is not allowed"),
    ("neuron.beta=1.5", "neuron.beta=1.5 is not allowed: a number in [0, 1]"),
    ("neuron.beta=-0.1", "neuron.beta=-0.1 is not allowed"),
    ("optimizer.lr=0", "optimizer.lr=0 is not allowed: a number > 0"),
    ("optimizer.lr=-1e-3", "optimizer.lr=-0.001 is not allowed"),
    ("trainer.epochs=0", "trainer.epochs=0 is not allowed: an integer >= 1"),
    ("data.batch_size=0", "data.batch_size=0 is not allowed: an integer >= 1"),
    ("data.val_size=400", "data.val_size=400 is not allowed: an integer smaller than the 400 training images"),
    ("repeats=0", "repeats=0 is not allowed: an integer >= 1"),
    ("model.dropout=1", "model.dropout=1.0 is not allowed: a number in [0, 1)"),
    ("pareto_metric=energy", "pareto_metric='energy' is not allowed: null or one of "
                             "val_energy_pj_per_sample, val_spikes_per_sample, "
                             "val_synops_per_sample"),
])
def test_bad_value_is_one_line(data_root, tmp_path, override, expected):
    p = cli(tmp_path, *small_overrides(data_root), override)
    assert p.returncode != 0
    assert "Traceback" not in p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert lines == [f"error: {expected}"] or (len(lines) == 1 and expected in lines[0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_missing_gpu_is_one_line(data_root, tmp_path):
    p = cli(tmp_path, *small_overrides(data_root), "trainer.device=cuda")
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [
        "error: trainer.device='cuda': this machine has no cuda device(s); "
        "use trainer.device=auto or cpu"]
    assert not (tmp_path / "run" / "result.json").exists() or \
        '"failed"' in (tmp_path / "run" / "result.json").read_text()


@pytest.mark.parametrize("override,expected", [
    ("timesteps=2.5", ["timesteps", "could not be converted to Integer"]),
    ("model=foo", ["Could not find 'model/foo'", "ann", "csnn", "snn_single_step"]),
    ("encoder=morse", ["Could not find 'encoder/morse'", "latency", "delta"]),
    ("neuron.betta=0.5", ["Key 'betta' not in 'NeuronConfig'"]),
])
def test_composition_errors_name_key_and_options(data_root, tmp_path, override, expected):
    p = cli(tmp_path, *small_overrides(data_root), override)
    assert p.returncode != 0 and "Traceback" not in p.stderr
    for text in expected:
        assert text in p.stderr


def test_missing_root_without_download(data_root, tmp_path):
    args = [a for a in small_overrides(data_root) if not a.startswith("data.root")]
    p = cli(tmp_path, *args, f"data.root={tmp_path}/nowhere")
    assert p.returncode != 0 and "Traceback" not in p.stderr
    assert p.stderr.strip().splitlines() == [
        f"error: data.root='{tmp_path}/nowhere' does not exist (data.download=false): point it "
        "at a folder that holds <root>/MNIST/raw or set data.download=true"]


def test_root_without_mnist_names_the_files(tmp_path):
    (tmp_path / "empty").mkdir()
    p = cli(tmp_path, *small_overrides(str(tmp_path / "empty")))
    assert p.returncode != 0 and "Traceback" not in p.stderr
    [line] = p.stderr.strip().splitlines()
    assert "no MNIST in" in line and "train-images-idx3-ubyte" in line


@pytest.mark.parametrize("damage", ["truncate", "bad_magic"])
def test_corrupt_idx_file(tmp_path, damage):
    root = make_dataset(tmp_path / "d")
    f = root / "MNIST" / "raw" / "train-images-idx3-ubyte"
    data = f.read_bytes()
    f.write_bytes(data[: len(data) // 2] if damage == "truncate" else b"\x07\x07" + data[2:])
    p = cli(tmp_path, *small_overrides(str(root)))
    assert p.returncode != 0 and "Traceback" not in p.stderr
    [line] = p.stderr.strip().splitlines()
    assert str(f) in line and "not a readable IDX file" in line
    assert f.read_bytes()[:2] != b""  # the input file is left as it was
