"""Random affine augmentation of training batches, a different transform for every sample.

`affine` is the `_target_` of conf/augment/affine.yaml: the PLIF paper's MNIST recipe
(Fang et al. 2021, torchvision's RandomAffine(degrees=30, translate=(0.15, 0.15),
scale=(0.85, 1.11))), applied on the fly to a batch of tensors [B, C, H, W] in [0, 1] before
the encoder, on the batch's device. torchvision.transforms.v2.RandomAffine draws one transform
per call, so on a batch it would move every image the same way; here each sample gets its own
2x3 matrix and one affine_grid + grid_sample call warps the whole batch.

The geometry is torchvision's (transforms.v2.functional.affine, shear 0): rotation about the
image centre by an angle in [-degrees, degrees] (positive: clockwise as displayed, as in
torchvision's affine), a translation of whole pixels up to translate * W across and
translate * H down, an isotropic scale in the range; bilinear (the paper's RandomAffine on
PIL images samples the nearest pixel), zeros outside (tests/test_augment.py compares the two).
"""
from typing import Optional, Sequence

import torch
import torch.nn.functional as F


def affine(x: torch.Tensor, generator: Optional[torch.Generator] = None, degrees: float = 30.0,
           translate: float = 0.15, scale: Sequence[float] = (0.85, 1.11)) -> torch.Tensor:
    """x [B, C, H, W], each sample rotated, shifted and scaled at random. The parameters are
    drawn on the CPU from `generator` (torch's global one when None), so a run's draws do not
    depend on its device."""
    b, _, h, w = x.shape
    u = torch.rand(b, 4, generator=generator, dtype=torch.float64)
    angle = (2 * u[:, 0] - 1) * degrees
    # Whole pixels, as torchvision rounds them.
    shift = torch.stack([(2 * u[:, 1] - 1) * translate * w,
                         (2 * u[:, 2] - 1) * translate * h], dim=1).round()
    lo, hi = scale
    zoom = lo + (hi - lo) * u[:, 3]
    return warp(x, angle, shift, zoom)


def warp(x: torch.Tensor, angle: torch.Tensor, shift: torch.Tensor, zoom: torch.Tensor
         ) -> torch.Tensor:
    """x [B, C, H, W] with sample i moved as torchvision's affine(angle[i] degrees,
    translate=shift[i] (pixels, [dx, dy]), scale=zoom[i]) moves one image."""
    b, _, h, w = x.shape
    rad = torch.deg2rad(angle.double())
    cos, sin = torch.cos(rad) / zoom, torch.sin(rad) / zoom
    dx, dy = shift.double().unbind(1)
    # grid_sample asks where each output pixel comes from, so theta is the inverse map
    # (torchvision's _get_inverse_affine_matrix about the centre) in normalized coordinates:
    # [-1, 1] across the width and the height, hence the w/h factors on a non-square image.
    theta = torch.stack([
        torch.stack([cos, sin * h / w, -(cos * dx + sin * dy) * 2 / w], dim=1),
        torch.stack([-sin * w / h, cos, (sin * dx - cos * dy) * 2 / h], dim=1),
    ], dim=1)
    theta = theta.to(device=x.device, dtype=x.dtype)
    grid = F.affine_grid(theta, [b, 1, h, w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
