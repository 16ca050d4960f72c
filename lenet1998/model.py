"""LeNet-5: C1, S2, C3, S4, C5, F6 and the output layer, assembled from a LeNetConfig.

Paper: Sec. II-B, Fig. 2. "The network in figure 2 contains 340,908 connections, but only
60,000 trainable free parameters because of the weight sharing."

    INPUT 32x32 -> C1 6@28x28 -> S2 6@14x14 -> C3 16@10x10 -> S4 16@5x5 -> C5 120@1x1
          -> F6 84 -> OUTPUT 10 (Euclidean RBF penalties, or logits of a linear layer)

Every choice comes from a registry named by the config (lenet1998/layers.py, init.py).
"""

from __future__ import annotations

import torch
from torch import nn

from .init import init_layer
from .layers import (C3_TABLES, OUTPUT, SQUASHING, SUBSAMPLING, SUBSAMPLING_H, Conv, FullyConnected, Identity, Pool,
                     RBFOutput, TrainableSubsampling)

STAGES = ("C1", "S2", "C3", "S4", "C5", "F6")

# Sec. II-B: the paper's trainable parameters and connections of each layer.
PAPER_COUNTS = {
    "C1": (156, 122304), "S2": (12, 5880), "C3": (1516, 151600), "S4": (32, 2000),
    "C5": (48120, 48120), "F6": (10164, 10164), "OUTPUT": (0, 840),
}
PAPER_TOTALS = (60000, 340908)


class Network(nn.Module):
    """What every network of the paper shares: named stages in forward order (`stage_names`,
    each a linear part in `layers` and its squashing in `activations`), an output `head`, and
    the machinery around them (SDLM's trace, prediction, initialisation, state, counts). LeNet5
    below; the other networks of Fig. 9 in lenet1998/networks.py."""

    stage_names: tuple = ()

    def stage(self, name, x, trace=None):
        """One layer: its linear part a (Eq. 5), then its squashing f(a) (Eq. 6)."""
        layer = self.layers[name]
        a = layer.linear(x, self.params(name))
        if trace is not None:
            trace.append((layer, self.activations[name], x, a))
        return self.activations[name](a)

    def params(self, name):
        layer = self.head if name == "head" else self.layers[name]
        return tuple(layer.parameters())

    def predict(self, out):
        """The class of each output: smallest RBF penalty, or largest logit."""
        return self.head.predict(out)

    def trainable_layers(self):
        """(name, layer) of every layer with parameters, in forward order."""
        named = [(n, self.layers[n]) for n in self.stage_names] + [("OUTPUT", self.head)]
        return [(n, l) for n, l in named if list(l.parameters())]

    @torch.no_grad()
    def initialize(self, seed=None):
        """Draw every parameter from one generator seeded with `seed` (default: config.seed),
        layer by layer in forward order, by the config's rules (Appendix A; lenet1998/init.py)."""
        g = torch.Generator().manual_seed(int(self.config.seed if seed is None else seed))
        for _, layer in self.trainable_layers():
            init_layer(layer, self.config.init, self.config.bias_init, g, self.config.subsampling_init)
        return self

    def state(self):
        """The parameters by name, detached copies (what run folders store)."""
        return {name: p.detach().clone() for name, p in self.named_parameters()}

    @torch.no_grad()
    def load_state(self, state):
        """Load parameters by name; a stored tensor of another shape but the same size (e.g.
        F6 as (1, 84, 120) in checkpoints of version 0.1) is reshaped."""
        for name, p in self.named_parameters():
            p.copy_(state[name].reshape(p.shape).to(p.device, p.dtype))

    def counts(self):
        """{layer: (trainable parameters, connections)}, and the totals (connections: the
        multiply-adds of one recognition, biases counted as connections, as Sec. II-B does)."""
        trace = []
        with torch.no_grad():
            self.forward(torch.zeros(1, 1, 32, 32, device=next(self.parameters()).device), trace)
        out = {}
        for (layer, _, _, a), name in zip(trace, self.stage_names):
            out[name] = layer.count(tuple(a.shape[-2:]) if a.dim() == 4 else (1, 1))
        out["OUTPUT"] = self.head.count()
        out["total"] = tuple(sum(v[i] for v in out.values()) for i in range(2))
        return out


class LeNet5(Network):
    """One LeNet-5 with every paper piece chosen by `config`."""

    stage_names = STAGES

    def __init__(self, config):
        super().__init__()
        self.config = config
        subsampling = SUBSAMPLING[config.subsampling]
        self.layers = nn.ModuleDict({
            "C1": Conv(1, 6),
            "S2": subsampling(6),
            "C3": Conv(6, 16, table=C3_TABLES[config.c3_table]),
            "S4": subsampling(16),
            "C5": Conv(16, 120),
            "F6": FullyConnected(120, OUTPUT[config.output].inputs),  # 84 (10 for the 2009 demo's head)
        })
        for name in ("S2", "S4"):  # how SDLM reads the coefficient's h_kk (layers.SUBSAMPLING_H)
            if isinstance(self.layers[name], TrainableSubsampling):
                self.layers[name].keep_cross_terms = SUBSAMPLING_H[config.sdlm_subsampling_h]
        # f follows every trainable layer up to F6 (Eq. 5); parameter-free pooling has none.
        f = SQUASHING[config.squashing]
        self.activations = nn.ModuleDict({
            name: Identity() if isinstance(self.layers[name], Pool) else f() for name in STAGES
        })
        self.head = OUTPUT[config.output]()

    def forward(self, x, trace=None):
        """x: (N, 1, 32, 32) coded images -> (N, 10) RBF penalties (or logits of a linear output).

        If `trace` is a list, (layer, activation, input, pre-activation) is appended for every
        linear stage, a linear output layer included: SDLM's second-derivative pass reads it.
        """
        x = self.stage("C1", x, trace)  # (N, 6, 28, 28)    156 params, 122,304 connections
        x = self.stage("S2", x, trace)  # (N, 6, 14, 14)     12 params,   5,880 connections
        x = self.stage("C3", x, trace)  # (N, 16, 10, 10) 1,516 params, 151,600 connections (Table I)
        x = self.stage("S4", x, trace)  # (N, 16, 5, 5)      32 params,   2,000 connections
        x = self.stage("C5", x, trace)  # (N, 120, 1, 1) 48,120 params and connections
        x = self.stage("F6", x, trace)  # (N, 84)        10,164 params and connections
        if isinstance(self.head, RBFOutput):
            return self.head(x)  # (N, 10) penalties y_i = sum_j (x_j - w_ij)^2 (Eq. 7), 840 connections
        a = self.head.linear(x, self.params("head"))  # (N, 10) logits
        if trace is not None:
            trace.append((self.head, Identity(), x, a))
        return a

