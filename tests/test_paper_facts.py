"""The architecture's paper facts: counts, Table I, squashing, bitmaps, init bounds."""

import pytest
import torch
import torch.nn.functional as F

from lenet1998.config import LeNetConfig
from lenet1998.layers import A, C3_TABLE, S, Conv, ScaledTanh, TrainableSubsampling, bitmaps_from_json, load_bitmaps
from lenet1998.model import PAPER_COUNTS, PAPER_TOTALS, LeNet5

from .conftest import SHARED_SPEC


def test_every_layer_has_the_papers_parameters_and_connections():
    counts = LeNet5(LeNetConfig()).counts()
    for layer, expected in PAPER_COUNTS.items():
        assert counts[layer] == expected, layer
    assert counts["total"] == PAPER_TOTALS == (60000, 340908)
    model = LeNet5(LeNetConfig())
    # Trainable tensors minus the entries Table I leaves out: exactly 60,000 free parameters.
    masked_out = int((model.layers["C3"].mask == 0).sum()) * 25
    assert sum(p.numel() for p in model.parameters()) - masked_out == 60000


def test_full_c3_has_2416_parameters():
    counts = LeNet5(LeNetConfig(c3_table="full")).counts()
    assert counts["C3"][0] == 2416


def test_c3_mask_is_table_one():
    conv = LeNet5(LeNetConfig()).layers["C3"]
    table = torch.tensor(C3_TABLE, dtype=torch.float32)  # (S2 maps, C3 maps)
    assert torch.equal(conv.mask[:, :, 0, 0].t(), table)
    assert [int(c) for c in table.sum(0)] == [3] * 6 + [4] * 9 + [6]
    assert "mask" in dict(conv.named_buffers())
    assert "mask" not in dict(conv.named_parameters())


def test_masked_c3_equals_per_map_convolutions():
    g = torch.Generator().manual_seed(0)
    conv = Conv(6, 16, table=C3_TABLE)
    with torch.no_grad():
        conv.weight.copy_(torch.randn(conv.weight.shape, generator=g))
        conv.bias.copy_(torch.randn(16, generator=g))
    x = torch.randn(2, 6, 14, 14, generator=g)
    out = conv.linear(x, (conv.weight, conv.bias))
    for o in range(16):
        maps = [s for s in range(6) if C3_TABLE[s][o]]
        ref = F.conv2d(x[:, maps], conv.weight[o:o + 1, maps], conv.bias[o:o + 1])
        torch.testing.assert_close(out[:, o:o + 1], ref, rtol=1e-5, atol=1e-5)


def test_one_pattern_and_a_batch_give_the_same_network_output():
    model = LeNet5(LeNetConfig()).initialize(0)
    x = torch.randn(4, 1, 32, 32)
    batched = model(x)
    single = torch.cat([model(x[n:n + 1]) for n in range(4)])
    torch.testing.assert_close(batched, single, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("average", [True, False])
def test_subsampling_maps_are_independent_and_follow_the_formula(average):
    layer = TrainableSubsampling(6, average=average)
    with torch.no_grad():
        layer.coef.copy_(torch.arange(1.0, 7.0))
        layer.bias.copy_(torch.arange(6.0) / 10)
    x = torch.randn(1, 6, 28, 28)
    out = layer.linear(x, (layer.coef, layer.bias))
    assert out.shape == (1, 6, 14, 14)
    block = x[0, 2, 4:6, 6:8]
    s = block.mean() if average else block.sum()
    torch.testing.assert_close(out[0, 2, 2, 3], 3.0 * s + 0.2)
    bumped = x.clone()
    bumped[0, 4] += 1.0
    changed = (layer.linear(bumped, (layer.coef, layer.bias)) - out).abs().flatten(2).amax(-1)[0]
    assert changed[4] > 0
    assert torch.all(changed[[0, 1, 2, 3, 5]] == 0)


def test_squashing_is_the_papers():
    f = ScaledTanh()
    assert A == 1.7159 and S == pytest.approx(2 / 3)
    assert float(f(torch.tensor(1.0))) == pytest.approx(1.0, abs=1e-5)
    assert float(f(torch.tensor(-1.0))) == pytest.approx(-1.0, abs=1e-5)
    a = torch.linspace(-3, 3, 13, requires_grad=True)
    (grad,) = torch.autograd.grad(f(a).sum(), a)
    torch.testing.assert_close(f.derivative(a.detach()), grad)


def test_rbf_bitmaps_are_the_papers_figure_3():
    codes = load_bitmaps()
    assert codes.shape == (10, 84)
    assert set(codes.unique().tolist()) == {-1.0, 1.0}
    json_path = SHARED_SPEC / "rbf_digit_bitmaps_fig3.json"
    if json_path.is_file():
        assert torch.equal(codes, bitmaps_from_json(json_path))
    # Spot check "1" (Fig. 3): row 9 is .######
    assert codes[1].view(12, 7)[9].tolist() == [-1] + [1] * 6


def test_rbf_output_is_squared_distance_and_prediction_is_the_smallest():
    model = LeNet5(LeNetConfig())
    codes = load_bitmaps()
    x = codes[[3, 7]].view(2, 1, 84)  # F6 exactly on the codes of 3 and 7
    y = model.head(x)
    assert y.shape == (2, 1, 10)
    assert float(y[0, 0, 3]) == 0 and float(y[1, 0, 7]) == 0
    assert float(y[0, 0, 8]) == float(((codes[3] - codes[8]) ** 2).sum())
    assert model.predict(y)[:, 0].tolist() == [3, 7]


@pytest.mark.parametrize("rule,scale", [("paper", lambda f: 2.4 / f), ("paper_sqrt", lambda f: 2.4 / f ** 0.5)])
def test_init_bounds_follow_fan_in(rule, scale):
    model = LeNet5(LeNetConfig(init=rule)).initialize(0)
    c3 = model.layers["C3"]
    for o in range(16):
        fan = 25 * sum(C3_TABLE[s][o] for s in range(6))
        w = c3.weight[o][c3.mask[o, :, 0, 0].bool()]
        assert w.abs().max() <= scale(fan)
        assert w.abs().max() > 0.8 * scale(fan)  # the bound is used, not something smaller
    assert model.layers["C1"].weight.abs().max() <= scale(25)
    assert model.layers["C5"].weight.abs().max() <= scale(400)
    assert model.layers["F6"].weight.abs().max() <= scale(120)
    assert model.layers["S2"].coef.abs().max() <= scale(4)
    # Weights Table I leaves out are zero.
    assert torch.all(c3.weight[~c3.mask.expand_as(c3.weight).bool()] == 0)


def test_summary_prints_the_papers_counts():
    from click.testing import CliRunner

    from experiments.summary import main

    result = CliRunner().invoke(main, [])
    assert result.exit_code == 0
    lines = {line.split()[0]: line.split() for line in result.output.splitlines()[3:]}
    assert lines["C3"][-4:] == ["1,516", "151,600", "1,516", "151,600"]
    assert lines["total"][-4:] == ["60,000", "340,908", "60,000", "340,908"]
    assert lines["F6"][2] == "84"
    assert CliRunner().invoke(main, ["--variant", "lenet7"]).exit_code == 2
