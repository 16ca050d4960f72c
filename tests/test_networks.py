"""The other networks of Fig. 9 (lenet1998/networks.py): their counts against the paper's, and
that the same code trains them (per-pattern SDLM through their trace)."""

import pytest
import torch

from lenet1998.config import ConfigError, LeNetConfig
from lenet1998.networks import NETWORKS, PAPER_ROWS, build_model, crop

OTHER = [n for n in NETWORKS if n != "lenet5"]
FULLY_CONNECTED = [n for n in OTHER if n == "linear" or n.startswith("fc")]


def config_of(network, **changes):
    return LeNetConfig(network=network, output="targets", loss="mle", **changes)


def recognition_cost(model):
    """(parameters, multiply-adds of one recognition): the head's comparison with the +-1 targets
    is a training cost, not part of recognising (the class is the largest output)."""
    counts = model.counts()
    params, connections = counts["total"]
    return params, connections - counts["OUTPUT"][1]


@pytest.mark.parametrize("network", FULLY_CONNECTED)
def test_counts_match_the_papers_figures_11_and_12(network):
    params, multiply_adds = recognition_cost(build_model(config_of(network)))
    paper = PAPER_ROWS[network]
    if paper["memory_k"] is not None:  # thousands, as the figures round them
        assert round(params / 1000) == paper["memory_k"]
        assert round(multiply_adds / 1000) == paper["multiply_adds_k"]
    assert multiply_adds == params  # fully connected: one multiply-add per weight and bias


def test_lenet1_has_the_papers_counts_and_sees_a_16x16_digit():
    """Sec. III-C.6: about 2,600 free parameters and about 100,000 multiply-adds (Fig. 11/12:
    100 thousand and 3 thousand); 2,578 parameters (NIPS 1989, via secondary sources)."""
    from lenet1998.networks import small_centred

    model = build_model(config_of("lenet1"))
    params, multiply_adds = recognition_cost(model)
    assert params == 2578 and round(params / 1000) == PAPER_ROWS["lenet1"]["memory_k"]
    assert abs(multiply_adds - 100_000) / 100_000 < 0.05  # "about 100,000"
    assert model.counts()["C3"][0] == 20 * 25 + 12  # 20 connections of 5x5, 12 biases
    x = torch.full((1, 1, 32, 32), -0.1)
    x[..., 2:30, 2:30] = 1.175  # a full-field black image in the paper's coding
    small = small_centred(x)[0, 0]
    assert torch.allclose(small[6:22, 6:22], torch.tensor(1.175)) and torch.allclose(small[:6], torch.tensor(-0.1))


def test_lenet4_is_the_reading_nearest_the_papers_counts():
    """Sec. III-C.7: "about 260,000 connections and ... about 17,000 free parameters" with 4 C1
    maps, 8 S2 maps in pairs over them, 16 C3 and S4 maps, 120 units fully connected, 10
    outputs. Among readings of the unstated sizes (28x28 or 32x32 input, 5x5 C1, a 3x3, 5x5 or
    7x7 C3 kernel with any number of connections), ours is the one nearest both counts (the sum
    of the two |log ratios|, within 0.02 of the nearest: C3 maps of 6 inputs each), and no
    reading is within 25% of both."""
    import math

    from lenet1998.networks import LENET4_C3

    model = build_model(config_of("lenet4"))
    params, multiply_adds = recognition_cost(model)
    assert (params, multiply_adds) == (23_482, 254_914)
    assert sum(map(sum, LENET4_C3)) == 96 and model.counts()["S2"] == (16, 8 * 12 * 12 * 5)

    def counts(side, k3, connections):  # 4 C1 maps 5x5, 8 S2 maps, 16 C3 maps, 16 S4, 120, 10
        c1, s2 = side - 4, (side - 4) // 2
        c3 = s2 - k3 + 1
        if c3 < 2 or c3 % 2:
            return None
        s4 = c3 // 2
        p3 = k3 * k3 * connections + 16
        p = 4 * 26 + 16 + p3 + 32 + 120 * (16 * s4 * s4 + 1) + 1210
        return p, 4 * 26 * c1 * c1 + 8 * s2 * s2 * 5 + p3 * c3 * c3 + 16 * s4 * s4 * 5 + p - 4 * 26 - 16 - p3 - 32

    def distance(c):
        return abs(math.log(c[0] / 17_000)) + abs(math.log(c[1] / 260_000))

    readings = [c for side in (28, 32) for k3 in (3, 5, 7) for t in range(16, 129) if (c := counts(side, k3, t))]
    assert counts(28, 7, 96) == (params, multiply_adds)
    assert distance((params, multiply_adds)) <= min(map(distance, readings)) + 0.02  # 96 connections: 6 of 8 per map
    assert not any(abs(p / 17_000 - 1) < 0.25 and abs(m / 260_000 - 1) < 0.25 for p, m in readings)
    x = torch.rand(3, 1, 32, 32)
    assert model(x).shape == (3, 10)


def test_the_linear_classifier_has_7850_parameters_and_no_squashing():
    model = build_model(config_of("linear"))
    assert model.counts()["total"][0] == 7850  # Sec. III-C.1: 784 x 10 + 10
    x = torch.randn(4, 1, 32, 32) * 10
    a = model.layers["F"].linear(crop(x).flatten(1), model.params("F"))
    target = 2 * torch.eye(10) - 1
    assert torch.allclose(model(x), ((a.unsqueeze(1) - target) ** 2).sum(-1))  # no squashing on F
    assert torch.equal(model.predict(model(x)), a.argmax(1))  # the largest sum is the class


def test_the_input_layer_sees_the_28x28_image_without_the_padding():
    x = torch.zeros(1, 1, 32, 32)
    x[..., :2, :] = 100.0  # padding only
    model = build_model(config_of("fc300"))
    assert torch.equal(model(x), model(torch.zeros(1, 1, 32, 32)))


def test_a_network_without_the_target_head_is_refused():
    with pytest.raises(ConfigError, match="output='targets'"):
        LeNetConfig(network="fc300")
    assert LeNetConfig().digest() == "cabe4ba7ef8e"  # the new field left every existing run's name alone


@pytest.mark.parametrize("network", ["linear", "fc300_100", "lenet1"])
def test_per_pattern_sdlm_trains_them(mnist, network):
    from lenet1998.reference import train

    config = config_of(network, epochs=2, train_size=500, sdlm_samples=50)
    result = train(config, mnist)
    first, last = result.history[0], result.history[-1]
    assert last["train_loss"] < first["train_loss"] and last["test_error"] < 50.0
    assert set(result.state) == {n for n, _ in build_model(config).named_parameters()}


def test_the_layer_table_counts_each_variants_own_network():
    """`experiments.summary --variant net_lenet1` counts the variant's network, not LeNet-5's."""
    from experiments.summary import layer_rows
    from experiments.variants import VARIANTS

    rows = layer_rows(VARIANTS["net_lenet1"].config)
    assert [r[0] for r in rows] == ["INPUT", "C1", "S2", "C3", "S4", "F", "OUTPUT", "total"]
    assert rows[-1][3] == 2578 and rows[-1][5] == ""  # no paper per-layer counts for LeNet-1
    assert layer_rows(VARIANTS["paper"].config)[-1][3:] == (60000, 340908, 60000, 340908)
