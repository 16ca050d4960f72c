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
