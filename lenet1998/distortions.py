"""Random planar affine distortions of the training digits, and the 600,000-pattern pool.

Paper: Sec. III-C, Fig. 7. "the 60,000 original patterns plus 540,000 instances of distorted
patterns with randomly picked distortion parameters. The distortions were combinations of the
following planar affine transformations: horizontal and vertical translations, scaling,
squeezing (simultaneous horizontal compression and vertical elongation, or the reverse), and
horizontal shearing." 20 passes of 60,000 patterns: each distorted pattern is seen about twice.

    x' = Shear(h) Squeeze(q) Scale(s) (x - c) + c + t        c: the centre of the 32x32 field
    Scale(s) = diag(s, s); Squeeze(q) = diag(q, 1/q); Shear(h) = [[1, h], [0, 1]]

Deviation: the paper gives no ranges. Ours (DISTORTION_RANGES) keep an MNIST digit (20x20,
centred by its centre of mass in 28x28) inside the 32x32 input field: translations up to 1.5
pixels, scale 0.9-1.1, squeeze 0.92-1.087 and shear up to 0.2 stretch a 20-pixel digit to at
most 20 x 1.1 / 0.92 = 23.9 rows (within 13.5 pixels of the centre with the shift) and about
20 x 1.1 x 1.087 + 0.2 x 24 = 28.7 columns; the tests check every corner of this box on real
digits. REPRODUCING.md lists the ranges as an open question; LeNetConfig.distortion_scale
scales every range around its identity value (0.5: half the half-width) to measure it.

Patterns are distorted in [0, 1] ink units on the 32x32 field (background 0), then coded.
Everything is a batched tensor operation (affine_grid + bilinear grid_sample).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

# (low, high) of each random parameter, drawn uniformly.
DISTORTION_RANGES = {
    "translate_x": (-1.5, 1.5),  # pixels
    "translate_y": (-1.5, 1.5),  # pixels
    "scale": (0.9, 1.1),
    "squeeze": (0.92, 1.087),  # horizontal factor q, vertical 1/q
    "shear": (-0.2, 0.2),  # horizontal shear: x += h * y
}
# The value of each parameter that leaves a digit as it is: `distortion_scale` scales every range
# around it (LeNetConfig.distortion_scale; 0.5 halves each half-width, 1 is DISTORTION_RANGES).
IDENTITY = {"translate_x": 0.0, "translate_y": 0.0, "scale": 1.0, "squeeze": 1.0, "shear": 0.0}
FIELD = 32
POOL_FACTOR = 10  # 60,000 originals + 540,000 distorted = 10 x the training set


def parameter_ranges(scale: float = 1.0):
    """(low, high) tensors (5,) of the ranges scaled by `scale` around IDENTITY; scale 1 returns
    DISTORTION_RANGES exactly."""
    low = torch.tensor([r[0] for r in DISTORTION_RANGES.values()])
    high = torch.tensor([r[1] for r in DISTORTION_RANGES.values()])
    if scale != 1.0:
        centre = torch.tensor([IDENTITY[name] for name in DISTORTION_RANGES])
        low, high = centre + scale * (low - centre), centre + scale * (high - centre)
    return low, high


def sample_parameters(count: int, generator: torch.Generator, scale: float = 1.0) -> torch.Tensor:
    """(count, 5) parameters: translate_x, translate_y, scale, squeeze, shear, drawn uniformly
    from the ranges scaled by `scale` (the same uniform draws at every scale)."""
    u = torch.rand(count, len(DISTORTION_RANGES), generator=generator)
    low, high = parameter_ranges(scale)
    return low + u * (high - low)


def sampling_grids(params: torch.Tensor) -> torch.Tensor:
    """The inverse maps (output -> input) as (N, 2, 3) matrices for F.affine_grid."""
    tx, ty, s, q, h = params.unbind(1)
    # Forward map M = Shear(h) @ Squeeze(q) @ Scale(s), in normalised coordinates (square field).
    a, b = s * q, h * s / q  # first row of M
    c, d = torch.zeros_like(s), s / q  # second row
    det = a * d - b * c
    inv = torch.stack([torch.stack([d, -b], 1), torch.stack([-c, a], 1)], 1) / det[:, None, None]  # (N, 2, 2)
    t = torch.stack([tx, ty], 1) * (2.0 / FIELD)  # pixels -> normalised units
    offset = -(inv @ t.unsqueeze(-1))  # (N, 2, 1)
    return torch.cat([inv, offset], 2)  # (N, 2, 3)


def distort(images: torch.Tensor, params: torch.Tensor) -> torch.Tensor:
    """images (N, 32, 32) in [0, 1] ink units, background 0 -> distorted (N, 32, 32)."""
    grid = F.affine_grid(sampling_grids(params).to(images.dtype), (len(images), 1, FIELD, FIELD), align_corners=False)
    out = F.grid_sample(images.unsqueeze(1), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.squeeze(1).clamp(0, 1)  # (N, 32, 32)


class DistortionPool:
    """The n originals followed by 9n distorted copies; pattern i >= n is original (i - n) % n
    with its own parameters, fixed by the seed."""

    def __init__(self, originals: torch.Tensor, generator: torch.Generator, scale: float = 1.0):
        self.originals = originals  # (n, 32, 32) in [0, 1]
        n = len(originals)
        self.size = POOL_FACTOR * n
        self.params = sample_parameters(self.size - n, generator, scale)  # (9n, 5)

    def patterns(self, index: torch.Tensor) -> torch.Tensor:
        """Pool patterns (in [0, 1]) for a tensor of pool indices of any shape."""
        flat = index.reshape(-1).cpu()
        n = len(self.originals)
        images = self.originals[flat % n].clone()  # (M, 32, 32)
        distorted = flat >= n
        if distorted.any():
            images[distorted] = distort(images[distorted], self.params[flat[distorted] - n].to(images.device))
        return images.view(*index.shape, FIELD, FIELD)
