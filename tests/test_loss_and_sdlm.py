"""The criteria of Eqs. (8)-(9) and SDLM (Appendix C) against plain reference computations."""

import math

import numpy as np
import pytest
import torch

from lenet1998.config import LeNetConfig
from lenet1998.loss import map_loss, mle_loss
from lenet1998.model import LeNet5
from lenet1998.sdlm import SDLM, SGD, hessian_diagonal

from .oracles import TinyNet, brute_force_h


def test_map_loss_equals_equation_9():
    g = torch.Generator().manual_seed(0)
    y = torch.rand(4, 2, 10, generator=g, dtype=torch.float64) * 8
    d = torch.randint(0, 10, (4, 2), generator=g)
    j = 3.0
    got = map_loss(y, d, j)
    for n in range(4):
        for k in range(2):
            ref = float(y[n, k, d[n, k]]) + math.log(math.exp(-j) + sum(math.exp(-float(v)) for v in y[n, k]))
            assert float(got[n, k]) == pytest.approx(ref, rel=1e-12)
    assert torch.equal(mle_loss(y, d), y.gather(-1, d.unsqueeze(-1)).squeeze(-1))


def test_map_loss_is_finite_for_huge_penalties():
    y = torch.full((1, 1, 10), 1e4)
    y[0, 0, 3] = 5e3
    loss = map_loss(y, torch.tensor([[3]]), 10.0)
    assert torch.isfinite(loss).all()
    # All penalties far above j: the rubbish term dominates, E = y_D - j.
    assert float(loss) == pytest.approx(5e3 - 10.0)
    # A large j: every exp underflows in float32, and log(sum(exp)) would be log(0).
    big = map_loss(y, torch.tensor([[3]]), 1000.0)
    assert float(big) == pytest.approx(5e3 - 1000.0)
    y.requires_grad_()
    (g,) = torch.autograd.grad(map_loss(y, torch.tensor([[3]]), 10.0).sum(), y)
    assert torch.isfinite(g).all()


def test_eta_schedule_is_the_papers():
    paper = LeNetConfig()
    assert paper.epochs == 20 and paper.sdlm_mu == 0.02 and paper.sdlm_samples == 500
    etas = [paper.step_size(p) for p in range(1, 21)]
    assert etas == [5e-4] * 2 + [2e-4] * 3 + [1e-4] * 3 + [5e-5] * 4 + [1e-5] * 8
    sgd = paper.replace(optimizer="sgd")
    assert sgd.step_size(1) == pytest.approx(5e-4 / 0.02) and sgd.step_size(20) == pytest.approx(1e-5 / 0.02)
    assert sgd.replace(lr=0.003).step_size(7) == 0.003


def test_hessian_diagonal_equals_brute_force_gauss_newton():
    net = TinyNet(head="table")  # conv -> subsampling -> table conv -> full, float32
    images = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(2)) * 2 - 0.5
    got = hessian_diagonal(net, images, 2.0)
    want = brute_force_h(net, images, 2.0, table=TinyNet.TABLE)
    for (name, _), h in zip(net.named_parameters(), got):
        np.testing.assert_allclose(h.double().numpy(), want[name], rtol=1e-4, atol=1e-9, err_msg=name)
    assert float(got[0].abs().sum()) > 0


def test_hessian_diagonal_of_lenet5_is_nonnegative_and_zero_off_table():
    model = LeNet5(LeNetConfig()).initialize(0)
    x = torch.randn(20, 1, 32, 32)
    h = dict(zip([n for n, _ in model.named_parameters()], hessian_diagonal(model, x, 2.0)))
    assert all(bool((v >= 0).all()) for v in h.values())
    mask = model.layers["C3"].mask.expand_as(h["layers.C3.weight"]).bool()
    assert torch.all(h["layers.C3.weight"][~mask] == 0)
    assert torch.all(h["layers.C3.weight"][mask] > 0)


def test_sdlm_with_zero_curvature_is_sgd_at_eta_over_mu():
    config = LeNetConfig()
    a, b = LeNet5(config).initialize(0), LeNet5(config.replace(optimizer="sgd")).initialize(0)
    sdlm, sgd = SDLM(a, config), SGD(b, config.replace(optimizer="sgd"))
    sdlm.curvature = lambda sample: [torch.zeros_like(p) for p in a.parameters()]  # h = 0
    sdlm.begin_pass(1)
    sgd.begin_pass(1)
    x, y = torch.randn(1, 1, 32, 32), torch.tensor([4])
    for model, rule in ((a, sdlm), (b, sgd)):
        loss = map_loss(model(x), y, 10.0).sum()
        rule.step(torch.autograd.grad(loss, list(model.parameters())))
    for p, q in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(p, q, rtol=0, atol=1e-7)
    assert all(float(e.max()) == pytest.approx(5e-4 / 0.02) for e in sgd.eps)


@pytest.mark.parametrize("optimizer", ["sdlm", "sgd", "adam"])
def test_weights_outside_table_one_never_change(optimizer, mnist):
    from lenet1998.train import fit

    config = LeNetConfig(optimizer=optimizer, epochs=1, train_size=200, sdlm_samples=50,
                         batch_size=1 if optimizer != "adam" else 10)
    (result,) = fit(config, mnist, engine="eager")
    w = result.state["layers.C3.weight"]
    mask = LeNet5(config).layers["C3"].mask.expand_as(w).bool()
    assert torch.all(w[~mask] == 0)
    assert torch.all(w[mask] != 0)
