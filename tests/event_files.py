"""Tiny event datasets in the real on-disk formats and folders that Tonic's readers take.

Each writer takes recordings (structured arrays with fields x, y, t (us), p; SHD: t, x) and
their labels, so a test can write random events or a learnable synthetic set:
- N-MNIST: <root>/NMNIST/Train|Test/<digit>/<n>.bin, 5-byte events (x, y, p | t[22:16],
  t[15:8], t[7:0]), an overflow record (y == 240) adding 2**13 us to the events after it;
- DVS Gesture: <root>/DVSGesture/ibmGestureTrain|ibmGestureTest/user<NN>_<lighting>/<label>.npy,
  an [N, 4] array of x, y, p, t in ms (Tonic's preprocessed cut);
- SHD: <root>/SHD/shd_train.h5|shd_test.h5 with spikes/times (ragged float16 seconds),
  spikes/units (ragged uint16 channels), labels, extra/keys, extra/speaker.
"""
from pathlib import Path
from typing import Iterable, Optional, Sequence

import h5py
import numpy as np

EVENT = np.dtype([("x", np.int64), ("y", np.int64), ("t", np.int64), ("p", np.int64)])
OVERFLOW = 2 ** 13  # what Tonic's read_mnist_file adds at each y == 240 record
SHD_KEYS = [f"{lang}-{d}" for lang in ("english", "german") for d in range(10)]


def events(x, y, t, p) -> np.ndarray:
    """A recording: a structured array over the given coordinates, times (us) and polarities."""
    ev = np.empty(len(t), EVENT)
    ev["x"], ev["y"], ev["t"], ev["p"] = x, y, t, p
    return ev


def write_nmnist_bin(path, ev: np.ndarray, overflow_before: Iterable[int] = ()) -> None:
    """One N-MNIST file; an overflow record before each event index in overflow_before (the
    events after it are stored 2**13 us earlier, as the camera's counter wrapped)."""
    marks = sorted(overflow_before)
    offset = OVERFLOW * np.searchsorted(np.asarray(marks, np.int64), np.arange(len(ev)),
                                        side="right")
    ts = ev["t"] - offset
    assert (ts >= 0).all() and (ts < 2 ** 23).all(), "timestamps do not fit 23 bits"
    rec = np.zeros((len(ev), 5), np.uint8)
    rec[:, 0], rec[:, 1] = ev["x"], ev["y"]
    rec[:, 2] = (ev["p"].astype(np.uint8) << 7) | (ts >> 16).astype(np.uint8)
    rec[:, 3], rec[:, 4] = (ts >> 8) & 255, ts & 255
    marker = np.array([0, 240, 0, 0, 0], np.uint8)
    rows = np.insert(rec, np.asarray(marks, np.int64), marker, axis=0) if marks else rec
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    rows.tofile(path)


def write_nmnist(root, train: bool, recordings: Sequence[np.ndarray], labels: Sequence[int],
                 overflow_before: Optional[Sequence[Iterable[int]]] = None) -> Path:
    folder = Path(root) / "NMNIST" / ("Train" if train else "Test")
    for i, (ev, label) in enumerate(zip(recordings, labels)):
        marks = overflow_before[i] if overflow_before is not None else ()
        write_nmnist_bin(folder / str(int(label)) / f"{i:05d}.bin", ev, marks)
    return folder


def write_dvs_gesture(root, train: bool, recordings: Sequence[np.ndarray],
                      labels: Sequence[int], users: Optional[Sequence[int]] = None,
                      lighting: str = "fluorescent_led", dtype=np.float64) -> Path:
    """A user's folder holds one file per label: recordings sharing (user, label) need
    different users (default: user i // 11 + 1 for recording i)."""
    folder = Path(root) / "DVSGesture" / ("ibmGestureTrain" if train else "ibmGestureTest")
    for i, (ev, label) in enumerate(zip(recordings, labels)):
        user = users[i] if users is not None else i // 11 + 1
        path = folder / f"user{user:02d}_{lighting}" / f"{int(label)}.npy"
        assert not path.exists(), f"{path}: one recording per user, lighting and label"
        assert (ev["t"] % 1000 == 0).all(), "DVS Gesture's files store whole milliseconds"
        path.parent.mkdir(parents=True, exist_ok=True)
        np.save(path, np.stack([ev["x"], ev["y"], ev["p"], ev["t"] // 1000], 1).astype(dtype))
    return folder


def write_shd(root, train: bool, recordings: Sequence[np.ndarray], labels: Sequence[int],
              keys: Sequence[str] = SHD_KEYS, speakers: Optional[Sequence[int]] = None,
              time_dtype=np.float16) -> Path:
    path = Path(root) / "SHD" / ("shd_train.h5" if train else "shd_test.h5")
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        times = f.create_dataset("spikes/times", (len(recordings),),
                                 dtype=h5py.vlen_dtype(np.dtype(time_dtype)))
        units = f.create_dataset("spikes/units", (len(recordings),),
                                 dtype=h5py.vlen_dtype(np.dtype(np.uint16)))
        for i, ev in enumerate(recordings):
            times[i] = (ev["t"] / 1e6).astype(time_dtype)
            units[i] = ev["x"].astype(np.uint16)
        f["labels"] = np.asarray(labels, np.uint8)
        f["extra/keys"] = np.array([k.encode() for k in keys])
        f["extra/speaker"] = np.asarray(speakers if speakers is not None
                                        else np.zeros(len(labels)), np.uint16)
    return path


def random_recording(rng, sensor, n_events: int, duration: int, ms: bool = False) -> np.ndarray:
    """n_events uniform events over a sensor (W, H, P) and duration (us), sorted by time, some
    of them in clusters (a Denoise keeps those, drops isolated ones)."""
    w, h, p = sensor
    t = np.sort(rng.integers(0, duration, n_events))
    if ms:
        t = t // 1000 * 1000
    x, y = rng.integers(0, w, n_events), rng.integers(0, h, n_events)
    half = n_events // 2  # the second half: neighbours of the first half's pixels
    x[half:] = np.clip(x[:n_events - half] + rng.integers(-1, 2, n_events - half), 0, w - 1)
    y[half:] = np.clip(y[:n_events - half] + rng.integers(-1, 2, n_events - half), 0, h - 1)
    order = rng.permutation(n_events)  # times stay sorted, pixels shuffled among them
    return events(x[order], y[order], t, rng.integers(0, p, n_events) if p > 1 else 1)


def learnable_recording(rng, sensor, label: int, n_classes: int, n_events: int = 300,
                        duration: int = 100_000) -> np.ndarray:
    """A recording whose class shows: most events on the label's band of rows (SHD: of
    channels), the rest uniform noise; for a synthetic set a network can learn."""
    w, h, p = sensor
    ev = random_recording(rng, sensor, n_events, duration)
    axis, size = ("y", h) if h > 1 else ("x", w)
    band = size // n_classes
    on = rng.random(n_events) < 0.8
    ev[axis][on] = label * band + rng.integers(0, max(band, 1), int(on.sum()))
    return ev


def make_nmnist(root, per_class=(3, 1), seed=0) -> None:
    """Random N-MNIST: per_class recordings of each digit (train, test), the first file of
    each split with an overflow record."""
    rng = np.random.default_rng(seed)
    for train, n in zip((True, False), per_class):
        labels = np.repeat(np.arange(10), n)
        recs = [random_recording(rng, (34, 34, 2), int(rng.integers(20, 300)),
                                 int(rng.integers(20_000, 300_000))) for _ in labels]
        marks = [[len(recs[0]) // 2] if recs[0]["t"][len(recs[0]) // 2] >= OVERFLOW else []]
        write_nmnist(root, train, recs, labels, marks + [[]] * (len(recs) - 1))


def make_dvs_gesture(root, per_class=(2, 1), seed=0) -> None:
    rng = np.random.default_rng(seed)
    for train, n in zip((True, False), per_class):
        labels = np.tile(np.arange(11), n)
        recs = [random_recording(rng, (128, 128, 2), int(rng.integers(50, 400)),
                                 int(rng.integers(200_000, 2_000_000)), ms=True) for _ in labels]
        write_dvs_gesture(root, train, recs, labels, users=[i // 11 + 1 + 10 * (not train)
                                                           for i in range(len(labels))])


def make_shd(root, per_class=(2, 1), seed=0) -> None:
    rng = np.random.default_rng(seed)
    for train, n in zip((True, False), per_class):
        labels = np.repeat(np.arange(20), n)
        recs = [random_recording(rng, (700, 1, 1), int(rng.integers(50, 400)),
                                 int(rng.integers(300_000, 1_000_000))) for _ in labels]
        write_shd(root, train, recs, labels)


MAKERS = {"NMNIST": make_nmnist, "DVSGesture": make_dvs_gesture, "SHD": make_shd}
