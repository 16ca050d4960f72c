"""Distortions (Sec. III-C): size, range, reproducibility, change, ink kept in the field."""

import pytest
import torch

from lenet1998.config import LeNetConfig
from lenet1998.data import ink
from lenet1998.distortions import DISTORTION_RANGES, POOL_FACTOR, DistortionPool, distort, sample_parameters
from lenet1998.patterns import pattern_order
from lenet1998.train import fit


@pytest.fixture(scope="module")
def digits(mnist):
    return ink(mnist.train_images[:500])  # (500, 32, 32) in [0, 1]


def test_identity_parameters_leave_the_image_unchanged(digits):
    identity = torch.tensor([[0.0, 0.0, 1.0, 1.0, 0.0]]).repeat(10, 1)
    torch.testing.assert_close(distort(digits[:10], identity), digits[:10], atol=1e-5, rtol=0)


def test_distortions_keep_size_and_range_and_change_the_pattern(digits):
    params = sample_parameters(len(digits), torch.Generator().manual_seed(0))
    out = distort(digits, params)
    assert out.shape == digits.shape == (500, 32, 32)
    assert out.min() >= 0 and out.max() <= 1
    changed = (out - digits).abs().flatten(1).amax(1)
    assert bool((changed > 0.1).all())  # every pattern moves, none is the identity


def test_translation_moves_the_centre_of_mass(digits):
    shift = torch.tensor([[2.0, -2.0, 1.0, 1.0, 0.0]]).repeat(len(digits), 1)
    out = distort(digits, shift)
    grid = torch.arange(32.0)
    def centre(x):
        m = x.sum((1, 2))
        return (x.sum(1) * grid).sum(1) / m, (x.sum(2) * grid).sum(1) / m  # (cx, cy)
    (cx0, cy0), (cx1, cy1) = centre(digits), centre(out)
    assert float((cx1 - cx0).mean()) == pytest.approx(2.0, abs=0.1)
    assert float((cy1 - cy0).mean()) == pytest.approx(-2.0, abs=0.1)


def test_the_ink_stays_inside_the_32x32_field_at_the_extreme_ranges(digits):
    # Every corner of the parameter box: the worst cases of each combination.
    corners = torch.cartesian_prod(*[torch.tensor(r) for r in DISTORTION_RANGES.values()])
    assert len(corners) == 32
    for p in corners:
        out = distort(digits, p.repeat(len(digits), 1))
        ring = out.sum((1, 2)) - out[:, 1:-1, 1:-1].sum((1, 2))  # ink on the outermost pixels
        assert float((ring / out.sum((1, 2))).mean()) < 0.005, p  # a few digits touch the edge at the worst corner
        kept = out.sum((1, 2)) / (digits.sum((1, 2)) * float(p[2]) ** 2)  # area scales by s^2
        assert float(kept.mean()) > 0.98, p


def test_pool_and_draws_are_reproducible_from_the_seed(digits):
    a = DistortionPool(digits, torch.Generator().manual_seed(5))
    b = DistortionPool(digits, torch.Generator().manual_seed(5))
    c = DistortionPool(digits, torch.Generator().manual_seed(6))
    assert a.size == POOL_FACTOR * len(digits)
    index = torch.tensor([3, 700, 4999])
    assert torch.equal(a.patterns(index), b.patterns(index))
    assert not torch.equal(a.patterns(index)[1:], c.patterns(index)[1:])
    assert torch.equal(a.patterns(torch.tensor([3]))[0], digits[3])  # the first n are the originals
    config = LeNetConfig(distortions="affine", train_size=500)
    draw = pattern_order(config, 500, 1)
    assert torch.equal(draw, pattern_order(config, 500, 1))
    assert len(draw) == 500 and int(draw.max()) < 5000 and len(draw.unique()) == 500


def test_training_with_distortions_never_touches_the_test_set(mnist):
    test_before = mnist.test_images.clone()
    config = LeNetConfig(distortions="affine", epochs=1, train_size=300, sdlm_samples=50)
    (r,) = fit(config, mnist, engine="eager")
    assert torch.equal(mnist.test_images, test_before)
    assert r.failed is None and r.history[0]["test_error"] < 90
