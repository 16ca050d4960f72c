"""The criteria of Eqs. (8)-(9) and SDLM (Appendix C) against plain reference computations."""

import math

import numpy as np
import pytest
import torch
from torch import nn

from lenet1998.config import LeNetConfig
from lenet1998.layers import Conv, FullyConnected, ScaledTanh, TrainableSubsampling
from lenet1998.loss import map_loss, mle_loss
from lenet1998.model import LeNet5
from lenet1998.sdlm import SDLM, SGD, hessian_diagonal


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


class TinyNet(nn.Module):
    """conv 3x3 (1->2) -> average subsampling -> table conv 2x2 (2->3) -> full (3->4)."""

    TABLE = ((1, 0, 1), (0, 1, 1))

    def __init__(self):
        super().__init__()
        self.l1, self.l2 = Conv(1, 2, kernel=3), TrainableSubsampling(2, average=True)
        self.l3, self.l4 = Conv(2, 3, table=self.TABLE, kernel=2), FullyConnected(3, 4)
        self.f = ScaledTanh()
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.rand(p.shape, generator=g) * 1.6 - 0.8)

    def forward(self, x, trace=None):
        for layer in (self.l1, self.l2, self.l3, self.l4):
            a = layer.linear(x, tuple(layer.parameters()))
            if trace is not None:
                trace.append((layer, self.f, x, a))
            x = self.f(a)
        return x


def brute_force_h(net, images, c):
    """Eqs. (23), (25), (27) with explicit loops over units and connections, in float64."""
    A, S = 1.7159, 2 / 3
    f = lambda a: A * np.tanh(S * a)
    fp2 = lambda a: (A * S * (1 - np.tanh(S * a) ** 2)) ** 2
    P = {k: v.detach().double().numpy() for k, v in net.named_parameters()}
    w1, b1, co, b2 = P["l1.weight"], P["l1.bias"], P["l2.coef"], P["l2.bias"]
    w3, b3, w4, b4 = P["l3.weight"], P["l3.bias"], P["l4.weight"], P["l4.bias"]
    T = np.array(TinyNet.TABLE)
    h = {k: np.zeros_like(v) for k, v in P.items()}
    for x in images.double().numpy():
        x = x[0]
        a1 = np.zeros((2, 4, 4))
        for o in range(2):
            for i in range(4):
                for j in range(4):
                    a1[o, i, j] = sum(w1[o, 0, u, v] * x[i + u, j + v] for u in range(3) for v in range(3)) + b1[o]
        x1 = f(a1)
        a2 = np.zeros((2, 2, 2))
        for ch in range(2):
            for i in range(2):
                for j in range(2):
                    a2[ch, i, j] = co[ch] * sum(x1[ch, 2 * i + u, 2 * j + v] / 4 for u in range(2) for v in range(2)) + b2[ch]
        x2 = f(a2)
        a3 = np.array([sum(w3[o, ch, u, v] * x2[ch, u, v] for ch in range(2) if T[ch, o]
                           for u in range(2) for v in range(2)) + b3[o] for o in range(3)])
        x3 = f(a3)
        a4 = np.array([sum(w4[o, i] * x3[i] for i in range(3)) + b4[o] for o in range(4)])
        d2a4 = fp2(a4) * c
        for o in range(4):
            for i in range(3):
                h["l4.weight"][o, i] += d2a4[o] * x3[i] ** 2
            h["l4.bias"][o] += d2a4[o]
        d2a3 = fp2(a3) * np.array([sum(w4[o, i] ** 2 * d2a4[o] for o in range(4)) for i in range(3)])
        d2x2 = np.zeros((2, 2, 2))
        for o in range(3):
            h["l3.bias"][o] += d2a3[o]
            for ch in range(2):
                if T[ch, o]:
                    for u in range(2):
                        for v in range(2):
                            h["l3.weight"][o, ch, u, v] += d2a3[o] * x2[ch, u, v] ** 2
                            d2x2[ch, u, v] += w3[o, ch, u, v] ** 2 * d2a3[o]
        d2a2 = fp2(a2) * d2x2
        d2x1 = np.zeros((2, 4, 4))
        for ch in range(2):
            for i in range(2):
                for j in range(2):
                    h["l2.bias"][ch] += d2a2[ch, i, j]
                    for u in range(2):
                        for v in range(2):
                            # connection weight coef/4, input x1: (coef/4)^2 backwards, (x1/4)^2 for coef
                            h["l2.coef"][ch] += d2a2[ch, i, j] * (x1[ch, 2 * i + u, 2 * j + v] / 4) ** 2
                            d2x1[ch, 2 * i + u, 2 * j + v] += (co[ch] / 4) ** 2 * d2a2[ch, i, j]
        d2a1 = fp2(a1) * d2x1
        for o in range(2):
            for i in range(4):
                for j in range(4):
                    h["l1.bias"][o] += d2a1[o, i, j]
                    for u in range(3):
                        for v in range(3):
                            h["l1.weight"][o, 0, u, v] += d2a1[o, i, j] * x[i + u, j + v] ** 2
    return {k: v / len(images) for k, v in h.items()}


def test_hessian_diagonal_equals_brute_force_gauss_newton():
    net = TinyNet()
    images = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(2)) * 2 - 0.5
    got = hessian_diagonal(net, images, 2.0)
    want = brute_force_h(net, images, 2.0)
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
