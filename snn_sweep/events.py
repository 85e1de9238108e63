"""Event data (Tonic's N-MNIST, DVS Gesture, SHD) as frames, converted once, cached on disk.

Tonic reads the recordings (<data.root>/<Class>/, Tonic's layout); frames.py turns each into
frames, int16 counts [T, C, H, W] (frame_shape). Each split's frames are written once to
<data.cache>/<Class>-<split>-<hash>.npy (+ .labels.npy), the hash over all they depend on, and
read back memory-mapped: the Splits are views of those files.
"""
import hashlib
import json
import os
import re
import tempfile
from types import SimpleNamespace
from typing import Dict, List, Tuple

import numpy as np
import torch
from omegaconf import OmegaConf

from .build import build, spec_of
from .data import Splits, remove_new, split_indices
from .errors import InputError
from .frames import to_frames

CACHE_VERSION = 1  # bump when the frames' definition or the files' format changes
# Where Tonic's reader looks under <root>/<Class>/: each split's (train, test) folder, its
# files' extension, their relative paths (the label: the pattern's group); or each split's file.
LAYOUT = {
    "NMNIST": (("Train", "Test"), ".bin", r"(\d)/[^/]+\.bin", "<digit>/*.bin, digits 0-9"),
    "DVSGesture": (("ibmGestureTrain", "ibmGestureTest"), ".npy", r"user\d+_[^/]+/(\d+)\.npy",
                   "user<NN>_<lighting>/<label>.npy, labels 0-10"),
    "SHD": (("shd_train.h5", "shd_test.h5"), None, None, None),
}


class _Missing(Exception):
    """The split's files are absent or partial (a download may bring them)."""


def _kind(data_cfg) -> str:
    target = str(OmegaConf.select(data_cfg, "dataset._target_"))
    name = target.rsplit(".", 1)[-1]
    if not target.startswith("tonic.datasets.") or name not in LAYOUT:
        raise InputError(f"data.dataset._target_={target!r}: event data (data.frames set) are "
                         "read by tonic.datasets.NMNIST, tonic.datasets.DVSGesture or "
                         "tonic.datasets.SHD")
    return name


def frame_shape(data_cfg) -> List[int]:
    """One frame's [C, H, W] for data.dataset and data.frames: C 2 with polarity on a
    two-polarity sensor, else 1; H, W the sensor's after Downsample (SHD: [1, 1, 700])."""
    kind = _kind(data_cfg)
    frames = data_cfg.frames
    if kind == "SHD" and frames.denoise is not None:
        raise InputError(f"data.frames.denoise={frames.denoise} is not allowed with SHD: "
                         "Tonic's Denoise needs events with x and y; set it to null")
    try:
        import tonic.datasets
    except ImportError:  # an optional dependency
        raise InputError("event data need Tonic: pip install 'snn-sweep[events]'") from None
    w, h, p = getattr(tonic.datasets, kind).sensor_size
    f = float(frames.downsample)
    # Downsample truncates x * f: the largest coordinate + 1 is the new size
    return [2 if frames.polarity and p == 2 else 1, int((h - 1) * f) + 1, int((w - 1) * f) + 1]


def _url(cls, train: bool) -> str:
    split = "train" if train else "test"
    return getattr(cls, f"{split}_url", None) or cls.base_url + getattr(cls, f"{split}_zip")


def _survey(kind: str, cls, root: str, train: bool) -> Tuple[List, int]:
    """(the split's files as sorted (relative path, size), the number of classes). _Missing
    when the files are absent or partial, InputError when malformed."""
    names, ext, pattern, expect = LAYOUT[kind]
    where = os.path.join(root, kind, names[not train])
    if ext is None:
        if not os.path.isfile(where):
            raise _Missing(f"no {where}")
        try:
            import h5py
            with h5py.File(where, "r") as f:
                labels, n_classes = f["labels"][:], len(f["extra/keys"])
                if not len(f["spikes/times"]) == len(f["spikes/units"]) == len(labels):
                    raise ValueError("spikes/times, spikes/units and labels differ in length")
        except Exception as e:
            raise InputError(f"{where}: not a readable SHD file (truncated or corrupt?): "
                             f"{_reason(e)}") from None
        files, found = [(names[not train], os.path.getsize(where))], set(labels.tolist())
    else:
        folder = where
        if not os.path.isdir(folder):
            raise _Missing(f"no {folder}")
        files, found, n_classes = [], set(), len(cls.classes)
        for path, _, files_here in os.walk(folder):
            for name in (n for n in files_here if n.endswith(ext)):
                rel = os.path.relpath(os.path.join(path, name), folder).replace(os.sep, "/")
                match, size = re.fullmatch(pattern, rel), os.path.getsize(f"{folder}/{rel}")
                if match is None:
                    raise InputError(f"{os.path.join(folder, rel)}: not where Tonic's {kind} "
                                     f"reader looks (expected {folder}/{expect})")
                if kind == "NMNIST" and size % 5:
                    raise InputError(f"{os.path.join(folder, rel)}: truncated N-MNIST file "
                                     f"({size} bytes, not a whole number of 5-byte events)")
                files.append((rel, size))
                found.add(int(match.group(1)))
    if found - set(range(n_classes)):
        raise InputError(f"{where}: labels {sorted(found - set(range(n_classes)))} outside "
                         f"0..{n_classes - 1}")
    missing = sorted(set(range(n_classes)) - found)
    if missing:
        raise _Missing(f"partial {where}: no recordings of class(es) "
                       f"{', '.join(map(str, missing))}")
    return sorted(files), n_classes


def _open(factory, kind: str, root: str, train: bool, present: bool):
    """Tonic's dataset object; present: without Tonic's own check (it wants the downloaded
    archives as well) and no download, else Tonic downloads the split. A failed download
    leaves nothing behind."""
    cls, location = factory.func, os.path.join(root, kind)
    made = [p for p in (root, location) if not present and not os.path.exists(p)]
    before = set(os.listdir(location)) if not present and not made else set()
    dataset = type(cls.__name__, (cls,), {"_check_exists": lambda self: present})
    try:
        return dataset(root, train=train, **factory.keywords)
    except BaseException as e:  # an interrupted download is undone as well
        if not present:
            remove_new(made, location, before)
        if not isinstance(e, Exception):
            raise
        if present:
            raise InputError(f"data.dataset ({cls.__module__}.{cls.__name__}): {_reason(e)}"
                             ) from None
        raise InputError(f"data.root={root!r}: could not download {kind} "
                         f"({'train' if train else 'test'}) from {_url(cls, train)} into "
                         f"{location} ({_reason(e)}); without internet, put the extracted "
                         "files there and set data.download=false") from None


def _present(factory, kind: str, root: str, train: bool, download: bool) -> Tuple[List, int]:
    """_survey of the split, downloaded first (data.download=true) if absent or partial."""
    cls, (names, _, _, what) = factory.func, LAYOUT[kind]
    expect = f" (expected {os.path.join(root, kind, names[not train])}/{what})" if what else ""
    try:
        return _survey(kind, cls, root, train)
    except _Missing as e:
        if not download:
            raise InputError(f"data.root={root!r}: {e}{expect}; set "
                             f"data.download=true (Tonic downloads {_url(cls, train)}) or "
                             "point data.root at a folder that holds them") from None
    _open(factory, kind, root, train, present=False)
    try:
        return _survey(kind, cls, root, train)
    except _Missing as e:
        raise InputError(f"data.root={root!r}: {e} after Tonic's download of "
                         f"{_url(cls, train)}{expect}") from None


def _recordings(ds, kind: str, root: str, train: bool):
    """(x, y, p, t, label, file) of each recording of ds, as Tonic reads them."""
    if kind == "SHD":  # the whole file at once (Tonic opens it per recording)
        import h5py
        path = os.path.join(root, kind, LAYOUT[kind][0][not train])
        with h5py.File(path, "r") as f:
            times, units, labels = f["spikes/times"][:], f["spikes/units"][:], f["labels"][:]
        for i in range(len(labels)):
            t = (times[i].astype(np.float64) * 1e6).astype(np.int64)  # HSD.__getitem__'s us
            x = units[i].astype(np.int64)
            yield x, np.zeros_like(x), np.ones_like(x), t, int(labels[i]), path
        return
    for i in range(len(ds)):
        try:
            ev, label = ds[i]  # Tonic's reader, with the node's options (first_saccade_only)
        except Exception as e:
            raise InputError(f"{ds.data[i]}: not a readable {kind} file: {_reason(e)}") from None
        yield (*(ev[k].astype(np.int64) for k in ("x", "y", "p", "t")), int(label), ds.data[i])


def _paths(cache: str, kind: str, split: str, key: Dict) -> Tuple[str, str]:
    digest = hashlib.sha256(json.dumps(dict(key, split=split), sort_keys=True,
                                       separators=(",", ":")).encode()).hexdigest()[:16]
    stem = os.path.join(cache, f"{kind}-{split}-{digest}")
    return stem + ".npy", stem + ".labels.npy"


def _load(paths: Dict[str, Tuple[str, str]], tail: Tuple[int, ...]):
    """{split: (frames, labels)} as tensors over the memory-mapped files; None when any is
    absent or not what the key promises (it is then built again)."""
    out = {}
    try:
        for split, (frames_path, labels_path) in paths.items():
            # copy-on-write: writable for torch.from_numpy, the file never written
            x, y = np.load(frames_path, mmap_mode="c"), np.load(labels_path)
            if x.dtype != np.int16 or x.shape[1:] != tail or len(x) != len(y):
                return None
            out[split] = torch.from_numpy(x), torch.from_numpy(y.astype(np.int64))
    except (OSError, ValueError):
        return None
    return out


def _temp(path: str) -> str:
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path),
                               prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    os.close(fd)
    return tmp


def _convert(factory, kind, root, train, data_cfg, paths, shape, n_frames) -> None:
    """Read the split through Tonic, write its frames (train: train and val rows in
    split_indices' order) to temporary files, then os.replace them into place."""
    ds = _open(factory, kind, root, train, present=True)
    if kind != "SHD":  # Tonic lists DVS Gesture's files in the file system's order: sort them
        ds.data, ds.targets = map(list, zip(*sorted(zip(ds.data, ds.targets))))
    n = len(ds)
    if train:  # the cache holds all training rows; train_subset is a prefix of them
        whole = SimpleNamespace(val_size=data_cfg.val_size, split_seed=data_cfg.split_seed,
                                train_subset=None)
        train_idx, val_idx = split_indices(n, whole)
        parts = {"train": train_idx.numpy(), "val": val_idx.numpy()}
    else:
        parts = {"test": np.arange(n)}
    dest = np.empty((n, 2), np.int64)  # each recording's (part, row)
    for j, idx in enumerate(parts.values()):
        dest[idx, 0], dest[idx, 1] = j, np.arange(len(idx))
    cache, temps = os.path.dirname(next(iter(paths.values()))[0]), {}
    try:
        try:
            os.makedirs(cache, exist_ok=True)
            for s in parts:
                temps[s] = _temp(paths[s][0]), _temp(paths[s][1])
        except OSError as e:
            raise InputError(f"data.cache={cache!r}: cannot write the frame cache there "
                             f"({_reason(e)}); set data.cache to a writable folder") from None
        xs = [np.lib.format.open_memmap(temps[s][0], mode="w+", dtype=np.int16,
                                        shape=(len(idx), n_frames, *shape))
              for s, idx in parts.items()]
        ys = [np.zeros(len(idx), np.int64) for idx in parts.values()]
        for i, (x, y, p, t, label, file) in enumerate(_recordings(ds, kind, root, train)):
            part, row = dest[i]
            try:
                xs[part][row] = to_frames(x, y, p, t, shape, data_cfg.frames, n_frames)
            except ValueError as e:
                raise InputError(f"{file}: recording {i}: {e}") from None
            ys[part][row] = label
        for s, frames, labels in zip(parts, xs, ys):
            frames.flush()
            with open(temps[s][1], "wb") as fh:
                np.save(fh, labels)
        for s in parts:  # labels first: a frames file in place has its labels
            os.replace(temps[s][1], paths[s][1])
            os.replace(temps[s][0], paths[s][0])
    finally:
        for tmp in (p for pair in temps.values() for p in pair if os.path.exists(p)):
            os.remove(tmp)


def load_splits(cfg, n_frames: int) -> Splits:
    """Train/val/test frames, int16 [N, n_frames, C, H, W], labels int64 [N] (the val split:
    split_indices), from the cache, built first where it is absent."""
    data_cfg = cfg.data
    if data_cfg.get("frames") is None:
        raise InputError("data.frames is null: event data need it (conf/dataset/nmnist.yaml)")
    kind, shape = _kind(data_cfg), frame_shape(data_cfg)
    factory = build(cfg, "data.dataset", partial=True, call=False)
    root = os.path.expanduser(data_cfg.root)
    cache = os.path.expanduser(data_cfg.cache or os.path.join(root, "frames_cache"))
    base = {"version": CACHE_VERSION, "dataset": spec_of(cfg, "data.dataset"),
            "frames": OmegaConf.to_container(data_cfg.frames, resolve=True),
            "n_frames": n_frames}
    tensors = {}
    for train, splits in ((True, ("train", "val")), (False, ("test",))):
        files, n_classes = _present(factory, kind, root, train, data_cfg.download)
        if train and data_cfg.num_classes != n_classes:  # data.shape: validate.py
            raise InputError(f"data.num_classes={data_cfg.num_classes}: {kind} in {root} "
                             f"holds {n_classes} classes; set that")
        split = dict(val_size=data_cfg.val_size, split_seed=data_cfg.split_seed) if train else {}
        key = dict(base, source=files, **split)
        paths = {s: _paths(cache, kind, s, key) for s in splits}
        loaded = _load(paths, (n_frames, *shape))
        if loaded is None:
            _convert(factory, kind, root, train, data_cfg, paths, shape, n_frames)
            loaded = _load(paths, (n_frames, *shape))
            if loaded is None:
                raise InputError(f"data.cache={cache!r}: the frame cache written there "
                                 "cannot be read back")
        tensors.update(loaded)
    (tx, ty), (vx, vy), (ex, ey) = (tensors[s] for s in ("train", "val", "test"))
    k = data_cfg.train_subset
    return Splits(tx[:k], ty[:k], vx, vy, ex, ey, n_classes)


def _reason(e: BaseException) -> str:
    return " ".join(f"{type(e).__name__}: {e}".split())[:200]  # one line
