"""Shared fixtures: tiny IDX datasets written here and read through torchvision's real loader,
and configs composed with Hydra's compose API, shrunk to run in seconds."""
import contextlib
import io
import logging
import os
import struct
import subprocess
import sys
import warnings
from pathlib import Path
from typing import List

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from snn_sweep.config import register_configs

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = str(ROOT / "snn_sweep" / "conf")
register_configs()


def write_idx(path: Path, array: np.ndarray) -> None:
    """IDX file: magic (0, 0, 0x08 = ubyte, ndim), big-endian dims, then the bytes."""
    with open(path, "wb") as f:
        f.write(struct.pack(">BBBB", 0, 0, 0x08, array.ndim))
        f.write(struct.pack(">" + "I" * array.ndim, *array.shape))
        f.write(array.astype(np.uint8).tobytes())


def synthetic_digits(n: int, seed: int):
    """Images whose class is learnable: class k lights a bar at row 2 + 2k, plus noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 10, n)
    x = (rng.random((n, 28, 28)) < 0.05) * rng.integers(0, 256, (n, 28, 28))
    for i, k in enumerate(y):
        x[i, 2 + 2 * k: 4 + 2 * k, 4:24] = rng.integers(180, 256, (2, 20))
    return x.astype(np.uint8), y.astype(np.uint8)


def make_dataset(root: Path, name: str = "MNIST", n_train: int = 400, n_test: int = 100) -> Path:
    raw = root / name / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        x, y = synthetic_digits(n, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", x)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", y)
    return root


@pytest.fixture(scope="session")
def data_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("data")
    make_dataset(root, "MNIST")
    make_dataset(root, "FashionMNIST")
    return str(root)


@pytest.fixture(scope="session")
def event_root(tmp_path_factory) -> str:
    """Tiny N-MNIST, DVS Gesture and SHD folders in Tonic's layout (tests/event_files.py)."""
    from event_files import MAKERS
    root = tmp_path_factory.mktemp("events")
    for make in MAKERS.values():
        make(root)
    return str(root)


# An event dataset's overrides for the tiny folders of event_root (their val split and shapes).
EVENTS = {"nmnist": ["data.val_size=10"], "dvs_gesture": ["data.val_size=6"],
          "shd": ["data.val_size=10"]}


CONV = ("cnn", "csnn", "cnn_bn", "csnn_bn")  # the built-in models with channels; the others hidden widths


def small_overrides(data_root: str, model: str = "snn") -> List[str]:
    """Shrinks a config of a built-in model to a run of a second or two on the tiny data."""
    size = "model.channels=[4,8]" if model in CONV else "model.hidden=[64]"
    return [f"data.root={data_root}", "data.download=false", "data.val_size=100",
            "data.batch_size=50", "data.eval_batch_size=100", "timesteps=4", size,
            "trainer.progress=false", "trainer.threads=1"]


def model_of(overrides: List[str]) -> str:
    """The built-in model a list of overrides selects (model=... or recipe=...)."""
    for o in overrides:
        for key in ("model=", "recipe="):
            if o.startswith(key):
                return o[len(key):].split("_")[0] if key == "recipe=" else o[len(key):]
    return "snn"


@pytest.fixture
def make_cfg(data_root):
    def _make(*overrides: str):
        base = [o for o in small_overrides(data_root, model_of(list(overrides)))
                if o.split("=")[0] not in {x.split("=")[0] for x in overrides}]
        with initialize_config_dir(config_dir=CONF_DIR):
            return compose("config", overrides=base + list(overrides))
    return _make


def plain_forward(model, x):
    """A SpikingNet computed as the snnTorch tutorials write it: every neuron called once per
    step, [B, C, H, W] layout, PyTorch's max pooling, autograd through all. A weight layer runs
    on all T x B rows at once (in a feed-forward net the same as step by step), so that its
    BatchNorm, if any, takes its statistics over them all, as the fast layers' does."""
    import torch
    import torch.nn.functional as F
    from torch import nn

    from snn_sweep.nn import Neurons, Synapses
    synapses = [m for m in model.modules() if isinstance(m, Synapses)]
    neurons = [m.neuron for m in model.modules() if isinstance(m, Neurons)]
    h = x
    for syn, neuron in zip(synapses, neurons):
        rows = h.flatten(0, 1)
        if isinstance(syn.layer, nn.Conv2d):
            rows = F.max_pool2d(syn.layer(rows), 2)
            if syn.norm is not None:
                rows = syn.norm(rows)
        else:
            rows = syn.layer(rows.flatten(1))
        cur = rows.view(*h.shape[:2], *rows.shape[1:])
        neuron.reset_mem()
        spk_rec, mem_rec = [], []
        for t in range(cur.shape[0]):
            out = neuron(cur[t])  # (spk, [syn...], mem)
            spk_rec.append(out[0])
            mem_rec.append(out[-1])
        h = torch.stack(spk_rec)
    return h, torch.stack(mem_rec)


def against_plain(model, readout, x, y):
    """(spikes, loss, parameter gradients) of the model and of plain_forward, in that order."""
    from snn_sweep.models import readout_loss
    results = []
    for forward in (model, lambda x: plain_forward(model, x)):
        model.zero_grad()
        spk, mem = forward(x)
        loss = readout_loss(readout, spk, mem, y)
        loss.backward()
        results.append((spk.detach(), loss.detach(), [p.grad.clone() for p in model.parameters()]))
    return results


def run_cli(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`python -m snn_sweep ARGS` in this process, as the subprocess would see it: its stdout and
    stderr (log lines, warnings, the one-line errors), its exit status. A subprocess spends ~8 s
    importing torch (and torch._dynamo, at the first optimizer) before it trains; the tests that
    need no process boundary (no kill, no second worker, no fresh install) run it here."""
    from hydra.core.global_hydra import GlobalHydra
    import torch

    from snn_sweep.__main__ import cli

    out, err = io.StringIO(), io.StringIO()
    saved = (sys.argv, os.getcwd(), os.environ.pop("HYDRA_FULL_ERROR", None),
             logging.root.handlers[:], logging.root.level, torch.get_num_threads())
    sys.argv = ["snn_sweep", *args]
    os.chdir(cwd)
    GlobalHydra.instance().clear()
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), \
                warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("default")  # Python's own filters, as a fresh process has them
            for quiet in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                          ResourceWarning):
                warnings.simplefilter("ignore", quiet)
            warnings.filterwarnings("default", category=DeprecationWarning, module="__main__")
            try:
                cli()
            except SystemExit as e:
                if isinstance(e.code, str):
                    print(e.code, file=sys.stderr)
                code = e.code if isinstance(e.code, int) else 1
        for w in caught:
            err.write(warnings.formatwarning(w.message, w.category, w.filename, w.lineno))
    finally:
        GlobalHydra.instance().clear()
        sys.argv, cwd_before, full_error, logging.root.handlers[:], level, threads = saved
        logging.root.setLevel(level)
        os.chdir(cwd_before)
        if full_error is not None:
            os.environ["HYDRA_FULL_ERROR"] = full_error
        torch.set_num_threads(threads)
    return subprocess.CompletedProcess(["snn_sweep", *args], code, out.getvalue(), err.getvalue())
