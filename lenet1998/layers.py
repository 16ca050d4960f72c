"""The layers of LeNet-5, each able to hold K independent replicas side by side.

Paper: Sec. II-B, Eqs. (5)-(7), Table I, Fig. 2-3.

Every trainable layer computes a *linear part* a = sum_j w_ij x_j + b_i (Eq. 5), followed by a
squashing function x_i = f(a_i) chosen separately (see `ACTIVATIONS`). Splitting the two lets
SDLM (lenet1998/sdlm.py) backpropagate second derivatives through the same linear part with
squared weights (Eqs. 25, 27).

Replicas: a layer built with `replicas=K` holds K independent copies of its parameters. The
maps of replica k sit in channel block k, and each convolution sees only its replica's block
(`groups=K`, one batched matrix product for one pattern, or one convolution per replica for a
minibatch on CPU), so replica k only ever sees its own input and its own weights. K = 1 is the ordinary network. This is what
lets several seeds train in lockstep, each one pattern at a time (see lenet1998/train.py).
Replicas may also differ in the squashing function (`ReplicaSquashing`), the C3 table (`Conv`
with one table per replica) and the S2/S4 reading (`TrainableSubsampling` averaging for some
replicas, summing for others): a lockstep group of mixed variants.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

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

RBF_DIR = Path(__file__).resolve().parent.parent / "data" / "RBF"
BITMAP_ROWS, BITMAP_COLS = 12, 7  # Fig. 3: 7x12 bitmaps, hence F6 has 84 units


# --------------------------------------------------------------------------------------------
# Squashing functions. Each has f(a) and f'(a); f' enters the h_kk recursion of Eq. (27).


class ScaledTanh(nn.Module):
    """The paper's squashing function f(a) = A tanh(S a), A = 1.7159, S = 2/3.

    Paper: Sec. II-B, Eq. (6); Appendix A. f(1) = 1, f(-1) = -1, f'(0) = A S = 1.1439.
    """

    def forward(self, a):
        return A * torch.tanh(S * a)

    def derivative(self, a):
        return A * S * (1 - torch.tanh(S * a) ** 2)


class Tanh(nn.Module):
    """Plain tanh (modern counterpart; not in the paper)."""

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
    """No squashing: used after parameter-free pooling and for the linear output layer."""

    def forward(self, a):
        return a

    def derivative(self, a):
        return torch.ones_like(a)


ACTIVATIONS = {"scaled_tanh": ScaledTanh, "tanh": Tanh, "relu": ReLU}


class ReplicaSquashing(nn.Module):
    """Replica k squashes with ACTIVATIONS[kinds[k]]: for a lockstep group of variants that
    differ in f only. Scaled and plain tanh are both A_k tanh(S_k a) (plain: A = S = 1, exactly
    tanh); ReLU replicas take max(0, a) instead. Works on (N, K*maps, H, W) and (N, K, features)
    alike: replica k owns the k-th block of dimension 1."""

    def __init__(self, kinds):
        super().__init__()
        self.kinds = list(kinds)
        scaled = [k == "scaled_tanh" for k in self.kinds]
        for name, value in (("A", A), ("S", S), ("AS", A * S)):  # AS: the product in double, as ScaledTanh
            self.register_buffer(name, torch.tensor([value if sc else 1.0 for sc in scaled]), persistent=False)
        self.register_buffer("relu", torch.tensor([k == "relu" for k in self.kinds]), persistent=False)

    def _blocks(self, a):
        K = len(self.kinds)
        return a.reshape(a.shape[0], K, -1), (lambda v: v.view(1, K, 1))  # (N, K, per-replica features)

    def forward(self, a):
        x, per = self._blocks(a)
        t = per(self.A) * torch.tanh(per(self.S) * x)
        return torch.where(per(self.relu), torch.relu(x), t).view_as(a)

    def derivative(self, a):
        x, per = self._blocks(a)
        d = per(self.AS) * (1 - torch.tanh(per(self.S) * x) ** 2)
        return torch.where(per(self.relu), (x > 0).to(x.dtype), d).view_as(a)


# --------------------------------------------------------------------------------------------
# Linear parts. Each layer has `linear(x, params, squared=False, reference=None)`:
#   squared=False: the ordinary pre-activation a = W x + b with the given parameters;
#   squared=True:  the same map with every fixed constant squared (the 1/4 of an average,
#                  the 0/1 mask is unchanged), called with squared weights and squared inputs
#                  by SDLM's second-derivative pass. `reference` is the real input, for layers
#                  whose routing depends on it (max pooling).


class Conv(nn.Module):
    """A valid 5x5 convolution with one bias per map, optionally with a connection table.

    Paper: Sec. II-B (C1, C3, C5) and Table I (C3).
    Formula: a_i = sum_{s in inputs(i)} sum_{5x5} w * x_s + b_i.
    Counts (one replica): C1 156 params / 122,304 connections; C3 with Table I 1,516 / 151,600;
    C5 48,120 / 48,120. The C3 table is a 0/1 buffer multiplied into the kernel, so a masked
    weight has zero gradient and zero second derivative, and never influences the output.
    """

    def __init__(self, in_maps, out_maps, replicas=1, table=None, kernel=5, tables=None):
        super().__init__()
        self.in_maps, self.out_maps, self.replicas, self.kernel = in_maps, out_maps, replicas, kernel
        self.weight = nn.Parameter(torch.zeros(replicas * out_maps, in_maps, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(replicas * out_maps))
        full = [[1] * out_maps for _ in range(in_maps)]
        tables = tables or [table] * replicas  # one table per replica (a group of mixed variants)
        masks = [torch.tensor(t if t is not None else full, dtype=torch.float32).t() for t in tables]  # (out, in)
        self.register_buffer("mask", torch.cat(masks)[:, :, None, None])  # (K*out, in, 1, 1)
        self.masked = not bool(self.mask.all())

    def inputs_per_map(self, replica: int = 0):
        """F_i / 25: the number of input maps connected to each output map (of one replica)."""
        return self.mask[replica * self.out_maps:(replica + 1) * self.out_maps, :, 0, 0].sum(1)

    def linear(self, x, params, squared=False, reference=None):
        w, b = params
        if self.masked:
            w = w * self.mask  # Table I: absent connections contribute nothing
        N, K, k = x.shape[0], self.replicas, self.kernel
        oh, ow = x.shape[-2] - k + 1, x.shape[-1] - k + 1
        if N > 1:
            if K > 1 and x.device.type == "cpu":
                # One convolution per replica: on CPU about 1.3x faster than one grouped
                # convolution for minibatches (same function, other rounding).
                return torch.cat([F.conv2d(xk, wk, bk) for xk, wk, bk in
                                  zip(x.chunk(K, 1), w.chunk(K, 0), b.chunk(K, 0))], 1)  # (N, K*out, oh, ow)
            return F.conv2d(x, w, b, groups=K)  # (N, K*out, oh, ow)
        # One pattern (per-pattern training): one batched matrix product over the K replicas
        # is faster than a grouped convolution. Same function, other rounding.
        wk = w.view(K, self.out_maps, -1)  # (K, out, in*k*k)
        if oh == 1 and ow == 1:  # C5: the 5x5 field is the whole input
            cols = x.reshape(K, -1, 1)  # (K, in*k*k, 1)
        else:
            cols = F.unfold(x, k).view(K, -1, oh * ow)  # (K, in*k*k, oh*ow)
        out = torch.baddbmm(b.view(K, -1, 1), wk, cols)  # (K, out, oh*ow)
        return out.view(1, K * self.out_maps, oh, ow)  # (1, K*out, oh, ow)

    def free_entries(self, param):
        """Boolean mask of the entries of `param` that are real connections (Table I)."""
        if param is self.weight:
            return self.mask.expand_as(self.weight).bool()
        return torch.ones_like(param, dtype=torch.bool)

    def count(self, out_hw):
        """(trainable parameters, connections) of one replica, for an output of out_hw."""
        per_map = self.inputs_per_map() * self.kernel**2 + 1  # weights + bias of each map
        params = int(per_map.sum())
        return params, params * out_hw[0] * out_hw[1]


class TrainableSubsampling(nn.Module):
    """S2/S4: per map, the 2x2 inputs summed (or averaged), times a coefficient, plus a bias.

    Paper: Sec. II-B ("The four inputs to a unit in S2 are added, then multiplied by a
    trainable coefficient, and added to a trainable bias"); Sec. II-A says "average".
    Formula: a = c * s(x_2x2) + b with s = sum ("trainable_sum") or mean ("trainable_average"),
    then f. Each output map depends only on its own input map.
    Counts (one replica): S2 12 / 5,880; S4 32 / 2,000 (4 inputs + 1 bias per unit).
    """

    def __init__(self, maps, replicas=1, average=True):
        super().__init__()
        averages = list(average) if isinstance(average, (list, tuple)) else [average] * replicas
        self.maps, self.replicas = maps, replicas
        self.average = averages[0] if len(set(averages)) == 1 else None  # None: mixed (per replica)
        self.coef = nn.Parameter(torch.zeros(replicas * maps))
        self.bias = nn.Parameter(torch.zeros(replicas * maps))
        # Per map: 1/4 (average) or 1 (sum), for a lockstep group that mixes the two readings.
        scales = torch.tensor([0.25 if a else 1.0 for a in averages]).repeat_interleave(maps)
        self.register_buffer("scales", scales, persistent=False)

    def linear(self, x, params, squared=False, reference=None):
        c, b = params
        s = F.avg_pool2d(x, 2, divisor_override=1)  # (N, K*maps, H/2, W/2): 2x2 sums, per map
        if self.average is None:
            scale = self.scales.square() if squared else self.scales
            return torch.addcmul(b.view(-1, 1, 1), s, (scale * c).view(-1, 1, 1))  # b + (scale c) s
        scale = 0.25 if self.average else 1.0
        if squared:
            scale = scale**2
        return torch.addcmul(b.view(-1, 1, 1), s, c.view(-1, 1, 1), value=scale)  # b + scale * c * s

    def free_entries(self, param):
        return torch.ones_like(param, dtype=torch.bool)

    def count(self, out_hw):
        return 2 * self.maps, self.maps * out_hw[0] * out_hw[1] * 5


class Pool(nn.Module):
    """Parameter-free 2x2 average or max pooling (modern counterpart of S2/S4; not the paper)."""

    def __init__(self, maps, mode):
        super().__init__()
        self.maps, self.mode = maps, mode

    def linear(self, x, params, squared=False, reference=None):
        if self.mode == "avg":
            out = F.avg_pool2d(x, 2)  # (N, C, H/2, W/2)
            return out / 4 if squared else out
        if reference is None:
            return F.max_pool2d(x, 2)  # (N, C, H/2, W/2)
        # Second-derivative pass: route through the positions that won in the real forward.
        _, idx = F.max_pool2d(reference, 2, return_indices=True)  # (N, C, H/2, W/2)
        return x.flatten(2).gather(2, idx.flatten(2)).view_as(idx)  # (N, C, H/2, W/2)

    def free_entries(self, param):
        return torch.ones_like(param, dtype=torch.bool)

    def count(self, out_hw):
        return 0, self.maps * out_hw[0] * out_hw[1] * 4


class FullyConnected(nn.Module):
    """A full connection with biases, one weight matrix per replica.

    Paper: Sec. II-B (F6: 84 units, 10,164 params and connections).
    Formula: a_i = sum_j w_ij x_j + b_i. Input (N, K*in, 1, 1) or (N, K, in); output (N, K, out).
    """

    def __init__(self, in_features, out_features, replicas=1):
        super().__init__()
        self.in_features, self.out_features, self.replicas = in_features, out_features, replicas
        self.weight = nn.Parameter(torch.zeros(replicas, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(replicas, out_features))

    def linear(self, x, params, squared=False, reference=None):
        w, b = params
        x = x.reshape(x.shape[0], self.replicas, self.in_features)  # (N, K, in)
        out = torch.baddbmm(b.unsqueeze(1), x.transpose(0, 1), w.transpose(1, 2))  # (K, N, out)
        return out.transpose(0, 1)  # (N, K, out)

    def free_entries(self, param):
        return torch.ones_like(param, dtype=torch.bool)

    def count(self, out_hw=(1, 1)):
        params = self.out_features * (self.in_features + 1)
        return params, params


def load_bitmaps(folder: Path = RBF_DIR) -> torch.Tensor:
    """The ten 7x12 bitmaps of Fig. 3 as a (10, 84) tensor of +-1, rows flattened top first.

    Each digit is a text file `<digit>.txt` of 12 lines of 7 characters: `#` = +1, `.` = -1.
    """
    codes = []
    for digit in range(10):
        path = Path(folder) / f"{digit}.txt"
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

    def __init__(self):
        super().__init__()
        self.register_buffer("centres", load_bitmaps())  # (10, 84)

    def forward(self, x):
        return ((x.unsqueeze(-2) - self.centres) ** 2).sum(-1)  # (N, K, 84) -> (N, K, 10)

    def count(self):
        return 0, self.centres.numel()


def fan_in_bound(fan_in, rule: str) -> torch.Tensor:
    """The init bound of Appendix A: 2.4/F_i ("paper"), 2.4/sqrt(F_i) ("paper_sqrt"),
    or PyTorch's default 1/sqrt(F_i) ("pytorch")."""
    fan_in = torch.as_tensor(fan_in, dtype=torch.float64)
    if rule == "paper":
        return 2.4 / fan_in
    if rule == "paper_sqrt":
        return 2.4 / fan_in.sqrt()
    return 1.0 / fan_in.sqrt()


def _uniform(shape, bound, generator):
    """U(-bound, bound) with a per-row bound broadcast over the trailing dimensions."""
    bound = bound.to(torch.float32).reshape(-1, *([1] * (len(shape) - 1)))
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


def init_layer(layer, replica: int, rule: str, bias_rule: str, generator: torch.Generator):
    """Draw replica `replica`'s parameters of one layer from `generator` (Appendix A).

    F_i is the fan-in of the unit: 25 for C1, 4 for S2/S4 coefficients, 25 x (connected maps)
    for C3 (per map), 400 for C5, 120 for F6. With rule "pytorch" the fan-in ignores Table I,
    as nn.Conv2d would. Biases get the same bound as their unit's weights, or zero.
    """
    if isinstance(layer, Conv):
        k2 = layer.kernel**2
        fan = layer.inputs_per_map(replica) * k2 if rule != "pytorch" else torch.full((layer.out_maps,), float(layer.in_maps * k2))
        bound = fan_in_bound(fan, rule)
        rows = slice(replica * layer.out_maps, (replica + 1) * layer.out_maps)
        w = _uniform((layer.out_maps, layer.in_maps, layer.kernel, layer.kernel), bound, generator)
        layer.weight.data[rows] = w * layer.mask[rows]
        layer.bias.data[rows] = _bias(bound, bias_rule, generator)
    elif isinstance(layer, TrainableSubsampling):
        bound = fan_in_bound(torch.full((layer.maps,), 4.0), rule)
        rows = slice(replica * layer.maps, (replica + 1) * layer.maps)
        layer.coef.data[rows] = _uniform((layer.maps,), bound, generator)
        layer.bias.data[rows] = _bias(bound, bias_rule, generator)
    elif isinstance(layer, FullyConnected):
        bound = fan_in_bound(torch.full((layer.out_features,), float(layer.in_features)), rule)
        layer.weight.data[replica] = _uniform((layer.out_features, layer.in_features), bound, generator)
        layer.bias.data[replica] = _bias(bound, bias_rule, generator)


def _bias(bound, bias_rule, generator):
    if bias_rule == "zero":
        return torch.zeros(bound.shape)
    return _uniform(tuple(bound.shape), bound, generator)


def subsampling_layer(kind, maps: int, replicas: int) -> nn.Module:
    """S2/S4 of one kind, or, given one kind per replica, trainable subsampling that averages
    for some replicas and sums for others (a lockstep group of mixed variants)."""
    kinds = list(kind) if isinstance(kind, (list, tuple)) else [kind]
    if set(kinds) <= {"trainable_average", "trainable_sum"}:
        average = [k == "trainable_average" for k in kinds]
        return TrainableSubsampling(maps, replicas, average=average if len(kinds) > 1 else average[0])
    if len(set(kinds)) > 1:
        raise ValueError(f"parameter-free pooling does not mix with other subsampling: {sorted(set(kinds))}")
    return Pool(maps, "avg" if kinds[0] == "avg_pool" else "max")


__all__ = [
    "A", "S", "C3_TABLE", "ACTIVATIONS", "ReplicaSquashing", "Conv", "TrainableSubsampling", "Pool",
    "FullyConnected", "RBFOutput", "load_bitmaps", "init_layer", "subsampling_layer",
]
