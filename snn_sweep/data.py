"""Datasets as tensors: torchvision reads the IDX files once, batches are index slices (event data: events.py).

Avoids a per-sample PIL transform every epoch; images are float32 in [0, 1], shape [N, C, H, W].
The dataset class is data.dataset's `_target_` (the `dataset` group: torchvision's MNIST,
FashionMNIST), called (root=, train=, download=); its instance's .data (uint8 [N, H, W]),
.targets and .classes are what is read.
"""
import os
import shutil
from dataclasses import dataclass, fields
from typing import List, Set, Tuple

import torch

from .build import build
from .config import frame_count
from .errors import InputError


@dataclass
class Splits:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    num_classes: int

    def to(self, device: torch.device) -> "Splits":
        """The splits on device, moved once (on the CPU: these tensors themselves), so that on a
        GPU a batch is an index slice of device tensors, with no host-to-device copy per batch."""
        tensors = {f.name: getattr(self, f.name).to(device) for f in fields(self)
                   if f.name != "num_classes"}
        return Splits(**tensors, num_classes=self.num_classes)


def _read(factory, root: str, train: bool, download: bool):
    cls = factory.func
    raw = os.path.join(root, cls.__name__, "raw")
    files = " / ".join(os.path.join(raw, f"{'train' if train else 't10k'}-{kind}-ubyte")
                       for kind in ("images-idx3", "labels-idx1"))
    # What a download would add, so that a failed one can be undone.
    made = [p for p in (root, os.path.dirname(raw), raw) if download and not os.path.exists(p)]
    before = set(os.listdir(raw)) if download and not made else set()
    try:
        ds = factory(root=root, train=train, download=download)
    except Exception as e:  # torchvision raises assorted errors on a missing or corrupt file
        reason = " ".join(f"{type(e).__name__}: {e}".split())  # keep the message on one line
        resources = getattr(cls, "resources", [])
        present = [os.path.exists(os.path.join(raw, os.path.splitext(k)[0])) for k, _ in resources]
        if download and not all(present):
            remove_new(made, raw, before)
            raise InputError(f"data.root={root!r}: could not download {cls.__name__} into {raw} "
                             f"({reason[:200]}); without internet, point data.root at a folder "
                             "that holds the IDX files and set data.download=false") from None
        if not all(present):
            names = ", ".join(os.path.splitext(k)[0] for k, _ in resources)
            raise InputError(f"data.root={root!r}: no {cls.__name__} in {raw} (expected {names}); "
                             "set data.download=true or point data.root at a folder that "
                             "holds them") from None
        raise InputError(f"{files}: not a readable IDX file (truncated or corrupt?): {reason}"
                         ) from None
    x, y = ds.data, ds.targets
    if x.dim() != 3 or x.dtype != torch.uint8 or len(x) != len(y) or len(x) == 0:
        raise InputError(f"{files}: malformed IDX data: "
                         f"{tuple(x.shape)} images, {tuple(y.shape)} labels")
    if int(y.max()) >= len(ds.classes) or int(y.min()) < 0:
        raise InputError(f"{files}: labels outside 0..{len(ds.classes) - 1}")
    return x, y, len(ds.classes)


def remove_new(made: List[str], raw: str, before: Set[str]) -> None:
    """Undo a failed download: the folders it created, else the files it added to raw."""
    if made:
        shutil.rmtree(made[0], ignore_errors=True)
        return
    for name in set(os.listdir(raw)) - before if os.path.isdir(raw) else ():
        path = os.path.join(raw, name)
        shutil.rmtree(path, ignore_errors=True) if os.path.isdir(path) else os.remove(path)


def split_indices(n: int, data_cfg) -> Tuple[torch.Tensor, torch.Tensor]:
    """(train, val) indices into the n training samples: data.val_size of them held out,
    drawn with data.split_seed, not the run's seed, so every run of a sweep is selected on the
    same samples; the rest capped at data.train_subset."""
    if data_cfg.val_size >= n:
        raise InputError(f"data.val_size={data_cfg.val_size} is not allowed: an integer "
                         f"smaller than the {n} training samples")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(data_cfg.split_seed))
    val_idx, train_idx = perm[: data_cfg.val_size], perm[data_cfg.val_size:]
    if data_cfg.train_subset is not None:
        train_idx = train_idx[: data_cfg.train_subset]
    return train_idx, val_idx


def load_splits(cfg) -> Splits:
    """Train/val/test tensors (the val split: split_indices); event data's from events.py."""
    data_cfg = cfg.data
    if data_cfg.get("frames") is not None:
        from . import events  # Tonic is an optional dependency
        return events.load_splits(cfg, frame_count(cfg))
    factory = build(cfg, "data.dataset", partial=True, call=False)
    if not data_cfg.download and not os.path.isdir(data_cfg.root):
        raise InputError(f"data.root={data_cfg.root!r} does not exist (data.download=false): "
                         "point it at a folder that holds <root>/"
                         f"{factory.func.__name__}/raw or set data.download=true")
    tx, ty, n_classes = _read(factory, data_cfg.root, True, data_cfg.download)
    ex, ey, _ = _read(factory, data_cfg.root, False, data_cfg.download)
    shape = [1, *tx.shape[1:]]
    if list(data_cfg.shape) != shape or data_cfg.num_classes != n_classes:
        raise InputError(f"data.shape={list(data_cfg.shape)}, data.num_classes="
                         f"{data_cfg.num_classes}: {factory.func.__name__} in {data_cfg.root} "
                         f"holds {shape} images of {n_classes} classes; set those")
    train_idx, val_idx = split_indices(len(tx), data_cfg)

    def f(x):  # uint8 [N, 28, 28] -> float [N, 1, 28, 28] in [0, 1]
        return x.unsqueeze(1).float().div_(255.0)

    return Splits(f(tx[train_idx]), ty[train_idx], f(tx[val_idx]), ty[val_idx], f(ex), ey,
                  n_classes)
