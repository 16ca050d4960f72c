"""The fingerprint issue: the authors' readings as config values, Eq. (9)'s exact output
curvature, the pass-1 step statistics and distance, and the single-run statistics."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch

from experiments import fingerprint as fp
from experiments.stats import prediction_interval, tost
from experiments.variants import VARIANTS
from lenet1998.config import LeNetConfig
from lenet1998.data import encode
from lenet1998.layers import load_bitmaps
from lenet1998.loss import map_loss, map_output_curvature, mle_loss, output_curvature
from lenet1998.model import LeNet5
from lenet1998.patterns import pattern_order
from lenet1998.registry import ConfigError
from lenet1998.sdlm import SDLM

ROOT = Path(__file__).resolve().parent.parent
PAPER = LeNetConfig()


def _penalties(x, centres):
    return ((x.unsqueeze(-2) - centres) ** 2).sum(-1)


@pytest.mark.parametrize("j", [1.0, 10.0, 100.0])
def test_map_output_curvature_is_the_diagonal_of_eq9s_second_derivative(j):
    centres = load_bitmaps().double()
    g = torch.Generator().manual_seed(0)
    # F6 outputs near a code (one class dominates), between codes and far from all of them
    x = torch.cat([centres[3] * 0.9, 0.5 * (centres[1] + centres[7]), torch.zeros(84),
                   torch.rand(84, generator=g, dtype=torch.float64) * 2 - 1]).view(4, 84)
    got = map_output_curvature(_penalties(x, centres), x, centres, j)
    for n in range(len(x)):
        for target in (0, 5):  # the exact diagonal does not depend on the class
            xn = x[n].clone().requires_grad_()
            hessian = torch.autograd.functional.hessian(
                lambda v: map_loss(_penalties(v[None], centres), torch.tensor([target]), j)[0], xn)
            torch.testing.assert_close(got[n], torch.diagonal(hessian), rtol=1e-9, atol=1e-12)


def test_map_output_curvature_against_a_loop_over_units_and_its_bounds():
    centres = load_bitmaps().double()
    x = torch.linspace(-1.2, 1.2, 84, dtype=torch.float64)[None] * torch.tensor([[0.3], [1.0]], dtype=torch.float64)
    j = 10.0
    got = map_output_curvature(_penalties(x, centres), x, centres, j)
    for n in range(2):
        y = [sum((float(x[n, u]) - float(centres[i, u])) ** 2 for u in range(84)) for i in range(10)]
        z = math.exp(-j) + sum(math.exp(-v) for v in y)
        p = [math.exp(-v) / z for v in y]
        none = math.exp(-j) / z
        for u in range(0, 84, 7):
            d = [float(x[n, u]) - float(centres[i, u]) for i in range(10)]
            mean = sum(pi * di for pi, di in zip(p, d))
            want = 2 * none + 4 * (sum(pi * di * di for pi, di in zip(p, d)) - mean * mean)
            assert float(got[n, u]) == pytest.approx(want, rel=1e-9, abs=1e-12)
    assert (got >= 0).all()
    far = torch.full((1, 84), 50.0, dtype=torch.float64)  # every penalty huge: the rubbish class takes it all
    torch.testing.assert_close(map_output_curvature(_penalties(far, centres), far, centres, j),
                               torch.full((1, 84), 2.0, dtype=torch.float64))


def test_the_map_exact_seed_reaches_sdlm_and_needs_the_map_criterion():
    # at initialisation every penalty is far above j = 10 and the seed is 2 to float precision: with
    # j = 1000 (penalties near 130-200) the classes compete, and the exact seed moves h_kk
    config = PAPER.replace(sdlm_output_seed="map_exact", map_j=1000.0)
    net = LeNet5(config).initialize()
    x = torch.randn(5, 1, 32, 32, generator=torch.Generator().manual_seed(1))
    h_exact = SDLM(net, config).curvature(x)
    h_const = SDLM(net, PAPER.replace(map_j=1000.0)).curvature(x)
    assert any(not torch.equal(a, b) for a, b in zip(h_exact, h_const))
    features = []
    net(x, features)
    layer, act, _, a = features[-1]
    seed = output_curvature(config, net(x), act(a), net.head.centres)
    assert seed.shape == (5, 84) and (seed >= 0).all()
    with pytest.raises(ConfigError, match="sdlm_output_seed"):
        PAPER.replace(sdlm_output_seed="map_exact", loss="mle")


@pytest.mark.parametrize("subsampling,coef", [("trainable_average", 2.0), ("trainable_sum", 0.5)])
def test_the_constant_subsampling_start_is_half_the_sum_with_bias_zero(subsampling, coef):
    net = LeNet5(PAPER.replace(subsampling=subsampling, subsampling_init="constant")).initialize()
    for name in ("S2", "S4"):
        layer = net.layers[name]
        assert torch.equal(layer.coef, torch.full_like(layer.coef, coef))
        assert torch.equal(layer.bias, torch.zeros_like(layer.bias))
    with pytest.raises(ConfigError, match="subsampling_init"):
        PAPER.replace(subsampling="max_pool", subsampling_init="constant")


def test_the_lab_init_is_one_over_sqrt_fan_in_with_table_i_fan_ins():
    net = LeNet5(PAPER.replace(init="lab", seed=3)).initialize()
    c3 = net.layers["C3"]
    bound = 1.0 / (c3.inputs_per_map().double() * 25).sqrt()  # Table I: 3, 4 or 6 maps of 5x5
    assert (c3.weight.abs().amax(dim=(1, 2, 3)).double() <= bound).all()
    assert (c3.weight.abs().amax(dim=(1, 2, 3)).double() > 0.8 * bound).all()  # drawn up to it
    f6 = net.layers["F6"]
    assert float(f6.weight.detach().abs().max()) <= 1 / math.sqrt(120)


def test_the_lab_input_coding_is_pixel_times_a_hundredth_with_padding_zero():
    image = torch.zeros(1, 28, 28, dtype=torch.uint8)
    image[0, 10, 10], image[0, 11, 11] = 255, 100
    x = encode(image, "lab")
    assert x.shape == (1, 32, 32)
    assert float(x[0, 0, 0]) == 0.0 and float(x[0, 2, 2]) == 0.0  # padding and background
    assert float(x[0, 12, 12]) == pytest.approx(2.55) and float(x[0, 13, 13]) == pytest.approx(1.0)


def test_file_order_is_the_file_and_the_other_orders_keep_their_permutations():
    config = PAPER.replace(order="file", train_size=50)
    assert torch.equal(pattern_order(config, 50, 3), torch.arange(50))
    fixed = PAPER.replace(train_size=50, seed=2)
    assert torch.equal(pattern_order(fixed, 50, 1), pattern_order(fixed, 50, 7))
    assert not torch.equal(pattern_order(fixed, 50, 1), torch.arange(50))


def test_h_estimated_once_is_kept_across_passes_and_resumes():
    config = PAPER.replace(sdlm_reestimate="once")
    net = LeNet5(config).initialize()
    rule = SDLM(net, config)
    g = torch.Generator().manual_seed(0)
    rule.begin_pass(1, torch.randn(8, 1, 32, 32, generator=g))
    h1 = [h.clone() for h in rule.h]
    rule.begin_pass(3, torch.randn(8, 1, 32, 32, generator=g))  # another sample: not used
    for e, h in zip(rule.eps, h1):
        torch.testing.assert_close(e, config.step_size(3) / (config.sdlm_mu + h))
    again = SDLM(net, PAPER)  # every pass (the paper): the new sample counts
    again.begin_pass(1, torch.randn(8, 1, 32, 32, generator=g))
    assert any(not torch.equal(a, b) for a, b in zip(again.h, h1))
    resumed = SDLM(net, config)
    resumed.load_state_dict(rule.state_dict())
    resumed.begin_pass(4, None)
    every = SDLM(net, PAPER)
    assert every.state_dict() is None
    assert all(torch.equal(a, b) for a, b in zip(resumed.h, rule.h))


def test_each_reading_is_one_field_off_paper_and_pairs_refuse_a_shared_field():
    for name, changes in fp.READINGS.items():
        config = fp.base_config().replace(**changes)
        differ = [k for k, v in config.to_dict().items() if v != fp.base_config().to_dict()[k]]
        assert differ == list(changes), name
    with pytest.raises(ValueError):
        fp.combine(["curvature1", "curvature4"])
    assert fp.label(["map_curvature", "zero_bias"]) == "zero_bias+map_curvature"


def test_new_fields_at_their_defaults_keep_every_run_name():
    assert "subsampling_init" not in PAPER.to_dict() or PAPER.digest() == LeNetConfig().digest()
    assert PAPER.replace(subsampling_init="constant").digest() != PAPER.digest()
    # the committed `paper` runs keep their folder: its name is the digest of the v1 fields
    assert (ROOT / "results" / "runs").is_dir()
    names = {p.name for p in (ROOT / "results" / "runs").iterdir()}
    assert any(PAPER.replace(seed=0).digest() in n for n in names)


def test_step_statistics_and_the_distance_on_a_hand_computed_case():
    eps = torch.tensor([7e-5, 1e-4, 1e-3, 0.016, 0.024, 0.025], dtype=torch.float64)
    s = fp.step_stats(eps, cap=0.025)
    assert s["min"] == 7e-5 and s["max"] == 0.025 and s["n"] == 6
    assert s["at_cap"] == pytest.approx(2 / 6)  # 0.024 and 0.025 are at 95% of the cap or more
    assert s["p50"] == pytest.approx((1e-3 + 0.016) / 2)
    assert fp.distance(7e-5, 0.016) == 0.0
    assert fp.distance(7e-4, 0.016) == pytest.approx(1.0)
    assert fp.distance(7e-5 * 1.5, 0.016 / 2) == pytest.approx(math.log10(2))


def test_the_greedy_choice_on_made_up_rows():
    # three visible readings with made-up ends: the procedure takes the best pair, then adds while it helps
    ends = {"paper": (2e-5, 0.025), "zero_bias": (1e-5, 0.02), "lab_s_coef": (2e-5, 0.013), "lab_init": (1.9e-4, 0.025),
            "zero_bias+lab_s_coef": (8e-6, 0.008), "zero_bias+lab_init": (9e-5, 0.02), "lab_s_coef+lab_init": (1e-4, 0.012),
            "zero_bias+lab_s_coef+lab_init": (7e-5, 0.016)}
    invisible_ones = [n for n in fp.READINGS if n not in ends]
    rows = []
    for name, (lo, hi) in list(ends.items()) + [(n, ends["paper"]) for n in invisible_ones]:
        for layer in fp.LAYERS:
            rows.append({"reading": name, "seed": 0, "layer": layer, "n": 1, "min": lo, "p1": lo, "p5": lo,
                         "p50": lo, "p95": hi, "p99": hi, "max": hi, "at_cap": 0.0})
    rows = pd.DataFrame(rows)
    assert set(fp.invisible(rows)) == set(invisible_ones)
    chosen, steps, _ = fp.select(rows)
    assert steps[0][1] == "zero_bias+lab_init"  # distance 0.1 against lab_s_coef+lab_init's 0.155
    assert fp.label(chosen) == "zero_bias+lab_s_coef+lab_init"


def test_the_chosen_variant_is_the_committed_choice():
    source = fp.pass1_file(ROOT / "results")
    if not source.is_file():
        pytest.skip("no committed pass-1 file")
    from experiments.variants import FINGERPRINT_RANK

    ranked = fp.candidates(pd.read_csv(source))
    assert fp.label(ranked[0]) == "curvature4+lab_init"  # the greedy choice of the committed file
    chosen = fp.combine(ranked[FINGERPRINT_RANK])
    assert VARIANTS["paper_fingerprint"].changes == chosen
    assert VARIANTS["paper_fingerprint+distortions"].changes == {**chosen, "distortions": "affine"}


def test_prediction_interval_and_tost_on_a_hand_computed_case():
    x = [1.0, 1.1, 0.9, 1.2, 0.8]  # mean 1.0, sd 0.158
    d = prediction_interval(x, 0.95)
    half = 2.7764451051977987 * 0.15811388300841897 * math.sqrt(1 + 1 / 5)
    assert d.low == pytest.approx(1.0 - half) and d.high == pytest.approx(1.0 + half)
    assert d.below == pytest.approx(2 / 5)  # 0.9 and 0.8
    assert 0.3 < d.predictive < 0.5
    assert tost(x, 1.0, 0.1) > 0.05  # 5 seeds of sd 0.16 cannot show equivalence within 0.1
    assert tost([1.0, 1.01, 0.99, 1.0, 1.0, 1.01, 0.99], 1.0, 0.1) < 0.001
    assert tost([1.2, 1.21, 1.19], 1.0, 0.1) > 0.5


def test_lab2009_counts_51046_parameters_and_codes_its_input_the_labs_way():
    model = LeNet5(fp.LAB2009)
    assert model.counts()["total"][0] == 51046  # EBLearn's demo with Table I: C1..C5 + 120 -> 10
    assert model.layers["F6"].weight.shape == (10, 120)
    net = model.initialize()
    assert float(net.layers["S2"].coef.detach()[0]) == 0.5 and float(net.layers["F6"].bias.detach().abs().max()) == 0.0


def test_a_lab2009_step_is_the_demos_update_rule():
    """One SDLM step of our config equals the demo's: w -= eta g / (mu + h) with its cost
    0.5 ||out - t||^2, its output curvature 1, mu 0.02 and eta 1e-4."""
    from lenet1998.sdlm import hessian_diagonal

    config = fp.LAB2009.replace(train_size=200, epochs=1)
    net = LeNet5(config).initialize()
    g = torch.Generator().manual_seed(0)
    sample = torch.rand(20, 1, 32, 32, generator=g) * 2.55
    x, y = torch.rand(1, 1, 32, 32, generator=g) * 2.55, torch.tensor([3])
    rule = SDLM(net, config)
    rule.begin_pass(1, sample)
    params = list(net.parameters())
    ours = torch.autograd.grad(mle_loss(net(x), y).sum(), params)  # our criterion: y_D on the +-1 centres
    expected = []
    target = 2 * torch.nn.functional.one_hot(y, 10).float() - 1
    features = []
    net(x, features)
    _, act, _, a = features[-1]
    lab_cost = 0.5 * (act(a) - target).square().sum()
    lab_grad = torch.autograd.grad(lab_cost, params)
    lab_h = hessian_diagonal(net, sample, 1.0)  # the demo's seed: 1 for its halved cost
    for p, g_ours, g_lab, h in zip(params, ours, lab_grad, lab_h):
        torch.testing.assert_close(g_ours, 2 * g_lab, rtol=1e-5, atol=1e-7)
        expected.append(p.detach() - 1e-4 * g_lab / (0.02 + h))
    rule.step(ours)
    for p, want in zip(params, expected):
        torch.testing.assert_close(p.detach(), want, rtol=1e-5, atol=1e-8)


def test_the_kernel_trains_the_demos_head_as_the_eager_group_and_the_reference(mnist):
    from lenet1998 import engine
    from lenet1998.data import MNIST
    from lenet1998.reference import train as train_reference
    from lenet1998.train import fit

    small = MNIST(mnist.train_images[:300], mnist.train_labels[:300], mnist.test_images[:100], mnist.test_labels[:100])
    configs = [fp.LAB2009.replace(epochs=1, train_size=120, seed=s) for s in range(3)]
    alone = [train_reference(c, small) for c in configs]
    eager = fit(configs, small, engine="eager")
    paths = [eager]
    if engine.kernel_fits(configs)[0]:
        paths.append(fit(configs, small, engine="kernel"))
        assert paths[-1][0].engine == "kernel"
    for results in paths:
        for r, ref in zip(results, alone):
            assert r.state["layers.F6.weight"].shape == (10, 120)
            for p in ref.state:
                torch.testing.assert_close(r.state[p], ref.state[p], rtol=0, atol=1e-4, msg=p)
            assert r.history[-1]["test_error"] == pytest.approx(ref.history[-1]["test_error"], abs=1.01)


def test_the_first_hessian_sample_is_the_files_first_patterns(mnist):
    from lenet1998.patterns import TrainingPatterns

    config = PAPER.replace(sdlm_samples=100, sdlm_sample="first", train_size=500)
    ts = TrainingPatterns(config, mnist)
    assert torch.equal(ts.hessian_sample(1), ts.images[:100]) and torch.equal(ts.hessian_sample(7), ts.images[:100])


def test_train_without_the_pass1_file_says_so_in_one_line(tmp_path):
    from click.testing import CliRunner

    result = CliRunner().invoke(fp.main, ["train", "--out", str(tmp_path / "results")])
    assert result.exit_code == 2 and "pass1.csv is missing" in result.output and "Traceback" not in result.output
    assert not (tmp_path / "results").exists()
