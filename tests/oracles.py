"""A brute-force oracle for SDLM's h_kk (LeCun et al. 1998, Appendix C) and the tiny network it checks.

The oracle recomputes the Gauss-Newton diagonal with explicit loops over units and connections,
in float64, with nothing from lenet1998.sdlm:
    h_kk        = sum_{(i,j) in V_k} d2E/du_ij^2             over the connections sharing w_k (Eq. 23)
    d2E/du_ij^2 = d2E/da_i^2 x_j^2                           (Eq. 25)
    d2E/da_i^2  = f'(a_i)^2 sum_k u_ki^2 d2E/da_k^2          (Eq. 27), seeded f'(a)^2 c at the output
Used by tests/test_loss_and_sdlm.py (the table conv head) and tests/test_variants_grid.py (both
readings of the S2/S4 coefficient's h).
"""

import numpy as np
import torch
from torch import nn

from lenet1998.layers import Conv, FullyConnected, ScaledTanh, TrainableSubsampling

A, S = 1.7159, 2 / 3  # f(a) = A tanh(S a), Sec. II-A and Appendix A
SCALE = 1 / 4  # the average's weight on each of a subsampling unit's 4 inputs


class TinyNet(nn.Module):
    """conv 3x3 (1 -> 2) on 6x6 -> trainable average subsampling (2 maps, 4x4 -> 2x2) -> a head:
    head="table": table conv 2x2 (2 -> 3, TABLE) -> full (3 -> 4);  head="full": full (8 -> 3).
    `reading` is the subsampling coefficient's h reading (LeNetConfig.sdlm_subsampling_h)."""

    TABLE = ((1, 0, 1), (0, 1, 1))  # TABLE[in][out], as Table I

    def __init__(self, head="table", reading="per_connection", seed=1):
        super().__init__()
        self.l1 = Conv(1, 2, kernel=3)
        self.l2 = TrainableSubsampling(2, average=True, h_reading=reading)
        if head == "table":
            self.l3, self.l4 = Conv(2, 3, table=self.TABLE, kernel=2), FullyConnected(3, 4)
            self.stack = (self.l1, self.l2, self.l3, self.l4)
        elif head == "full":
            self.l3 = FullyConnected(8, 3)
            self.stack = (self.l1, self.l2, self.l3)
        else:
            raise ValueError(head)
        self.f = ScaledTanh()
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.rand(p.shape, generator=g, dtype=p.dtype) * 1.6 - 0.8)

    def forward(self, x, trace=None):
        for layer in self.stack:
            a = layer.linear(x, tuple(layer.parameters()))
            if trace is not None:
                trace.append((layer, self.f, x, a))
            x = self.f(a)
        return x


def brute_force_h(net, images, c, reading="per_connection", table=None):
    """h_kk of every parameter of a TinyNet by Eqs. (23), (25), (27), averaged over `images`.

    reading: the subsampling coefficient's h, with s = 1/4 and x_j its unit's 4 inputs:
      "per_connection": sum_units d2E/da^2 sum_j (s x_j)^2   (Eq. 23, cross terms dropped)
      "shared_sum":     sum_units d2E/da^2 (s sum_j x_j)^2    (its 4 connections' cross terms kept)
    table: the connection table of l3 when it is the 2x2 table conv (TinyNet.TABLE), None when it
    is a full layer. The head l3 (, l4) is taken as full layers on the 8 subsampled units: a 2x2
    conv on 2x2 maps has one unit per output map, connected to the 2x2 units of its table's maps.
    """
    assert reading in ("per_connection", "shared_sum"), reading
    f = lambda a: A * np.tanh(S * a)
    fp2 = lambda a: (A * S * (1 - np.tanh(S * a) ** 2)) ** 2  # f'(a)^2
    P = {k: v.detach().double().numpy() for k, v in net.named_parameters()}
    w1, b1, co, b2 = P["l1.weight"], P["l1.bias"], P["l2.coef"], P["l2.bias"]
    h = {k: np.zeros_like(v) for k, v in P.items()}
    # The head as (name, weight (out, in), mask (out, in)); the input index is (map, u, v) flattened.
    head = []
    for name in ("l3", "l4"):
        if f"{name}.weight" in P:
            w = P[f"{name}.weight"].reshape(len(P[f"{name}.bias"]), -1)
            mask = np.ones_like(w)
            if name == "l3" and table is not None:
                mask = np.repeat(np.array(table).T, w.shape[1] // len(table), axis=1)  # each map's 2x2 units
            head.append((name, w, mask))
    for x in images.double().numpy()[:, 0]:
        # Forward, unit by unit.
        a1 = np.array([[[sum(w1[o, 0, u, v] * x[i + u, j + v] for u in range(3) for v in range(3)) + b1[o]
                         for j in range(4)] for i in range(4)] for o in range(2)])
        x1 = f(a1)
        a2 = np.array([[[co[m] * sum(SCALE * x1[m, 2 * i + u, 2 * j + v] for u in range(2) for v in range(2)) + b2[m]
                         for j in range(2)] for i in range(2)] for m in range(2)])
        acts, outs = [a2.reshape(-1)], [f(a2).reshape(-1)]
        for name, w, mask in head:
            acts.append(np.array([sum(w[o, i] * outs[-1][i] for i in range(w.shape[1]) if mask[o, i]) + b
                                  for o, b in enumerate(P[f"{name}.bias"])]))
            outs.append(f(acts[-1]))
        # Backward: d2E/da^2 of the output units, seeded with f'(a)^2 c (Eq. 27).
        d = fp2(acts[-1]) * c
        for k in reversed(range(len(head))):
            name, w, mask = head[k]
            hw = h[f"{name}.weight"].reshape(w.shape)  # a view: accumulates into h
            for o in range(w.shape[0]):
                h[f"{name}.bias"][o] += d[o]
                for i in range(w.shape[1]):
                    if mask[o, i]:
                        hw[o, i] += d[o] * outs[k][i] ** 2  # Eq. (25); no sharing in the head
            # Eq. (27): d2E/da^2 of the layer below, through the table's connections only.
            d = fp2(acts[k]) * np.array([sum(w[o, i] ** 2 * d[o] for o in range(w.shape[0]) if mask[o, i])
                                         for i in range(w.shape[1])])
        d2 = d.reshape(2, 2, 2)  # d2E/da^2 of the subsampling units
        d1 = np.zeros((2, 4, 4))
        for m in range(2):
            for i in range(2):
                for j in range(2):
                    inputs = [SCALE * x1[m, 2 * i + u, 2 * j + v] for u in range(2) for v in range(2)]  # s x_j
                    h["l2.bias"][m] += d2[m, i, j]
                    if reading == "shared_sum":
                        h["l2.coef"][m] += d2[m, i, j] * sum(inputs) ** 2  # (s sum_j x_j)^2
                    else:
                        h["l2.coef"][m] += d2[m, i, j] * sum(sx ** 2 for sx in inputs)  # Eq. (23): sum_j (s x_j)^2
                    for u in range(2):
                        for v in range(2):  # the same in both readings: (s c)^2 d2E/da^2 (Eq. 27)
                            d1[m, 2 * i + u, 2 * j + v] = fp2(a1[m, 2 * i + u, 2 * j + v]) * (SCALE * co[m]) ** 2 * d2[m, i, j]
        for o in range(2):
            for i in range(4):
                for j in range(4):
                    h["l1.bias"][o] += d1[o, i, j]
                    for u in range(3):
                        for v in range(3):  # Eq. (23): the 3x3 kernel shared over the 4x4 units
                            h["l1.weight"][o, 0, u, v] += d1[o, i, j] * x[i + u, j + v] ** 2
    return {k: v / len(images) for k, v in h.items()}
