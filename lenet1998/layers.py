"""The layers of LeNet-5, for one network.

Paper: Sec. II-B, Eqs. (5)-(7), Table I, Fig. 2-3.

Every trainable layer computes a *linear part* a = sum_j w_ij x_j + b_i (Eq. 5), followed by a
squashing function x_i = f(a_i) chosen separately (registry `SQUASHING`). Splitting the two
lets SDLM (lenet1998/sdlm.py) backpropagate second derivatives through the same linear part
with squared weights (Eqs. 25, 27): each layer's `linear(x, params, squared=False,
reference=None)` computes a with the given parameters; `squared=True` squares every fixed
constant of the map as well (the 1/4 of an average; a 0/1 mask is unchanged); `reference` is
the real input, for layers whose routing depends on it (max pooling).

Registries declared here: `SQUASHING` (f), `SUBSAMPLING` (S2/S4), `C3_TABLES` (C3's
connections) and `OUTPUT` (the output layer). The fast engine (lenet1998/engine/) trains
many networks at once; it holds its own copies of these layers and is tested against them.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .registry import Registry

# Eq. (6) and Appendix A: f(a) = A tanh(S a).
A = 1.7159
S = 2.0 / 3.0

# Table I: T[s2][c3] = 1 where C3 map c3 takes S2 map s2 as input.
C3_TABLE = (
    (1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1),
    (1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1),
    (1, 1, 1, 0, 0, 0, 1, 1, 1, 0, 0, 1, 0, 1, 1, 1),
    (0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 0, 1, 0, 1, 1),
    (0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 0, 1),
    (0, 0, 0, 1, 1, 1, 0, 0, 1, 1, 1, 1, 0, 1, 1, 1),
)

# The Fig. 3 bitmaps as package data (lenet1998/bitmaps/, read with importlib.resources, so that an
# installed wheel has them); data/RBF/ at the top of the repository is the same ten files for
# people to read (tests/test_package.py checks that the two are equal).
BITMAPS = resources.files(__package__) / "bitmaps"
BITMAP_ROWS, BITMAP_COLS = 12, 7  # Fig. 3: 7x12 bitmaps, hence F6 has 84 units


# --------------------------------------------------------------------------------------------
# Squashing functions. Each has f(a) and f'(a); f' enters the h_kk recursion of Eq. (27).


class ScaledTanh(nn.Module):
    """The paper's squashing function f(a) = A tanh(S a), A = 1.7159, S = 2/3.

    Paper: Sec. II-B, Eq. (6); Appendix A. f(1) = 1, f(-1) = -1, f'(0) = A S = 1.1439.
    """

    amplitude, slope = A, S

    def forward(self, a):
        return A * torch.tanh(S * a)

    def derivative(self, a):
        return A * S * (1 - torch.tanh(S * a) ** 2)


class Tanh(nn.Module):
    """Plain tanh (modern counterpart; not in the paper)."""

    amplitude, slope = 1.0, 1.0

    def forward(self, a):
        return torch.tanh(a)

    def derivative(self, a):
        return 1 - torch.tanh(a) ** 2


class ReLU(nn.Module):
    """max(0, a) (modern counterpart; not in the paper)."""

    def forward(self, a):
        return torch.relu(a)

    def derivative(self, a):
        return (a > 0).to(a.dtype)


class Identity(nn.Module):
    """No squashing: after parameter-free pooling, and for the linear output layer."""

    def forward(self, a):
        return a

    def derivative(self, a):
        return torch.ones_like(a)


SQUASHING = Registry("squashing", {"scaled_tanh": ScaledTanh, "tanh": Tanh, "relu": ReLU})


# --------------------------------------------------------------------------------------------
# Linear parts.


class Conv(nn.Module):
    """A valid 5x5 convolution with one bias per map, optionally with a connection table.

    Paper: Sec. II-B (C1, C3, C5) and Table I (C3).
    Formula: a_i = sum_{s in inputs(i)} sum_{5x5} w * x_s + b_i.
    Counts: C1 156 params / 122,304 connections; C3 with Table I 1,516 / 151,600; C5 48,120 /
    48,120. The table is a 0/1 buffer multiplied into the kernel, so a masked weight has zero
    gradient and zero second derivative, and never influences the output.
    """

    def __init__(self, in_maps, out_maps, table=None, kernel=5):
        super().__init__()
        self.in_maps, self.out_maps, self.kernel = in_maps, out_maps, kernel
        self.weight = nn.Parameter(torch.zeros(out_maps, in_maps, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(out_maps))
        full = [[1] * out_maps for _ in range(in_maps)]
        mask = torch.tensor(table if table is not None else full, dtype=torch.float32).t()  # (out, in)
        # fixed by the table, rebuilt from the config: not part of the state_dict
        self.register_buffer("mask", mask[:, :, None, None], persistent=False)  # (out, in, 1, 1)

    def inputs_per_map(self):
        """F_i / 25: the number of input maps connected to each output map."""
        return self.mask[:, :, 0, 0].sum(1)

    def linear(self, x, params, squared=False, reference=None):
        w, b = params
        return F.conv2d(x, w * self.mask, b)  # (N, out, H-4, W-4); Table I: absent connections add 0

    def free_entries(self, param):
        """Boolean mask of the entries of `param` that are real connections (Table I)."""
        if param is self.weight:
            return self.mask.expand_as(self.weight).bool()
        return torch.ones_like(param, dtype=torch.bool)

    def count(self, out_hw):
        """(trainable parameters, connections) for an output of out_hw."""
        params = int((self.inputs_per_map() * self.kernel**2 + 1).sum())  # weights + bias of each map
        return params, params * out_hw[0] * out_hw[1]


class TrainableSubsampling(nn.Module):
    """S2/S4: per map, the 2x2 inputs averaged (or summed), times a coefficient, plus a bias.

    Paper: Sec. II-B ("The four inputs to a unit in S2 are added, then multiplied by a
    trainable coefficient, and added to a trainable bias"); Sec. II-A says "average".
    Formula: a = c * s(x_2x2) + b with s = mean ("trainable_average") or sum
    ("trainable_sum"), then f. Each output map depends only on its own input map.
    Counts: S2 12 / 5,880; S4 32 / 2,000 (4 inputs + 1 bias per unit).
    Deviation: the default reads Sec. II-A (average); see LeNetConfig.subsampling.

    SDLM's h_kk of the coefficient (registry `SUBSAMPLING_H`, LeNetConfig.sdlm_subsampling_h):
    the coefficient is shared by the 4 connections of each unit, with da/dc = scale x_j each.
    "per_connection" (Eq. 23, the default): h_c = sum_units d2E/da^2 sum_j (scale x_j)^2, the
    4 connections' cross terms dropped like every other shared weight's. "shared_sum" (the
    reading of an independent implementation): h_c = sum_units d2E/da^2 (scale sum_j x_j)^2,
    the Gauss-Newton term of c itself, cross terms of its 4 connections kept. Only the
    coefficient's h changes; the second derivative passed down to the inputs,
    d2E/dx_j^2 = (scale c)^2 d2E/da^2 (Eq. 27), is the same in both readings.
    """

    def __init__(self, maps, average=True, h_reading="per_connection"):
        super().__init__()
        self.maps, self.scale = maps, 0.25 if average else 1.0
        self.keep_cross_terms = SUBSAMPLING_H[h_reading]
        self.coef = nn.Parameter(torch.zeros(maps))
        self.bias = nn.Parameter(torch.zeros(maps))

    def linear(self, x, params, squared=False, reference=None):
        c, b = params
        s = F.avg_pool2d(x, 2, divisor_override=1)  # (N, maps, H/2, W/2): the 2x2 sums
        scale = self.scale**2 if squared else self.scale
        a = torch.addcmul(b.view(-1, 1, 1), s, c.view(-1, 1, 1), value=scale)  # b + scale * c * s
        if squared and self.keep_cross_terms:
            # "shared_sum": d(a)/d(c^2) becomes scale^2 (sum_j x_j)^2 in place of scale^2 sum_j x_j^2;
            # the value of a and its derivative to the inputs (scale^2 c^2) are left as they are.
            shared = F.avg_pool2d(reference, 2, divisor_override=1).square()  # (sum_j x_j)^2
            dc = (c - c.detach()).view(-1, 1, 1)  # value 0, derivative 1 to c^2
            a = a + scale * dc * (shared - s).detach()
        return a

    def free_entries(self, param):
        return torch.ones_like(param, dtype=torch.bool)

    def count(self, out_hw):
        return 2 * self.maps, self.maps * out_hw[0] * out_hw[1] * 5


class Pool(nn.Module):
    """Parameter-free 2x2 average or max pooling (modern counterpart of S2/S4; not the paper)."""

    def __init__(self, maps, mode):
        super().__init__()
        self.maps, self.mode = maps, mode

    def forward(self, x):
        return self.linear(x)

    def linear(self, x, params=(), squared=False, reference=None):
        if self.mode == "avg":
            out = F.avg_pool2d(x, 2)  # (N, C, H/2, W/2)
            return out / 4 if squared else out
        if reference is None:
            return F.max_pool2d(x, 2)  # (N, C, H/2, W/2)
        # Second-derivative pass: route through the positions that won in the real forward.
        _, idx = F.max_pool2d(reference, 2, return_indices=True)  # (N, C, H/2, W/2)
        return x.flatten(2).gather(2, idx.flatten(2)).view_as(idx)  # (N, C, H/2, W/2)

    def count(self, out_hw):
        return 0, self.maps * out_hw[0] * out_hw[1] * 4


# How SDLM's h_kk of an S2/S4 coefficient reads Eq. (23): True keeps the cross terms of its 4
# connections (see TrainableSubsampling).
SUBSAMPLING_H = Registry("sdlm_subsampling_h", {"per_connection": False, "shared_sum": True})

SUBSAMPLING = Registry("subsampling", {
    "trainable_average": lambda maps: TrainableSubsampling(maps, average=True),
    "trainable_sum": lambda maps: TrainableSubsampling(maps, average=False),
    "avg_pool": lambda maps: Pool(maps, "avg"),
    "max_pool": lambda maps: Pool(maps, "max"),
})

C3_TABLES = Registry("c3_table", {"paper": C3_TABLE, "full": None})  # None: every S2 map feeds every C3 map


class FullyConnected(nn.Module):
    """A full connection with biases.

    Paper: Sec. II-B (F6: 84 units, 10,164 params and connections).
    Formula: a_i = sum_j w_ij x_j + b_i. Input (N, in) or (N, in, 1, 1); output (N, out).
    """

    def __init__(self, in_features, out_features):
        super().__init__()
        self.in_features, self.out_features = in_features, out_features
        self.weight = nn.Parameter(torch.zeros(out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(out_features))

    def linear(self, x, params, squared=False, reference=None):
        w, b = params
        return F.linear(x.flatten(1), w, b)  # (N, out)

    def free_entries(self, param):
        return torch.ones_like(param, dtype=torch.bool)

    def count(self, out_hw=(1, 1)):
        params = self.out_features * (self.in_features + 1)
        return params, params


def load_bitmaps(folder=None) -> torch.Tensor:
    """The ten 7x12 bitmaps of Fig. 3 as a (10, 84) tensor of +-1, rows flattened top first.

    Each digit is a text file `<digit>.txt` of 12 lines of 7 characters: `#` = +1, `.` = -1.
    folder: where the ten files are (default: the package's own, BITMAPS).
    """
    codes = []
    for digit in range(10):
        path = (BITMAPS if folder is None else Path(folder)) / f"{digit}.txt"
        rows = path.read_text().split()
        if len(rows) != BITMAP_ROWS or any(len(r) != BITMAP_COLS or set(r) - {"#", "."} for r in rows):
            raise ValueError(f"{path}: expected {BITMAP_ROWS} rows of {BITMAP_COLS} '#'/'.' characters")
        codes.append([1.0 if ch == "#" else -1.0 for row in rows for ch in row])
    return torch.tensor(codes)


def bitmaps_from_json(path) -> torch.Tensor:
    """The same (10, 84) tensor from the shared JSON of Fig. 3 (used by the tests)."""
    data = json.loads(Path(path).read_text())
    return torch.tensor([[v for row in data[str(d)] for v in row] for d in range(10)], dtype=torch.float32)


class RBFOutput(nn.Module):
    """Output layer of Euclidean RBF units with fixed +-1 centres from the Fig. 3 bitmaps.

    Paper: Sec. II-B, Eq. (7), Fig. 3.
    Formula: y_i = sum_j (x_j - w_ij)^2, no square root, no bias, no squashing; the output is a
    penalty, and the prediction is the class with the smallest one.
    Counts: 0 trainable parameters (the centres are a buffer), 840 connections.
    Deviation: the paper does not say how the 84 F6 units map to bitmap pixels; we use the
    row-major order (any fixed permutation is an equivalent network).
    """

    inputs = 84  # F6's units

    def __init__(self, centres=None):
        super().__init__()
        centres = load_bitmaps() if centres is None else centres  # (10, inputs): the Fig. 3 codes by default
        self.register_buffer("centres", centres, persistent=False)  # fixed, not in the state_dict

    def forward(self, x):
        return ((x.unsqueeze(-2) - self.centres) ** 2).sum(-1)  # (..., inputs) -> (..., 10)

    def predict(self, out):
        return out.argmin(-1)  # the smallest penalty

    def count(self):
        return 0, self.centres.numel()


class TargetOutput(RBFOutput):
    """The authors' 2009 demo head (not the paper): the layer after C5 has 10 squashed units,
    trained toward +1 for the class and -1 for the others, and the class is the largest output.

    Source: EBLearn at commit 7ed01749, demos/mnist/src/main.cpp (the LeNet-5 of the demo ends
    in a full layer of 10 units with the squashing, trained with a Euclidean cost to +-1
    targets); SPEC.md section 15. Here the "F6" stage of LeNet5 is that 10-unit layer, and this
    head holds the targets t_i = 2 e_i - 1 as RBF centres: y_i = ||x - t_i||^2. Then
    0.5 ||x - t_D||^2, the demo's cost, is y_D / 2 (MLE, Eq. 8, halved); and since
    ||x - t_i||^2 = ||x||^2 + 10 - 2 (2 x_i - sum_k x_k), the smallest y_i is the largest x_i:
    the demo's arg-max. Counts: 0 parameters, 100 connections.
    """

    inputs = 10

    def __init__(self):
        super().__init__(2 * torch.eye(10) - 1)  # (10, 10): +1 on the class, -1 elsewhere


class LinearOutput(FullyConnected):
    """A linear 84 -> 10 layer whose logits feed softmax cross-entropy (modern; not the paper)."""

    inputs = 84

    def __init__(self):
        super().__init__(84, 10)

    def predict(self, out):
        return out.argmax(-1)  # the largest logit


OUTPUT = Registry("output", {"rbf": RBFOutput, "linear": LinearOutput, "targets": TargetOutput})
