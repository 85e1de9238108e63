"""augment=affine: torchvision's geometry, a transform per sample, seeded with the run, training
batches only, resumed exactly; bad values refused in one line."""
import csv
import functools
import json
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as TF

import snn_sweep.augment as augment
from snn_sweep.augment import affine, warp
from snn_sweep.config import AffineAugmentConfig
from snn_sweep.errors import InputError
from snn_sweep.data import load_splits
from snn_sweep.train import train
from test_config import repeated, schema_defaults

CONF = Path(__file__).resolve().parents[1] / "snn_sweep" / "conf"


def blob(h: int, w: int, cy: float, cx: float) -> torch.Tensor:
    """A Gaussian spot centred at pixel (cy, cx), [1, 1, h, w]."""
    y = torch.arange(h).view(-1, 1).float()
    x = torch.arange(w).view(1, -1).float()
    return torch.exp(-((y - cy) ** 2 + (x - cx) ** 2) / 8).view(1, 1, h, w)


def centre_of_mass(img: torch.Tensor):
    """(x, y) in pixels of a [1, 1, h, w] image."""
    h, w = img.shape[-2:]
    m = img[0, 0]
    return (float((m.sum(0) * torch.arange(w)).sum() / m.sum()),
            float((m.sum(1) * torch.arange(h)).sum() / m.sum()))


@pytest.mark.parametrize("h,w", [(28, 28), (24, 32)])
@pytest.mark.parametrize("angle,shift,zoom", [(30.0, (3, -2), 0.9), (-17.0, (0, 5), 1.1),
                                              (90.0, (0, 0), 1.0)])
def test_warp_is_torchvisions_affine(h, w, angle, shift, zoom):
    img = blob(h, w, h / 2 - 0.5, w / 2 + 5.5) + 0.5 * blob(h, w, h / 2 - 6.5, w / 2 - 0.5)
    ref = TF.affine(img, angle=angle, translate=list(shift), scale=zoom, shear=[0.0, 0.0],
                    interpolation=InterpolationMode.BILINEAR)
    out = warp(img, torch.tensor([angle]), torch.tensor([shift]), torch.tensor([zoom]))
    # The same inverse map and the same bilinear sampling: equal but for float rounding.
    torch.testing.assert_close(out, ref, atol=1e-4, rtol=0)
    assert centre_of_mass(out) == pytest.approx(centre_of_mass(ref), abs=0.01)


def test_rotation_and_shift_directions():
    """Positive angles turn clockwise as displayed (y down), as torchvision's affine does
    (its rotate turns the other way); positive shifts move right and down."""
    img = blob(28, 28, 13.5, 19.5)  # 6 px right of the centre (13.5, 13.5)
    x, y = centre_of_mass(warp(img, torch.tensor([90.0]), torch.zeros(1, 2), torch.ones(1)))
    assert x == pytest.approx(13.5, abs=0.05) and y == pytest.approx(19.5, abs=0.05)  # below
    x, y = centre_of_mass(warp(img, torch.zeros(1), torch.tensor([[3.0, 2.0]]), torch.ones(1)))
    assert x == pytest.approx(22.5, abs=0.05) and y == pytest.approx(15.5, abs=0.05)


def test_each_sample_its_own_transform_reproducible_by_seed():
    x = blob(28, 28, 10.5, 16.5).expand(8, 1, 28, 28)
    rng = torch.get_rng_state()
    out = [affine(x, torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert torch.equal(torch.get_rng_state(), rng)  # draws from its own generator only
    assert torch.equal(out[0], out[1]) and not torch.equal(out[0], out[2])
    flat = out[0].flatten(1)
    assert all(not torch.allclose(flat[i], flat[j], atol=1e-3)
               for i in range(8) for j in range(i + 1, 8))


def test_shape_dtype_range_and_identity():
    x = torch.rand(6, 3, 20, 24)
    out = affine(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(
        affine(x, torch.Generator(), degrees=0.0, translate=0.0, scale=(1.0, 1.0)), x,
        atol=1e-5, rtol=0)


def test_shifts_are_whole_pixels_within_translate():
    """Without rotation and scaling every sample is the image shifted by whole pixels, at most
    translate * W across and translate * H down (round(0.15 * 28) = 4)."""
    x = torch.rand(16, 1, 28, 28)
    out = affine(x, torch.Generator().manual_seed(0), degrees=0.0, scale=(1.0, 1.0))
    pad = torch.nn.functional.pad(x, (4, 4, 4, 4))
    seen = set()
    for i in range(len(x)):
        found = [(dx, dy) for dx in range(-4, 5) for dy in range(-4, 5)
                 if torch.allclose(out[i], pad[i, :, 4 - dy:32 - dy, 4 - dx:32 - dx], atol=1e-5)]
        assert len(found) == 1, i
        seen.add(found[0])
    assert len(seen) > 8


def test_default_is_none_and_yaml_keeps_the_schema_defaults(make_cfg):
    assert make_cfg().augment is None and make_cfg("augment=none").augment is None
    cfg = make_cfg("augment=affine")
    assert cfg.augment.name == "affine" and list(cfg.augment.scale) == [0.85, 1.11]
    assert not repeated(OmegaConf.to_container(OmegaConf.load(CONF / "augment" / "affine.yaml")),
                        schema_defaults(AffineAugmentConfig))
    mild = make_cfg("augment=affine_mild").augment
    assert (mild.name, mild.degrees, mild.translate, list(mild.scale)) == \
        ("affine_mild", 10.0, 0.1, [0.9, 1.1])
    reference = (CONF.parents[1] / "docs" / "configuration.md").read_text()
    assert "| `augment` | `none`" in reference and "`affine`" in reference \
        and "`affine_mild`" in reference


def spy_on_affine(monkeypatch):
    """Every batch the run's augmentation sees (a copy)."""
    seen = []
    real = augment.affine

    @functools.wraps(real)  # its name, so that build.py's whitelist admits it
    def spy(x, generator=None, **kwargs):
        seen.append(x.clone())
        return real(x, generator, **kwargs)
    monkeypatch.setattr(augment, "affine", spy)
    return seen


def test_only_training_batches_are_augmented(make_cfg, tmp_path, monkeypatch):
    seen = spy_on_affine(monkeypatch)
    cfg = make_cfg("augment=affine", "trainer.epochs=2")
    train(cfg, str(tmp_path))
    assert json.loads((tmp_path / "result.json").read_text())["augment"] == "affine"
    probe, batches = seen[0], seen[1:]
    assert probe.shape[0] == 2 and not probe.any()  # build.resolve's check on blank images
    data = load_splits(cfg)
    train_images = {img.numpy().tobytes() for img in data.train_x}
    n, bs = len(data.train_x), cfg.data.batch_size
    per_epoch = [min(bs, n - k * bs) for k in range(0, -(-n // bs))]
    # every training batch of both epochs, and nothing else (no validation or test batch)
    assert [len(b) for b in batches] == 2 * per_epoch
    assert all(img.numpy().tobytes() in train_images for b in batches for img in b)


def metrics(make_cfg, out: Path, *overrides):
    train(make_cfg(*overrides), str(out))
    res = json.loads((out / "result.json").read_text())
    with open(out / "metrics.csv") as f:
        rows = [[r[k] for k in ("epoch", "train_loss", "train_acc", "val_loss", "val_acc")]
                for r in csv.DictReader(f)]
    return res, rows


def test_seeded_with_the_run(make_cfg, tmp_path):
    a, rows_a = metrics(make_cfg, tmp_path / "a", "augment=affine", "seed=3")
    b, rows_b = metrics(make_cfg, tmp_path / "b", "augment=affine", "seed=3")
    c, _ = metrics(make_cfg, tmp_path / "c", "augment=affine", "seed=4")
    plain, rows_plain = metrics(make_cfg, tmp_path / "plain", "seed=3")
    assert rows_a == rows_b and (a["test_acc"], a["test_loss"]) == (b["test_acc"], b["test_loss"])
    assert a["test_loss"] != c["test_loss"]
    assert plain["augment"] == "none" and rows_plain != rows_a


@pytest.mark.parametrize("override,allowed", [
    ("augment.degrees=-1", "a number >= 0"),
    ("augment.translate=1", "a number in [0, 1)"),
    ("augment.scale=[1.1,0.9]", "a pair [lo, hi] with 0 < lo <= hi"),
    ("augment.scale=[0,1]", "a pair [lo, hi] with 0 < lo <= hi"),
    ("augment.scale=[0.9]", "a pair [lo, hi] with 0 < lo <= hi"),
])
def test_bad_values_are_refused_in_one_line(make_cfg, tmp_path, override, allowed):
    with pytest.raises(InputError) as e:
        train(make_cfg("augment=affine", override), str(tmp_path))
    key = override.split("=")[0]
    assert str(e.value).startswith(f"{key}=") and str(e.value).endswith(f"is not allowed: {allowed}")
    assert "\n" not in str(e.value)


def test_a_run_killed_after_epoch_1_resumes_to_the_same_end(make_cfg, tmp_path):
    args = ("augment=affine", "trainer.epochs=3")
    full, full_rows = metrics(make_cfg, tmp_path / "full", *args)

    def killed(step, row):
        if step == 1:  # dies once epoch 1 and its resume.pt are written
            raise KeyboardInterrupt

    cut = tmp_path / "cut"
    with pytest.raises(KeyboardInterrupt):
        train(make_cfg(*args), str(cut), on_epoch=killed)
    assert "augment_rng" in torch.load(cut / "resume.pt", weights_only=True)
    res, rows = metrics(make_cfg, cut, *args, "trainer.resume=true")
    assert rows == full_rows
    for key in ("val_acc", "val_loss", "test_acc", "test_loss"):
        assert res[key] == full[key], key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_runs_on_the_batch_device():
    x = torch.rand(16, 1, 28, 28)
    cpu = affine(x, torch.Generator().manual_seed(0))
    gpu = affine(x.cuda(), torch.Generator().manual_seed(0))
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, atol=1e-5, rtol=0)
