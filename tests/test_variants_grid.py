"""The ablation's other directions and open questions: add-one-in, the road, the open questions
(experiments/variants.py), and the math they need: SDLM's curvature of softmax cross-entropy,
the S2/S4 coefficient's h_kk with its cross terms, the scaled distortion ranges."""

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from torch import nn

from experiments.ablate import main as ablate
from experiments.ablate import selection
from experiments.grid import GRID as GRID_BUDGET, plan
from experiments.variants import FAMILY_SEEDS, GRID, PAPER, ROAD_ORDER, VARIANTS, family
from lenet1998 import engine
from lenet1998.config import ConfigError, LeNetConfig
from lenet1998.distortions import DISTORTION_RANGES, IDENTITY, DistortionPool, parameter_ranges, sample_parameters
from lenet1998.layers import FullyConnected, Identity
from lenet1998.loss import cross_entropy, output_curvature
from lenet1998.model import LeNet5
from lenet1998.patterns import STREAM_DISTORTIONS, TrainingPatterns, generator
from lenet1998.sdlm import hessian_diagonal

from .oracles import TinyNet, brute_force_h

MODERN = VARIANTS["modern"].config
# The paper's pieces, as the fields that move together when one of them switches.
PIECES = [{"input_coding"}, {"init"}, {"bias_init"}, {"squashing"}, {"subsampling"}, {"c3_table"},
          {"output", "loss"}, {"optimizer", "batch_size"}]
# What each open question measures: the one field it moves off its base.
OPEN_FIELDS = {"map_j", "sdlm_output_curvature", "sdlm_samples", "order", "bias_init", "distortion_scale",
               "sdlm_subsampling_h"}


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def diff(a: LeNetConfig, b: LeNetConfig) -> set:
    da, db = a.to_dict(), b.to_dict()
    return {k for k in da if da[k] != db[k]}


# ------------------------------------------------------------------------------------------------
# The variants as data


def test_every_variant_has_a_family_with_a_seed_count():
    assert FAMILY_SEEDS == {"single": 10, "add_one_in": 10, "road": 5, "open_question": 5, "fingerprint": 10, "fig9": 5}
    assert all(v.family in FAMILY_SEEDS for v in VARIANTS.values())
    assert set(GRID) == set(family("single")) and "paper" in GRID and "modern+sdlm" not in GRID
    assert all(v.base in VARIANTS for v in VARIANTS.values() if v.family != "single")


@pytest.mark.parametrize("name", family("add_one_in"))
def test_add_one_in_is_one_paper_piece_away_from_modern(name):
    variant = VARIANTS[name]
    moved = diff(variant.config, MODERN)
    assert variant.base == "modern" and moved in PIECES, moved
    assert all(getattr(variant.config, f) == getattr(PAPER, f) for f in moved)  # the paper's piece, put back
    assert bool(variant.coupled) == (len(moved) > 1)


def test_add_one_in_puts_back_every_piece_modern_switches():
    moved = set().union(*(diff(VARIANTS[n].config, MODERN) for n in family("add_one_in")))
    assert moved == diff(MODERN, PAPER)


def test_the_rbf_head_on_relu_keeps_relu_and_says_what_it_costs():
    v = VARIANTS["modern+rbf_map"]
    assert v.config.squashing == "relu" and v.config.output == "rbf" and v.config.loss == "map"
    assert "-1" in v.coupled and "MLE" in v.coupled


def test_the_road_goes_from_paper_to_modern_one_piece_per_step():
    road = family("road")
    assert [n.split("_", 1)[1] for n in road] == [piece for piece, _ in ROAD_ORDER]
    assert VARIANTS[road[0]].base == "paper"
    previous = PAPER
    for name in road:
        v = VARIANTS[name]
        moved = diff(v.config, previous)
        assert moved in PIECES, (name, moved)
        assert all(getattr(v.config, f) == getattr(MODERN, f) for f in moved), name  # each to its modern value
        assert bool(v.coupled) == (len(moved) > 1), name
        assert v.base == (road[road.index(name) - 1] if road.index(name) else "paper")
        previous = v.config
    assert previous == MODERN
    assert previous.digest() == MODERN.digest()  # the last step is `modern`'s runs
    assert VARIANTS["road1_input"].config.digest() == VARIANTS["unit_input"].config.digest()


@pytest.mark.parametrize("name", family("open_question"))
def test_each_open_question_moves_one_field_off_its_base(name):
    v = VARIANTS[name]
    moved = diff(v.config, VARIANTS[v.base].config)
    assert len(moved) == 1 and moved <= OPEN_FIELDS, moved


def test_the_open_questions_measure_each_value_asked_for():
    got = {(f, getattr(VARIANTS[n].config, f)) for n in family("open_question")
           for f in diff(VARIANTS[n].config, VARIANTS[VARIANTS[n].base].config)}
    assert got == {("map_j", 1.0), ("map_j", 100.0), ("sdlm_output_curvature", 1.0), ("sdlm_output_curvature", 4.0),
                   ("sdlm_samples", 5000), ("order", "reshuffle"), ("bias_init", "zero"), ("distortion_scale", 0.5),
                   ("distortion_scale", 1.5), ("sdlm_subsampling_h", "shared_sum")}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_variant_is_valid_and_its_run_hash_is_stable(name):
    a, b = VARIANTS[name].config, VARIANTS[name].config  # two builds
    assert a is not b and a == b and a.digest() == b.digest()
    assert LeNetConfig.from_dict(a.to_dict()).digest() == a.digest()


def test_new_fields_enter_the_hash_only_away_from_their_defaults():
    paper = LeNetConfig()
    assert paper.replace(sdlm_subsampling_h="per_connection", distortion_scale=1.0).digest() == paper.digest()
    assert paper.replace(sdlm_subsampling_h="shared_sum").digest() != paper.digest()
    d = paper.replace(distortions="affine")
    assert d.replace(distortion_scale=0.5).digest() != d.digest() != d.replace(distortion_scale=1.5).digest()


@pytest.mark.parametrize("changes", [
    {"distortion_scale": float("nan")}, {"distortions": "affine", "distortion_scale": -0.5},
    {"distortions": "affine", "distortion_scale": 6.0}, {"distortion_scale": 0.5},  # no pool to scale
    {"sdlm_subsampling_h": "cross"}, {"sdlm_subsampling_h": "shared_sum", "optimizer": "sgd"},
    {"sdlm_subsampling_h": "shared_sum", "subsampling": "max_pool"},
])
def test_the_new_fields_are_validated(changes):
    with pytest.raises(ConfigError):
        LeNetConfig().replace(**changes)


# ------------------------------------------------------------------------------------------------
# `ablate --family`


def test_family_selection_and_seed_counts(tmp_path):
    assert selection(True, (), (), None, False) == (list(GRID), 3)  # --all: today's grid, 3 seeds
    assert selection(True, (), (), 4, False) == (list(GRID), 4)
    names, seeds = selection(False, ("paper",), ("road", "open_question"), None, False)
    assert names == ["paper"] + family("road") + family("open_question")
    assert seeds["paper"] == 3 and seeds["road3_output"] == 5 and seeds["map_j1"] == 5
    names, seeds = selection(False, (), ("add_one_in",), 2, False)
    assert names == family("add_one_in") and seeds == 2
    # a run shared by two variants (road1_input = unit_input) is planned once
    groups = plan(["unit_input", "road1_input"], GRID_BUDGET, tmp_path, seeds={"unit_input": 3, "road1_input": 5})
    runs = [(label, c) for _, r in groups for label, c in r]
    assert len(runs) == 5 and len({c for _, c in runs}) == 5
    assert sorted(c.seed for label, c in runs if label == "unit_input") == [0, 1, 2]


def test_the_command_line_knows_the_families():
    runner = CliRunner()
    listed = runner.invoke(ablate, ["--list"])
    assert listed.exit_code == 0 and "add_one_in" in listed.output and "road3_output" in listed.output
    bad = runner.invoke(ablate, ["--family", "nope"])
    assert bad.exit_code == 2 and "single" in bad.output


# ------------------------------------------------------------------------------------------------
# SDLM's curvature of softmax cross-entropy: diag(p (1 - p)) at the logits


def test_cross_entropy_curvature_is_the_exact_diagonal_of_its_hessian():
    g = torch.Generator().manual_seed(3)
    config = LeNetConfig(output="linear", loss="cross_entropy")
    for _ in range(5):
        a = torch.randn(10, generator=g, dtype=torch.float64) * 3
        target = torch.randint(0, 10, (1,), generator=g)
        H = torch.autograd.functional.hessian(lambda z: cross_entropy(z[None], target).sum(), a)  # (10, 10)
        p = torch.softmax(a, -1)
        torch.testing.assert_close(torch.diagonal(H), output_curvature(config, a[None])[0], rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(H, torch.diag(p) - torch.outer(p, p), rtol=1e-12, atol=1e-14)


class LinearHead(nn.Module):
    """One linear layer 5 -> 4 feeding softmax cross-entropy, traced as LeNet5 traces its output."""

    def __init__(self):
        super().__init__()
        self.fc = FullyConnected(5, 4)
        with torch.no_grad():
            for p in self.fc.parameters():
                p.copy_(torch.randn(p.shape, generator=torch.Generator().manual_seed(5), dtype=p.dtype))

    def forward(self, x, trace=None):
        a = self.fc.linear(x, tuple(self.fc.parameters()))
        if trace is not None:
            trace.append((self.fc, Identity(), x, a))
        return a


def test_the_h_kk_of_a_linear_layer_on_cross_entropy_against_brute_force(float64):
    net = LinearHead()
    config = LeNetConfig(output="linear", loss="cross_entropy")
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(6))
    h_w, h_b = hessian_diagonal(net, x, lambda out, features: output_curvature(config, out))
    want_w, want_b = np.zeros((4, 5)), np.zeros(4)
    W, b = (p.detach().numpy() for p in net.fc.parameters())
    for xn in x.numpy():  # Eq. (25) by loops: d2E/du_oi^2 = p_o (1 - p_o) x_i^2
        a = W @ xn + b
        p = np.exp(a - a.max()) / np.exp(a - a.max()).sum()
        for o in range(4):
            want_b[o] += p[o] * (1 - p[o]) / len(x)
            for i in range(5):
                want_w[o, i] += p[o] * (1 - p[o]) * xn[i] ** 2 / len(x)
    np.testing.assert_allclose(h_w.numpy(), want_w, rtol=1e-10)
    np.testing.assert_allclose(h_b.numpy(), want_b, rtol=1e-10)
    # One linear layer: Gauss-Newton is exact, so the diagonal of the true Hessian in the weights
    # (averaged over the patterns, any target) is the same.
    flat = torch.cat([p.detach().flatten() for p in net.fc.parameters()])

    def mean_loss(theta, target):
        w, bias = theta[:20].view(4, 5), theta[20:]
        return cross_entropy(x @ w.t() + bias, target).mean()

    for target in (torch.zeros(6, dtype=torch.long), torch.arange(6) % 4):
        exact = torch.diagonal(torch.autograd.functional.hessian(lambda t: mean_loss(t, target), flat))
        torch.testing.assert_close(exact, torch.cat([h_w.flatten(), h_b]), rtol=1e-10, atol=1e-14)


def test_lenet5_with_a_linear_output_is_seeded_with_p_times_1_minus_p():
    """modern+sdlm: the h_kk of the output layer's bias is the mean of p (1 - p) over the sample."""
    config = VARIANTS["modern+sdlm"].config
    model = LeNet5(config).initialize()
    x = torch.rand(8, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    h = dict(zip([n for n, _ in model.named_parameters()],
                 hessian_diagonal(model, x, lambda out, features: output_curvature(config, out))))
    with torch.no_grad():
        p = torch.softmax(model(x), -1)
    torch.testing.assert_close(h["head.bias"], (p * (1 - p)).mean(0), rtol=1e-5, atol=1e-8)


# ------------------------------------------------------------------------------------------------
# The S2/S4 coefficient's h_kk: Eq. (23) per connection, or with its 4 connections' cross terms


@pytest.mark.parametrize("reading", ["per_connection", "shared_sum"])
def test_subsampling_coefficient_h_against_brute_force(reading, float64):
    net = TinyNet(head="full", reading=reading, seed=4)  # conv -> subsampling -> full, float64
    images = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(7)) * 2 - 0.5
    got = dict(zip([n for n, _ in net.named_parameters()], hessian_diagonal(net, images, 2.0)))
    want = brute_force_h(net, images, 2.0, reading=reading)
    for name, h in got.items():
        np.testing.assert_allclose(h.numpy(), want[name], rtol=1e-10, atol=1e-14, err_msg=name)


def test_only_the_coefficients_h_changes_between_the_readings():
    config = LeNetConfig()
    per, shared = LeNet5(config).initialize(), LeNet5(config.replace(sdlm_subsampling_h="shared_sum")).initialize()
    assert per.layers["S2"].keep_cross_terms is False and shared.layers["S4"].keep_cross_terms is True
    x = torch.rand(10, 1, 32, 32, generator=torch.Generator().manual_seed(1)) * 1.275 - 0.1
    names = [n for n, _ in per.named_parameters()]
    a, b = (dict(zip(names, hessian_diagonal(m, x, 2.0))) for m in (per, shared))
    for name in names:
        if name.endswith("coef"):
            assert not torch.allclose(a[name], b[name]), name
        else:
            torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=0, msg=name)


def test_the_kernel_path_follows_eager_with_the_new_per_run_fields(mnist):
    """h_kk and the distortion pool are made outside the fast step: a kernel group that mixes
    the h readings and distortion scales follows the eager group (each run's own h, own pool)."""
    from lenet1998.data import MNIST
    from lenet1998.train import fit

    ok, why = engine.kernel_fits([LeNetConfig()])
    if not ok:
        pytest.skip(f"no kernel here: {why}")
    small = MNIST(mnist.train_images[:60], mnist.train_labels[:60], mnist.test_images[:50], mnist.test_labels[:50])
    base = LeNetConfig(epochs=1, train_size=60, sdlm_samples=20, eta_schedule=((1, 2e-5),))
    configs = [base, base.replace(seed=1, sdlm_subsampling_h="shared_sum"),
               base.replace(seed=2, distortions="affine", distortion_scale=0.5),
               base.replace(seed=3, distortions="affine", distortion_scale=1.5, sdlm_subsampling_h="shared_sum")]
    assert len({engine.lockstep_key(c) for c in configs}) == 1  # one group
    eager, fast = fit(configs, small, engine="eager"), fit(configs, small, engine="kernel")
    for e, f in zip(eager, fast):
        assert f.engine == "kernel"
        for p in e.state:
            torch.testing.assert_close(f.state[p], e.state[p], rtol=0, atol=1e-4, msg=p)


def test_a_group_whose_first_run_has_scaled_distortions_trains(mnist):
    """The group's shared images are the originals, made from its first config without its
    pool: a first run with distortion_scale 1.5 must not make that config invalid (the bug
    that stopped `ablate --family open_question` at the group led by `distortions_1.5x`)."""
    from lenet1998.data import MNIST
    from lenet1998.train import fit

    small = MNIST(mnist.train_images[:40], mnist.train_labels[:40], mnist.test_images[:20], mnist.test_labels[:20])
    base = LeNetConfig(epochs=1, train_size=40, sdlm_samples=10)
    configs = [base.replace(distortions="affine", distortion_scale=1.5), base.replace(seed=1)]
    assert len({engine.lockstep_key(c) for c in configs}) == 1  # one group, led by the scaled run
    results = fit(configs, small, engine="eager")
    assert [len(r.history) for r in results] == [1, 1] and not any(r.failed for r in results)


# ------------------------------------------------------------------------------------------------
# distortion_scale


def test_distortion_scale_one_gives_exactly_todays_pools():
    g1, g2 = torch.Generator().manual_seed(11), torch.Generator().manual_seed(11)
    u = torch.rand(50, 5, generator=g1)
    low = torch.tensor([r[0] for r in DISTORTION_RANGES.values()])
    high = torch.tensor([r[1] for r in DISTORTION_RANGES.values()])
    assert torch.equal(sample_parameters(50, g2, 1.0), low + u * (high - low))  # the formula of today's pools
    originals = torch.rand(20, 32, 32, generator=torch.Generator().manual_seed(0))
    today = DistortionPool(originals, generator(0, STREAM_DISTORTIONS))
    same = DistortionPool(originals, generator(0, STREAM_DISTORTIONS), 1.0)
    assert torch.equal(today.params, same.params)


def test_distortion_scale_one_in_training_patterns(mnist):
    config = LeNetConfig(distortions="affine", train_size=30)
    a = TrainingPatterns(config, mnist)
    b = TrainingPatterns(config.replace(distortion_scale=1.0), mnist)
    c = TrainingPatterns(config.replace(distortion_scale=0.5), mnist)
    assert torch.equal(a.pool.params, b.pool.params)
    centre = torch.tensor([IDENTITY[k] for k in DISTORTION_RANGES])
    torch.testing.assert_close(c.pool.params, centre + 0.5 * (a.pool.params - centre))  # same draws, half as far
    index = torch.arange(30, 300, 29)
    assert torch.equal(a.patterns(index), b.patterns(index))


@pytest.mark.parametrize("scale", [0.5, 1.5])
def test_distortion_scale_scales_every_half_width(scale):
    low, high = parameter_ranges(scale)
    for k, (name, (lo, hi)) in enumerate(DISTORTION_RANGES.items()):
        c = IDENTITY[name]
        assert float(high[k]) - c == pytest.approx(scale * (hi - c), abs=1e-6), name
        assert c - float(low[k]) == pytest.approx(scale * (c - lo), abs=1e-6), name
    assert float(low[2]) > 0 and float(low[3]) > 0  # scale and squeeze stay positive
    g = torch.Generator().manual_seed(3)
    params = sample_parameters(1000, g, scale)
    assert bool((params >= low).all()) and bool((params <= high).all())
