"""LeNet-5: C1, S2, C3, S4, C5, F6 and the output layer, assembled from a LeNetConfig.

Paper: Sec. II-B, Fig. 2. "The network in figure 2 contains 340,908 connections, but only
60,000 trainable free parameters because of the weight sharing."

    INPUT 32x32 -> C1 6@28x28 -> S2 6@14x14 -> C3 16@10x10 -> S4 16@5x5 -> C5 120@1x1
          -> F6 84 -> OUTPUT 10 (Euclidean RBF penalties, or logits of a linear layer)

The model holds K replicas (see lenet1998/layers.py): the input is (N, K, 32, 32), replica k
reading channel k, and the output is (N, K, 10).
"""

from __future__ import annotations

import torch
from torch import nn

from .config import LeNetConfig
from .layers import (
    ACTIVATIONS, C3_TABLE, Conv, FullyConnected, Identity, RBFOutput, ReplicaSquashing, TrainableSubsampling,
    init_layer, subsampling_layer,
)

STAGES = ("C1", "S2", "C3", "S4", "C5", "F6")

# Sec. II-B: the paper's trainable parameters and connections of each layer.
PAPER_COUNTS = {
    "C1": (156, 122304), "S2": (12, 5880), "C3": (1516, 151600), "S4": (32, 2000),
    "C5": (48120, 48120), "F6": (10164, 10164), "OUTPUT": (0, 840),
}
PAPER_TOTALS = (60000, 340908)


class LeNet5(nn.Module):
    """LeNet-5 with every paper piece chosen by `config`, in `replicas` independent copies."""

    def __init__(self, config: LeNetConfig = LeNetConfig(), replicas: int = 1, configs=None):
        super().__init__()
        self.config, self.replicas = config, replicas
        K = replicas
        # configs: one per replica in a lockstep group of mixed variants (LeNetConfig.lockstep_key),
        # which may differ in f, the C3 table and the S2/S4 reading (average or sum).
        configs = list(configs) if configs else [config] * K
        squashings = [c.squashing for c in configs]
        subsampling = [c.subsampling for c in configs]  # one kind per replica; alike: the ordinary layer
        tables = [C3_TABLE if c.c3_table == "paper" else None for c in configs]

        def squash():
            return ACTIVATIONS[squashings[0]]() if len(set(squashings)) == 1 else ReplicaSquashing(squashings)

        self.layers = nn.ModuleDict({
            "C1": Conv(1, 6, K),
            "S2": subsampling_layer(subsampling, 6, K),
            "C3": Conv(6, 16, K, tables=tables),
            "S4": subsampling_layer(subsampling, 16, K),
            "C5": Conv(16, 120, K),
            "F6": FullyConnected(120, 84, K),
        })
        # f follows every trainable layer up to F6 (Eq. 5); parameter-free pooling has none.
        self.activations = nn.ModuleDict({
            name: squash() if not name.startswith("S") or isinstance(self.layers[name], TrainableSubsampling)
            else Identity()
            for name in STAGES
        })
        if config.output == "rbf":
            self.head = RBFOutput()
        else:
            self.head = FullyConnected(84, 10, K)

    # ---- forward ------------------------------------------------------------------------

    def forward(self, x, trace=None):
        """x: (N, K, 32, 32) -> (N, K, 10) penalties (RBF) or logits (linear).

        If `trace` is a list, (layer, input, pre-activation) is appended for every linear
        stage, the linear output layer included: SDLM's second-derivative pass reads it.
        """
        for name in STAGES:  # C1 (N,6K,28,28) S2 (N,6K,14,14) C3 (N,16K,10,10) S4 (N,16K,5,5)
            layer = self.layers[name]  # C5 (N,120K,1,1) F6 (N,K,84)
            a = layer.linear(x, self.params(name))
            if trace is not None:
                trace.append((layer, self.activations[name], x, a))
            x = self.activations[name](a)
        if isinstance(self.head, RBFOutput):
            return self.head(x)  # (N, K, 10) penalties
        a = self.head.linear(x, self.params("head"))  # (N, K, 10) logits
        if trace is not None:
            trace.append((self.head, Identity(), x, a))
        return a

    def params(self, name):
        layer = self.head if name == "head" else self.layers[name]
        return tuple(layer.parameters())

    def predict(self, out):
        """The class of each output: smallest RBF penalty, or largest logit."""
        return out.argmin(-1) if self.config.output == "rbf" else out.argmax(-1)

    def trainable_layers(self):
        """(name, layer) of every layer with parameters, in forward order."""
        named = [(n, self.layers[n]) for n in STAGES]
        if not isinstance(self.head, RBFOutput):
            named.append(("OUTPUT", self.head))
        return [(n, l) for n, l in named if list(l.parameters())]

    # ---- initialisation and replicas ----------------------------------------------------

    @torch.no_grad()
    def initialize(self, seeds, configs=None):
        """Draw each replica's parameters from its own generator seeded with seeds[k], by the
        rule of configs[k] (default: the model's config) in a group of mixed variants."""
        if len(seeds) != self.replicas:
            raise ValueError(f"need {self.replicas} seeds, got {len(seeds)}")
        configs = configs or [self.config] * self.replicas
        for k, (seed, c) in enumerate(zip(seeds, configs)):
            g = torch.Generator().manual_seed(int(seed))
            for _, layer in self.trainable_layers():
                init_layer(layer, k, c.init, c.bias_init, g)
        return self

    def replica_state(self, k):
        """Replica k's parameters, shaped as in a one-replica model."""
        K = self.replicas
        return {
            name: p.detach().reshape(K, -1)[k].reshape((p.shape[0] // K,) + p.shape[1:]).clone()
            for name, p in self.named_parameters()
        }

    @torch.no_grad()
    def load_replica_state(self, k, state):
        K = self.replicas
        for name, p in self.named_parameters():
            p.view(K, -1)[k] = state[name].reshape(-1).to(p.device, p.dtype)

    # ---- counts -------------------------------------------------------------------------

    def counts(self):
        """{layer: (trainable parameters, connections)} of one replica, and the totals."""
        trace = []
        with torch.no_grad():
            self.forward(torch.zeros(1, self.replicas, 32, 32, device=self.head_device()), trace)
        out = {}
        for (layer, _, _, a), name in zip(trace, STAGES):
            hw = a.shape[-2:] if a.dim() == 4 else (1, 1)
            out[name] = layer.count(tuple(hw))
        out["OUTPUT"] = self.head.count()
        out["total"] = tuple(sum(v[i] for v in out.values()) for i in range(2))
        return out

    def head_device(self):
        return next(self.buffers(), next(self.parameters())).device


def build_model(config: LeNetConfig, seeds=None) -> LeNet5:
    """A model with one replica per seed (default: config.seed), initialised."""
    seeds = list(seeds) if seeds is not None else [config.seed]
    return LeNet5(config, replicas=len(seeds)).initialize(seeds)
