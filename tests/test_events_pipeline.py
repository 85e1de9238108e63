"""Event data through the whole pipeline: sweeps over frame settings trained and aggregated,
each served its own frames; a conv SNN learning digits recorded as N-MNIST was (a camera
moving over a static image); the one-line error of a missing dataset."""
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from omegaconf import OmegaConf

from conftest import run_cli, synthetic_digits
from event_files import events, write_nmnist
from snn_sweep.aggregate import main as aggregate
from snn_sweep.events import load_splits
from snn_sweep.config import frame_count

TINY = ["data.download=false", "trainer.progress=false", "trainer.threads=1",
        "data.batch_size=20", "trainer.epochs=1"]


def sweep(*args: str):
    r = run_cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


def jobs(out: Path):
    return [json.loads(p.read_text()) for p in sorted(out.glob("*/result.json"))]


def test_grid_over_frame_settings_serves_each_its_own_frames(event_root, tmp_path):
    """Two frame settings in one sweep: two caches, two completed jobs, one table; the frames
    each job was served are those converted afresh for its settings, and differ."""
    out, cache = tmp_path / "sweep", tmp_path / "cache"
    sweep("recipe=nmnist", f"data.root={event_root}", f"data.cache={cache}", "data.val_size=12",
          "model.channels=[4,8]", "timesteps=4", *TINY, "-m",
          "data.frames.time_window=null,20000", f"hydra.sweep.dir={out}")
    done = jobs(out)
    assert [r["status"] for r in done] == ["completed"] * 2
    assert len(list(cache.glob("NMNIST-train-*.npy"))) == 4  # frames and labels, per setting
    served = []
    for r in done:
        cfg = OmegaConf.create(r["config"])
        mine = load_splits(cfg, frame_count(cfg))  # from the sweep's cache
        cfg.data.cache = str(tmp_path / f"fresh{len(served)}")
        fresh = load_splits(cfg, frame_count(cfg))  # converted again from the recordings
        for split in ("train_x", "val_x", "test_x"):
            assert np.array_equal(getattr(mine, split).numpy(), getattr(fresh, split).numpy())
        served.append(mine.train_x.numpy())
    assert not np.array_equal(*served)
    aggregate([str(out)])
    res = pd.read_csv(out / "results.csv")
    assert len(res) == 2 and set(res["dataset"]) == {"nmnist"} and set(res["encoder"]) == {"frames"}


def test_shd_mlp_with_and_without_recurrence_and_its_ann(event_root, tmp_path):
    """SHD's spike trains through the LIF MLP, its recurrent variant (snntorch.RLeaky) and the
    ANN twin (the frames summed over time), one sweep, aggregated."""
    out = tmp_path / "shd"
    sweep("recipe=shd", f"data.root={event_root}", f"data.cache={tmp_path / 'cache'}",
          "data.val_size=8", "timesteps=6", "model.hidden=[16]", *TINY, "-m",
          "model=snn,ann", "neuron=leaky,rleaky", f"hydra.sweep.dir={out}")
    done = jobs(out)
    assert sorted((r["model"], r["neuron"], r["status"]) for r in done) == [
        ("ann", None, "completed"), ("ann", None, "duplicate"),  # the neuron an ANN ignores
        ("snn", "leaky", "completed"), ("snn", "rleaky", "completed")]
    aggregate([str(out)])
    assert len(pd.read_csv(out / "results.csv")) == 4


def saccades(image: np.ndarray, rng, threshold: float = 0.3) -> np.ndarray:
    """A static image as an event camera on a moving platform records it (N-MNIST's three
    saccades): the image on a 34x34 sensor shifted one pixel every 10 ms along a triangle,
    an ON (OFF) event where a pixel's intensity rises (falls) by more than threshold."""
    path = [(0, 0)] + [(i, i) for i in range(1, 4)] + [(3 - i, 3) for i in range(1, 4)] \
        + [(0, 3 - i) for i in range(1, 4)]
    frames = []
    for dy, dx in path:
        canvas = np.zeros((34, 34))
        canvas[1 + dy:29 + dy, 1 + dx:29 + dx] = image / 255.0
        frames.append(canvas)
    recs = []
    for k in range(1, len(frames)):
        change = frames[k] - frames[k - 1]
        for p, mask in ((1, change > threshold), (0, change < -threshold)):
            y, x = np.nonzero(mask)
            t = k * 10_000 + rng.integers(0, 10_000, len(x))
            recs.append(events(x, y, t, p))
    ev = np.concatenate(recs)
    return ev[np.argsort(ev["t"], kind="stable")]


def test_a_conv_snn_learns_digits_recorded_by_a_moving_camera(tmp_path):
    """Synthetic digits (a class's bar at its own row) recorded as N-MNIST was, written in its
    file format, read through Tonic: the conv SNN on 8 frames learns them."""
    rng = np.random.default_rng(0)
    for train, (n, seed) in ((True, (600, 0)), (False, (200, 1))):
        x, y = synthetic_digits(n, seed)
        write_nmnist(tmp_path, train, [saccades(img, rng) for img in x], y)
    out = tmp_path / "run"
    sweep("recipe=nmnist", f"data.root={tmp_path}", "data.val_size=100", "timesteps=8",
          "model.channels=[8,16]", "model.hidden=[]", *TINY, "data.batch_size=25",
          "trainer.epochs=3", f"hydra.run.dir={out}")
    r = json.loads((out / "result.json").read_text())
    assert r["status"] == "completed" and r["val_acc"] >= 0.9 and r["test_acc"] >= 0.9, r


@pytest.mark.parametrize("dataset,folder", [("nmnist", "NMNIST"), ("dvs_gesture", "DVSGesture"),
                                            ("shd", "SHD")])
def test_a_missing_event_dataset_is_one_line(tmp_path, dataset, folder):
    r = run_cli(f"dataset={dataset}", "encoder=frames", f"data.root={tmp_path}",
                "data.download=false", f"hydra.run.dir={tmp_path / 'run'}")
    err = r.stderr.strip().splitlines()
    assert r.returncode == 1 and len(err) == 1 and err[0].startswith("error: "), r.stderr
    assert str(tmp_path / folder) in err[0] and "data.download=true" in err[0]
    assert "Traceback" not in r.stderr
