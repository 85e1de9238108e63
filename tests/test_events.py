"""snn_sweep.events: tiny N-MNIST, DVS Gesture and SHD files (tests/event_files.py) read through
Tonic and through load_splits; frames equal Tonic's transforms; the frame cache."""
import itertools
import os
import threading

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from tonic.io import read_mnist_file
from tonic.transforms import Denoise, Downsample, ToFrame

import snn_sweep.events as events
import snn_sweep.frames as frames_mod
from snn_sweep.config import DataConfig, FramesConfig
from snn_sweep.data import split_indices
from snn_sweep.errors import InputError
from event_files import (MAKERS, OVERFLOW, SHD_KEYS, events as make_events, make_nmnist,
                         write_nmnist_bin)

import tonic.datasets

CLASSES = {"NMNIST": 10, "DVSGesture": 11, "SHD": 20}
SIZES = {"NMNIST": (30, 10), "DVSGesture": (22, 11), "SHD": (40, 20)}  # train, test recordings
# Per dataset: a time window that crops some recordings and pads others at 8 frames, a
# downsampling, and a Denoise filter time that drops some events and keeps others.
WINDOW = {"NMNIST": 20_000.0, "DVSGesture": 100_000.0, "SHD": 60_000.0}
DOWN = {"NMNIST": 0.5, "DVSGesture": 0.25, "SHD": 0.5}
DENOISE = {"NMNIST": 20_000.0, "DVSGesture": 100_000.0, "SHD": None}
T = 8


@pytest.fixture(scope="module")
def root(event_root) -> str:
    return event_root


def make_cfg(kind, root, cache, val_size=4, n_frames=T, args=None, **frames):
    data = OmegaConf.merge(OmegaConf.structured(DataConfig), {
        "name": kind.lower(), "dataset": {"_target_": f"tonic.datasets.{kind}", **(args or {})},
        "root": root, "download": False, "val_size": val_size, "cache": str(cache),
        "shape": [1], "num_classes": CLASSES[kind], "frames": OmegaConf.structured(
            FramesConfig(**frames))})
    data.shape = events.frame_shape(data)
    return OmegaConf.create({"data": data, "trusted_modules": ["tonic"]})


def tonic_dataset(kind, root, train):
    """Tonic's own class, only without its check for the downloaded archives; the recordings
    in the order of their paths, as load_splits takes them."""
    cls = getattr(tonic.datasets, kind)
    ds = type(kind, (cls,), {"_check_exists": lambda self: True})(root, train=train)
    if kind != "SHD":
        order = np.argsort(ds.data)
        ds.data, ds.targets = [ds.data[i] for i in order], [ds.targets[i] for i in order]
    return ds


def tonic_frames(kind, ev, frames, n_frames):
    """Tonic's transforms: Denoise, Downsample, ToFrame; polarity off: channels summed."""
    c, h, w = events.frame_shape(OmegaConf.create({
        "dataset": {"_target_": f"tonic.datasets.{kind}"}, "frames": frames}))
    if frames["denoise"] is not None:
        ev = Denoise(filter_time=frames["denoise"])(ev)
    ev = Downsample(spatial_factor=frames["downsample"])(ev)
    p = getattr(tonic.datasets, kind).sensor_size[2]
    if len(ev) == 0:
        return np.zeros((n_frames, c, h, w), np.int16)
    if frames["time_window"] is None:
        out = ToFrame(sensor_size=(w, h, p), n_time_bins=n_frames)(ev)
    else:
        t0, tw = ev["t"][0], frames["time_window"]
        out = ToFrame(sensor_size=(w, h, p), time_window=tw, include_incomplete=True,
                      start_time=t0, end_time=t0 + n_frames * tw)(ev)
        assert len(out) >= n_frames
        out = out[:n_frames]
    if c == 1 and p == 2:
        out = out.sum(1, keepdims=True)
    assert out.dtype != np.int16 or out.max() < np.iinfo(np.int16).max  # no int16 wrap here
    return out.reshape(n_frames, c, h, w).astype(np.int16)


def settings(kind):
    for tw, pol, down, dn in itertools.product((None, WINDOW[kind]), (True, False),
                                               (1.0, DOWN[kind]), (None, DENOISE[kind])):
        if dn is None or kind != "SHD":
            yield kind, dict(time_window=tw, polarity=pol, downsample=down, denoise=dn)


@pytest.mark.parametrize("kind,frames", [s for k in CLASSES for s in settings(k)])
def test_frames_equal_tonic(root, kind, frames):
    """Our conversion of every recording of both splits equals Tonic's transforms', bit for
    bit; the settings do something on these recordings (a crop, a pad, dropped events)."""
    fr = OmegaConf.create(frames)
    shape = events.frame_shape(OmegaConf.create({
        "dataset": {"_target_": f"tonic.datasets.{kind}"}, "frames": fr}))
    total = kept = cropped = padded = 0
    for train in (True, False):
        ds = tonic_dataset(kind, root, train)
        ours = events._recordings(ds, kind, root, train)
        for i, (x, y, p, t, label, _) in enumerate(ours):
            ev, target = ds[i]
            assert label == int(target)
            got = frames_mod.to_frames(x, y, p, t, shape, fr, T)
            want = tonic_frames(kind, ev, frames, T)
            assert got.dtype == np.int16 and got.shape == (T, *shape)
            assert np.array_equal(got, want), (kind, frames, train, i)
            total, kept = total + len(ev), kept + int(got.sum())
            if frames["time_window"] is not None:
                span = ev["t"][-1] - ev["t"][0]
                cropped += span >= T * frames["time_window"]
                padded += span < (T - 1) * frames["time_window"]
    if frames["denoise"] is not None:
        assert 0 < kept < total
    if frames["time_window"] is not None:
        assert cropped and padded


def test_readers_take_the_files(root):
    """Tonic reads the written files back as written: N-MNIST's overflow record, DVS
    Gesture's milliseconds, SHD's float16 seconds."""
    ev = make_events([1, 2, 3], [4, 5, 6], [10, OVERFLOW + 5, 2 ** 23 + OVERFLOW - 1], [0, 1, 1])
    path = os.path.join(root, "one.bin")
    write_nmnist_bin(path, ev, overflow_before=[1])
    back = read_mnist_file(path, dtype=tonic.datasets.NMNIST.dtype)
    assert os.path.getsize(path) == 4 * 5  # three events and the overflow record
    assert [back[k].tolist() for k in "xytp"] == [ev[k].tolist() for k in "xytp"]
    for kind, (n_train, n_test) in SIZES.items():
        for train, n in ((True, n_train), (False, n_test)):
            ds = tonic_dataset(kind, root, train)
            assert len(ds) == n
            assert sorted(set(int(ds[i][1]) for i in range(n))) == list(range(CLASSES[kind]))
    shd = tonic_dataset("SHD", root, True)
    assert [k.decode() for k in shd.classes] == SHD_KEYS
    dvs = tonic_dataset("DVSGesture", root, True)
    assert all(t % 1000 == 0 for t in dvs[0][0]["t"])


def test_frame_shape():
    def shape(kind, **frames):
        return events.frame_shape(OmegaConf.create({
            "dataset": {"_target_": f"tonic.datasets.{kind}"},
            "frames": OmegaConf.structured(FramesConfig(**frames))}))
    assert shape("NMNIST") == [2, 34, 34]
    assert shape("NMNIST", polarity=False, downsample=0.5) == [1, 17, 17]
    assert shape("DVSGesture", downsample=0.25) == [2, 32, 32]
    assert shape("SHD") == shape("SHD", polarity=False) == [1, 1, 700]
    assert shape("SHD", downsample=0.5) == [1, 1, 350]
    with pytest.raises(InputError, match=r"data.frames.denoise=.*SHD"):
        shape("SHD", denoise=1000.0)
    with pytest.raises(InputError, match=r"data.dataset._target_='torchvision.datasets.MNIST'"):
        events.frame_shape(OmegaConf.create({"dataset": {"_target_":
                                                         "torchvision.datasets.MNIST"}}))


@pytest.mark.parametrize("kind", list(CLASSES))
def test_load_splits(root, tmp_path, kind):
    """load_splits: the splits' sizes, labels and frames are Tonic's, train and val drawn by
    split_indices, train_subset a prefix; memory-mapped views of the cache files."""
    frames = dict(time_window=None, polarity=kind != "SHD", downsample=DOWN[kind],
                  denoise=DENOISE[kind])
    cfg = make_cfg(kind, root, tmp_path / "cache", **frames)
    s = events.load_splits(cfg, T)
    n_train, n_test = SIZES[kind]
    assert (len(s.train_x), len(s.val_x), len(s.test_x)) == (n_train - 4, 4, n_test)
    assert s.train_x.dtype == torch.int16 and s.train_y.dtype == torch.int64
    assert s.train_x.shape[1:] == (T, *cfg.data.shape) and s.num_classes == CLASSES[kind]
    train_idx, val_idx = split_indices(n_train, cfg.data)
    ds = tonic_dataset(kind, root, True)
    for x, y, idx in ((s.train_x, s.train_y, train_idx), (s.val_x, s.val_y, val_idx)):
        for row, i in enumerate(idx.tolist()):
            ev, target = ds[i]
            assert int(y[row]) == int(target)
            assert np.array_equal(x[row].numpy(), tonic_frames(kind, ev, frames, T))
    test = tonic_dataset(kind, root, False)
    assert s.test_y.tolist() == [int(test[i][1]) for i in range(n_test)]
    assert _is_mapped(s.train_x) and _is_mapped(s.test_x)
    cfg.data.train_subset = 5
    sub = events.load_splits(cfg, T)
    assert torch.equal(sub.train_x, s.train_x[:5]) and torch.equal(sub.val_x, s.val_x)


def _is_mapped(tensor) -> bool:
    """The tensor's memory lies in a memory-mapped .npy file (Linux: /proc/self/maps)."""
    if not os.path.exists("/proc/self/maps"):
        pytest.skip("no /proc/self/maps to find memory-mapped files in")
    address = tensor.data_ptr()
    with open("/proc/self/maps") as f:
        for line in f:
            lo, hi = (int(a, 16) for a in line.split()[0].split("-"))
            if lo <= address < hi:
                return ".npy" in line
    return False


def cache_files(folder):
    return sorted(f for f in os.listdir(folder)) if os.path.isdir(folder) else []


def test_cache_key_covers_every_setting(root, tmp_path):
    """Changing any frames setting, n_frames, the split, the dataset's arguments or the
    source files gives another cache file (and, where they change, other frames): a setting
    left out of the key would load the first run's file instead."""
    cache = tmp_path / "cache"
    base = dict(time_window=None, polarity=True, downsample=1.0, denoise=None)
    assert set(base) == {f.name for f in FramesConfig.__dataclass_fields__.values()}
    first = events.load_splits(make_cfg("NMNIST", root, cache, **base), T)
    seen = set(cache_files(cache))
    assert len(seen) == 6  # train, val, test: frames and labels
    variants = [dict(frames=dict(base, time_window=WINDOW["NMNIST"])),
                dict(frames=dict(base, polarity=False)),
                dict(frames=dict(base, downsample=DOWN["NMNIST"])),
                dict(frames=dict(base, denoise=DENOISE["NMNIST"])),
                dict(n_frames=5), dict(val_size=5), dict(split_seed=1),
                dict(args={"first_saccade_only": True})]
    for v in variants:
        cfg = make_cfg("NMNIST", root, cache, val_size=v.get("val_size", 4),
                       args=v.get("args"), **v.get("frames", base))
        cfg.data.split_seed = v.get("split_seed", 0)
        s = events.load_splits(cfg, v.get("n_frames", T))
        new = set(cache_files(cache)) - seen
        assert len(new) == (6 if "args" in v or "frames" in v or "n_frames" in v else 4), v
        seen |= new
        if s.test_x.shape == first.test_x.shape:  # the test set: no split settings in its key
            assert not torch.equal(s.test_x, first.test_x) or "val_size" in v or \
                "split_seed" in v, v
        else:
            assert "frames" in v or "n_frames" in v
    # the source: another file of the same name in the folder
    other = tmp_path / "other"
    make_nmnist(other, seed=1)
    events.load_splits(make_cfg("NMNIST", str(other), cache, **base), T)
    assert len(set(cache_files(cache)) - seen) == 6


def test_cache_read_back_without_tonic(root, tmp_path, monkeypatch):
    cfg = make_cfg("DVSGesture", root, tmp_path / "cache", downsample=0.25)
    first = events.load_splits(cfg, T)

    def no_read(*args, **kwargs):
        raise AssertionError("Tonic read the recordings again")

    monkeypatch.setattr(events, "_open", no_read)
    monkeypatch.setattr(events, "_recordings", no_read)
    again = events.load_splits(cfg, T)
    for name in ("train_x", "train_y", "val_x", "val_y", "test_x", "test_y"):
        assert torch.equal(getattr(first, name), getattr(again, name))


def test_cache_writes_are_atomic(root, tmp_path, monkeypatch):
    """A build killed halfway leaves no cache file and no temporary one; a stale temporary
    file and two builders at once leave a correct cache."""
    cache = tmp_path / "cache"
    cfg = make_cfg("NMNIST", root, cache)
    convert, calls = events.to_frames, []

    def dies(*args, **kwargs):
        calls.append(1)
        if len(calls) == 7:
            raise KeyboardInterrupt
        return convert(*args, **kwargs)

    monkeypatch.setattr(events, "to_frames", dies)
    with pytest.raises(KeyboardInterrupt):
        events.load_splits(cfg, T)
    assert cache_files(cache) == []
    monkeypatch.setattr(events, "to_frames", convert)
    want = events.load_splits(make_cfg("NMNIST", root, tmp_path / "reference"), T)
    names = cache_files(tmp_path / "reference")
    (cache / f".{names[0]}.stale.tmp").write_bytes(b"half a file")
    results, errors = [], []

    def build():
        try:
            results.append(events.load_splits(cfg, T))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and len(results) == 2
    assert [n for n in cache_files(cache) if not n.endswith(".stale.tmp")] == names
    for got in results + [events.load_splits(cfg, T)]:
        assert torch.equal(got.train_x, want.train_x) and torch.equal(got.test_y, want.test_y)


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


def test_missing_dataset(tmp_path):
    for kind in CLASSES:
        with pytest.raises(InputError) as e:
            events.load_splits(make_cfg(kind, str(tmp_path), tmp_path / "c"), T)
        folder = os.path.join(str(tmp_path), kind)
        message = one_line(e)
        assert folder in message and "data.download=true" in message
        assert "http" in message
    assert not os.path.exists(tmp_path / "c")


def test_partial_dataset(tmp_path):
    make_nmnist(tmp_path)
    for digit in range(5, 10):
        for f in os.listdir(tmp_path / "NMNIST" / "Train" / str(digit)):
            os.remove(tmp_path / "NMNIST" / "Train" / str(digit) / f)
    with pytest.raises(InputError, match=r"class\(es\) 5, 6, 7, 8, 9") as e:
        events.load_splits(make_cfg("NMNIST", str(tmp_path), tmp_path / "c"), T)
    assert os.path.join(str(tmp_path), "NMNIST") in one_line(e)
    make_nmnist(tmp_path)
    path = tmp_path / "NMNIST" / "Test" / "3" / "00003.bin"
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(InputError, match="truncated N-MNIST file") as e:
        events.load_splits(make_cfg("NMNIST", str(tmp_path), tmp_path / "c"), T)
    assert str(path) in one_line(e)
    MAKERS["SHD"](tmp_path)
    path = tmp_path / "SHD" / "shd_train.h5"
    path.write_bytes(path.read_bytes()[: os.path.getsize(path) // 2])
    with pytest.raises(InputError, match="not a readable SHD file") as e:
        events.load_splits(make_cfg("SHD", str(tmp_path), tmp_path / "c"), T)
    assert str(path) in one_line(e)


def test_download(tmp_path, monkeypatch):
    """data.download=true: Tonic's download (here faked, offline) fills the folder; a failed
    one is one line and leaves nothing behind."""
    def fails(self):
        os.makedirs(self.location_on_system, exist_ok=True)
        open(os.path.join(self.location_on_system, self.filename), "wb").close()
        raise OSError("no route to host")

    monkeypatch.setattr(tonic.datasets.NMNIST, "download", fails)
    cfg = make_cfg("NMNIST", str(tmp_path / "data"), tmp_path / "c")
    cfg.data.download = True
    with pytest.raises(InputError, match=r"could not download NMNIST .*no route to host") as e:
        events.load_splits(cfg, T)
    assert tonic.datasets.NMNIST.train_url in one_line(e)
    assert not os.path.exists(tmp_path / "data")

    def works(self):
        make_nmnist(os.path.dirname(self.location_on_system))

    monkeypatch.setattr(tonic.datasets.NMNIST, "download", works)
    s = events.load_splits(cfg, T)
    assert len(s.train_x) == SIZES["NMNIST"][0] - 4
    cfg.data.download = False
    assert torch.equal(events.load_splits(cfg, T).test_x, s.test_x)


def test_wrong_classes(root, tmp_path):
    cfg = make_cfg("SHD", root, tmp_path / "c")
    cfg.data.num_classes = 10
    with pytest.raises(InputError, match=r"data.num_classes=10: SHD in .* holds 20 classes"):
        events.load_splits(cfg, T)


def test_bad_events_and_clipping(tmp_path):
    """An event outside the sensor is one line naming its file; counts past the int16
    maximum clip there (Tonic's int16 frames would wrap to negative counts)."""
    from event_files import write_dvs_gesture
    MAKERS["DVSGesture"](tmp_path)
    ev = make_events([5, 130], [3, 4], [0, 1000], [0, 1])
    path = write_dvs_gesture(tmp_path, False, [ev], [0], users=[1])
    with pytest.raises(InputError, match=r"x is 130: outside the sensor") as e:
        events.load_splits(make_cfg("DVSGesture", str(tmp_path), tmp_path / "c"), T)
    assert str(path / "user01_fluorescent_led" / "0.npy") in one_line(e)
    n = 70_000
    frames = OmegaConf.structured(FramesConfig())
    out = frames_mod.to_frames(np.full(n, 3), np.full(n, 2), np.ones(n, np.int64),
                           np.arange(n) * 10, [2, 34, 34], frames, 2)
    assert out[0, 1, 2, 3] == out[1, 1, 2, 3] == np.iinfo(np.int16).max
    assert out.sum() == 2 * np.iinfo(np.int16).max


def test_learnable_recordings(tmp_path):
    """The synthetic set's recordings put most events on their label's band."""
    from event_files import learnable_recording, write_shd
    rng = np.random.default_rng(0)
    for sensor, axis, n in (((34, 34, 2), "y", 10), ((700, 1, 1), "x", 20)):
        for label in (0, n - 1):
            ev = learnable_recording(rng, sensor, label, n)
            band = (sensor[1] if axis == "y" else sensor[0]) // n
            assert np.mean(ev[axis] // band == label) > 0.7
    recs = [learnable_recording(rng, (700, 1, 1), k, 20) for k in range(20)]
    write_shd(tmp_path, True, recs, range(20))
    ds = tonic_dataset("SHD", str(tmp_path), True)
    assert [int(ds[k][1]) for k in range(20)] == list(range(20))
