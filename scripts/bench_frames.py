"""Events -> frames: our conversion against Tonic's transforms, and against a training epoch.

    .venv/bin/python scripts/bench_frames.py [--n 300] [--write docs/bench/frames.md]

N-MNIST-like recordings (34x34, 2 polarities, 4 000 events over 300 ms, half of them beside an
earlier event's pixel) go through snn_sweep.frames.to_frames and through Tonic's Compose of
Denoise, Downsample and ToFrame, in turns in this one process, for each frames setting below;
the outputs are checked equal. Then the built-in conv SNN (csnn, dataset=nmnist
encoder=frames timesteps=10) trains on those frames for a few batches: "convert / train" is
the time to convert a recording over the time to train on one, what converting costs against
one epoch (the cache converts once; every later epoch and trial reads the file). Reading the files is
left out: Tonic reads them in both.
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from tonic import transforms

from snn_sweep.build import build_model, build_optimizer, resolve
from snn_sweep.config import FramesConfig, register_configs
from snn_sweep.frames import to_frames
from snn_sweep.runner import Runner

CONF = str(Path(__file__).resolve().parents[1] / "snn_sweep" / "conf")
SENSOR, T = (34, 34, 2), 10
SETTINGS = {"bins": {}, "bins+denoise": {"denoise": 10_000.0},
            "window+denoise": {"time_window": 30_000.0, "denoise": 10_000.0}}
DTYPE = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])  # tonic's NMNIST


def recording(rng, n_events=4000, duration=300_000) -> np.ndarray:
    ev = np.empty(n_events, DTYPE)
    ev["t"] = np.sort(rng.integers(0, duration, n_events))
    ev["x"], ev["y"] = rng.integers(0, 34, n_events), rng.integers(0, 34, n_events)
    half = n_events // 2
    ev["x"][half:] = np.clip(ev["x"][:half] + rng.integers(-1, 2, half), 0, 33)
    ev["y"][half:] = np.clip(ev["y"][:half] + rng.integers(-1, 2, half), 0, 33)
    ev["p"] = rng.integers(0, 2, n_events)
    return ev


def tonic_frames(ev, frames) -> np.ndarray:
    steps = [transforms.Denoise(filter_time=frames.denoise)] if frames.denoise else []
    window = ({"n_time_bins": T} if frames.time_window is None else
              {"time_window": frames.time_window, "include_incomplete": True,
               "start_time": ev["t"][0], "end_time": ev["t"][0] + T * frames.time_window})
    out = transforms.Compose(steps + [transforms.ToFrame(SENSOR, **window)])(ev)
    return out[:T]


def ours(ev, frames) -> np.ndarray:
    return to_frames(ev["x"], ev["y"], ev["p"], ev["t"], [2, 34, 34], frames, T)


def per_recording(fn, recs, frames) -> float:
    t0 = time.perf_counter()
    for ev in recs:
        fn(ev, frames)
    return (time.perf_counter() - t0) / len(recs)


def train_time_per_sample(x: torch.Tensor, batches: int = 8, batch: int = 128) -> float:
    register_configs()
    with initialize_config_dir(config_dir=CONF):
        cfg = resolve(compose("config", overrides=["dataset=nmnist", "encoder=frames",
                                                   "model=csnn", f"timesteps={T}"]))
    model = build_model(cfg)
    runner, opt = Runner(cfg, model, torch.device("cpu")), build_optimizer(cfg, model.parameters())
    y = torch.randint(0, 10, (batch,))
    rows = [torch.randint(0, len(x), (batch,)) for _ in range(batches + 1)]
    runner.train_step(opt, None, x[rows[0]], y, "warm-up")
    t0 = time.perf_counter()
    for i in range(batches):
        runner.train_step(opt, None, x[rows[i + 1]], y, f"batch {i}")
    return (time.perf_counter() - t0) / (batches * batch)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=300, help="recordings per setting")
    p.add_argument("--write", type=Path)
    a = p.parse_args(argv)
    rng = np.random.default_rng(0)
    recs = [recording(rng) for _ in range(a.n)]
    rows = []
    for name, values in SETTINGS.items():
        frames = OmegaConf.structured(FramesConfig(**values))
        for ev in recs[:20]:
            assert np.array_equal(ours(ev, frames), tonic_frames(ev, frames)), name
        ours(recs[0], frames)  # Numba compiles before the clock starts
        t_tonic, t_ours = zip(*[(per_recording(tonic_frames, recs, frames),
                                 per_recording(ours, recs, frames)) for _ in range(3)])
        rows.append((name, min(t_tonic), min(t_ours)))
    x = torch.from_numpy(np.stack([ours(ev, OmegaConf.structured(FramesConfig()))
                                   for ev in recs[:256]]))
    train = train_time_per_sample(x)
    lines = [f"Command: `python scripts/bench_frames.py --n {a.n}`; {a.n} N-MNIST-like "
             f"recordings of 4 000 events, T={T} frames, best of 3; outputs equal to Tonic's.",
             "", "| frames | tonic us/recording | ours us/recording | ours faster x | "
             "convert / train (csnn, per sample) |", "|---|---:|---:|---:|---:|"]
    for name, t_tonic, t_ours in rows:
        lines.append(f"| {name} | {t_tonic * 1e6:.0f} | {t_ours * 1e6:.0f} | "
                     f"{t_tonic / t_ours:.1f} | {t_ours / train:.3f} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.write:
        a.write.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
