"""The portable fast path: K networks as one PyTorch model, one pattern per network per step.

Replica k's maps sit in channel block k, and each convolution sees only its replica's block
(one batched matrix product over the K replicas), so replica k only ever sees its own input
and its own weights. Replicas may differ in every choice that keeps the layer shapes
(lenet1998/engine/__init__.py `lockstep_key`): the squashing function, the C3 table, the S2/S4
reading (average or sum), the criterion (MAP or MLE) and the step (SDLM or SGD, both a per-
parameter eps). The math is the one of lenet1998/layers.py and loss.py, for K networks at
once; tests/test_engine.py checks each replica against its network trained alone.

`TorchGroup` takes and returns parameters in the stacked layout: the one-network parameter
names without "layers." ("C1.weight", ..., "head.weight") and shapes with a leading K.
"""

from __future__ import annotations

import logging

import torch
import torch.nn.functional as F
from torch import nn

from ..layers import C3_TABLES, OUTPUT, SQUASHING, SUBSAMPLING, Pool, ReLU, RBFOutput, TrainableSubsampling
from ..loss import LOSSES, log_sum, mle_loss
from ..model import STAGES, LeNet5


class ReplicaSquashing(nn.Module):
    """Replica k squashes with SQUASHING[kinds[k]]: A_k tanh(S_k a) for the tanh family (plain
    tanh: A = S = 1), max(0, a) for ReLU. An entry that is neither is refused."""

    def __init__(self, kinds):
        super().__init__()
        classes = [SQUASHING[k] for k in kinds]
        for c, kind in zip(classes, kinds):
            if c is not ReLU and not hasattr(c, "amplitude"):
                raise ValueError(f"squashing={kind!r} has no replica form in the engine (amplitude and slope)")
        relu = [c is ReLU for c in classes]
        self.register_buffer("A", torch.tensor([1.0 if r else c.amplitude for c, r in zip(classes, relu)]), persistent=False)
        self.register_buffer("S", torch.tensor([1.0 if r else c.slope for c, r in zip(classes, relu)]), persistent=False)
        self.register_buffer("relu", torch.tensor(relu), persistent=False)
        self.K = len(kinds)

    def forward(self, a):
        x = a.reshape(a.shape[0], self.K, -1)  # (N, K, features of one replica)
        A, S, relu = (v.view(1, self.K, 1) for v in (self.A, self.S, self.relu))
        return torch.where(relu, torch.relu(x), A * torch.tanh(S * x)).view_as(a)


class ReplicaConv(nn.Module):
    """K valid 5x5 convolutions, replica k with its own 0/1 connection table (Table I or full)."""

    def __init__(self, in_maps, out_maps, tables):
        super().__init__()
        self.K, self.out_maps = len(tables), out_maps
        self.weight = nn.Parameter(torch.zeros(self.K * out_maps, in_maps, 5, 5))
        self.bias = nn.Parameter(torch.zeros(self.K * out_maps))
        full = [[1] * out_maps for _ in range(in_maps)]
        masks = [torch.tensor(t if t is not None else full, dtype=torch.float32).t() for t in tables]
        self.register_buffer("mask", torch.cat(masks)[:, :, None, None], persistent=False)  # (K*out, in, 1, 1): fixed
        self.masked = not bool(self.mask.all())

    def forward(self, x):  # (1, K*in, H, W) -> (1, K*out, H-4, W-4)
        w = self.weight * self.mask if self.masked else self.weight
        K, oh, ow = self.K, x.shape[-2] - 4, x.shape[-1] - 4
        cols = x.reshape(K, -1, 1) if oh == 1 else F.unfold(x, 5).view(K, -1, oh * ow)  # (K, in*25, oh*ow)
        out = torch.baddbmm(self.bias.view(K, -1, 1), w.view(K, self.out_maps, -1), cols)  # (K, out, oh*ow)
        return out.view(1, K * self.out_maps, oh, ow)


class ReplicaSubsampling(nn.Module):
    """K trainable S2/S4 layers: b + scale_k c s(2x2 sum), scale_k 1/4 (average) or 1 (sum)."""

    def __init__(self, maps, scales):
        super().__init__()
        self.coef = nn.Parameter(torch.zeros(len(scales) * maps))
        self.bias = nn.Parameter(torch.zeros(len(scales) * maps))
        self.register_buffer("scales", torch.tensor(scales).repeat_interleave(maps), persistent=False)

    def forward(self, x):
        s = F.avg_pool2d(x, 2, divisor_override=1)  # (1, K*maps, H/2, W/2): the 2x2 sums
        return torch.addcmul(self.bias.view(-1, 1, 1), s, (self.scales * self.coef).view(-1, 1, 1))


class ReplicaFC(nn.Module):
    """K full connections: (1, K*in) -> (1, K, out)."""

    def __init__(self, in_features, out_features, K):
        super().__init__()
        self.K, self.in_features = K, in_features
        self.weight = nn.Parameter(torch.zeros(K, out_features, in_features))
        self.bias = nn.Parameter(torch.zeros(K, out_features))

    def forward(self, x):
        x = x.reshape(self.K, self.in_features, 1)  # (K, in, 1)
        return torch.baddbmm(self.bias.unsqueeze(-1), self.weight, x).view(1, self.K, -1)  # (1, K, out)


def replica_loss(names, j):
    """The criterion of a group whose replica k trains with LOSSES[names[k]]: one function, or,
    for MAP and MLE mixed, mle + m_k log-sum (m_k = 1 for MAP, 0 for MLE: Eq. 9 is Eq. 8 plus
    that term)."""
    if len(set(names)) == 1:
        criterion = LOSSES[names[0]]
        return lambda out, y: criterion(out, y, j)
    if not set(names) <= {"map", "mle"}:
        raise ValueError(f"only the RBF criteria 'map' and 'mle' mix in one group, got {sorted(set(names))}")
    keep = torch.tensor([float(n == "map") for n in names])
    return lambda out, y: mle_loss(out, y) + keep * log_sum(out, j)


class GroupNet(nn.Module):
    """K LeNet-5s of one layer shape, configs[k] for replica k: (1, K, 32, 32) -> (1, K, 10)."""

    def __init__(self, configs):
        super().__init__()
        K, c0 = len(configs), configs[0]
        kinds = [c.squashing for c in configs]
        f = (lambda: SQUASHING[kinds[0]]()) if len(set(kinds)) == 1 else (lambda: ReplicaSquashing(kinds))
        trainable = isinstance(SUBSAMPLING[c0.subsampling](1), TrainableSubsampling)
        scales = [SUBSAMPLING[c.subsampling](1).scale for c in configs] if trainable else None

        def subsampling(maps):
            return ReplicaSubsampling(maps, scales) if trainable else SUBSAMPLING[c0.subsampling](maps)

        self.layers = nn.ModuleDict({
            "C1": ReplicaConv(1, 6, [None] * K), "S2": subsampling(6),
            "C3": ReplicaConv(6, 16, [C3_TABLES[c.c3_table] for c in configs]), "S4": subsampling(16),
            "C5": ReplicaConv(16, 120, [None] * K), "F6": ReplicaFC(120, OUTPUT[c0.output].inputs, K),
        })
        self.activations = nn.ModuleDict({n: nn.Identity() if isinstance(self.layers[n], Pool) else f() for n in STAGES})
        self.head = OUTPUT[c0.output]() if issubclass(OUTPUT[c0.output], RBFOutput) else ReplicaFC(84, 10, K)

    def forward(self, x):
        for name in STAGES:
            x = self.activations[name](self.layers[name](x))
        return self.head(x)  # (1, K, 10)


def stacked_name(name: str) -> str:
    return name.removeprefix("layers.")


def stack(networks) -> dict:
    """The parameters of K one-network LeNet5s in the stacked layout."""
    names = [n for n, _ in networks[0].named_parameters()]
    return {stacked_name(n): torch.stack([dict(net.named_parameters())[n].detach() for net in networks]) for n in names}


def unstack(params: dict, networks) -> None:
    """Load stacked parameters into K one-network LeNet5s."""
    for k, net in enumerate(networks):
        net.load_state({n: params[stacked_name(n)][k] for n, _ in net.named_parameters()})


class TorchGroup:
    """K networks stepping together in PyTorch: eager, or as one torch.compile'd function."""

    def __init__(self, configs, compiled: bool, device="cpu"):
        self.net = GroupNet(configs).to(device)
        self.K = len(configs)
        self.loss = replica_loss([c.loss for c in configs], configs[0].map_j)
        self.params = [p.detach() for p in self.net.parameters()]  # updated in place
        self.names = [stacked_name(n) for n, _ in self.net.named_parameters()]
        self.shapes = [tuple(p.shape) for p in LeNet5(configs[0]).parameters()]  # one network's
        self.eps = [torch.zeros_like(p) for p in self.params]
        self._step = self._compile() if compiled else self._eager
        self.x = torch.zeros(1, self.K, 32, 32, device=device)  # fixed input buffers
        self.y = torch.zeros(1, self.K, dtype=torch.long, device=device)
        if compiled:  # compile now, on copies with zero steps, so that no pass pays for it
            self._step([p.clone() for p in self.params], [torch.zeros_like(p) for p in self.params], self.x, self.y)

    def load(self, stacked: dict) -> None:
        for name, p in zip(self.names, self.params):
            p.copy_(stacked[name].reshape(p.shape))

    def export(self) -> dict:
        return {name: p.reshape(self.K, *shape).clone() for name, p, shape in zip(self.names, self.params, self.shapes)}

    def set_steps(self, eps: dict) -> None:
        self.eps = [eps[name].reshape(p.shape).contiguous().to(p.device) for name, p in zip(self.names, self.params)]

    def step(self, x, y):
        """One pattern per replica: x (K, 32, 32), y (K,) -> penalties (K, 10), loss (K,), the
        forward's, before the update w -= eps g."""
        self.x.copy_(x.unsqueeze(0))
        self.y.copy_(y.unsqueeze(0))
        out, loss = self._step(self.params, self.eps, self.x, self.y)
        return out[0], loss[0]

    def steps(self, xs, ys):
        """B consecutive steps: xs (B, K, 32, 32), ys (B, K) -> penalties (B, K, 10), loss (B, K)."""
        outs, losses = zip(*(self.step(x, y) for x, y in zip(xs, ys)))
        return torch.stack(outs), torch.stack(losses)

    def _loss_of(self, params, x, y):
        out = torch.func.functional_call(self.net, dict(zip([n for n, _ in self.net.named_parameters()], params)), (x,))
        per_pattern = self.loss(out, y)  # (1, K)
        return per_pattern.sum(), (out, per_pattern)

    def _eager(self, params, eps, x, y):
        with torch.enable_grad():
            leaves = [p.requires_grad_() for p in params]
            total, (out, per_pattern) = self._loss_of(leaves, x, y)
            grads = torch.autograd.grad(total, leaves)
        for p in params:
            p.requires_grad_(False)
        with torch.no_grad():
            torch._foreach_addcmul_(params, list(grads), eps, value=-1.0)  # w -= eps g (Eq. 18)
        return out.detach(), per_pattern.detach()

    def _compile(self):
        quiet_cuda_home_notice()

        def step(params, eps, x, y):
            grads, (out, per_pattern) = torch.func.grad(self._loss_of, has_aux=True)(params, x, y)
            torch._foreach_addcmul_(params, grads, eps, value=-1.0)
            return out, per_pattern

        torch._dynamo.reset()  # a new group: an empty cache, not a recompile of the last one
        return torch.compile(step, dynamic=False)


class _NoCudaRuntimeNotice(logging.Filter):
    """Drops torch.utils.cpp_extension's "No CUDA runtime is found, using CUDA_HOME=..." warning,
    logged when torch.compile builds C++ on a machine without a GPU: it only says that CUDA
    headers exist but no GPU does, which changes nothing for CPU code. Every other record passes."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "No CUDA runtime is found" not in record.getMessage()


def quiet_cuda_home_notice() -> None:
    """Install the filter (once per process) on the logger that prints the notice."""
    logger = logging.getLogger("torch.utils.cpp_extension")
    if not any(isinstance(f, _NoCudaRuntimeNotice) for f in logger.filters):
        logger.addFilter(_NoCudaRuntimeNotice())
