"""The lockstep group for any network of the paper: K replicas of one network (lenet1998/
networks.py: the fully connected nets and the linear classifier of Fig. 9, or LeNet-5 itself),
one pattern each per step, by torch.func.vmap over the one-network module.

Step: replica k's gradient of its own loss on its own pattern at its own parameters
(vmap(grad(loss)) over the stacked parameters), then w -= eps * g with its own per-parameter
steps (SDLM's eps, set before each pass by its own step rule, as lenet1998/reference.py does).
The same math as the reference trainer, K at a time (tests/test_engine.py). The interface is
that of lenet1998/engine/replicas.py TorchGroup and the C kernel's group: load / export /
set_steps in the stacked layout, steps(xs (B, K, 32, 32), ys (B, K)).
"""

from __future__ import annotations

import torch
from torch.func import functional_call, grad, vmap

from ..loss import LOSSES
from ..networks import build
from .replicas import stacked_name


class VmapGroup:
    """K replicas of the network of configs[0] (they share it: lockstep_key), each with its own
    parameters, steps and patterns."""

    def __init__(self, configs, device="cpu"):
        self.K, c0 = len(configs), configs[0]
        self.template = build(c0).to(device)
        self.full = [n for n, _ in self.template.named_parameters()]
        self.names = [stacked_name(n) for n in self.full]
        self.params = {n: torch.zeros(self.K, *p.shape, device=device) for n, p in zip(self.names, self.template.parameters())}
        self.eps = {n: torch.zeros_like(p) for n, p in self.params.items()}
        criterion, j = LOSSES[c0.loss], c0.map_j

        def loss(params, x, y):  # one replica, one pattern: x (32, 32), y ()
            out = functional_call(self.template, dict(zip(self.full, params)), (x.view(1, 1, *x.shape),))
            e = criterion(out, y.view(1), j).sum()
            return e, (out[0], e.detach())

        self._grad = vmap(grad(loss, has_aux=True))

    def load(self, stacked: dict) -> None:
        for n in self.names:
            self.params[n].copy_(stacked[n])

    def export(self) -> dict:
        return {n: p.clone() for n, p in self.params.items()}

    def set_steps(self, eps: dict) -> None:
        self.eps = {n: eps[n].to(self.params[n]) for n in self.names}

    def steps(self, xs, ys):
        """B consecutive steps: xs (B, K, 32, 32), ys (B, K) -> outputs (B, K, 10) and loss (B, K)
        of each step's forward, before its update w -= eps g."""
        outs, losses = [], []
        params = [self.params[n] for n in self.names]
        eps = [self.eps[n] for n in self.names]
        for x, y in zip(xs, ys):
            grads, (out, e) = self._grad(params, x, y)
            outs.append(out)
            losses.append(e)
            torch._foreach_addcmul_(params, list(grads), eps, value=-1.0)  # w -= eps g (Eq. 18), in place
        return torch.stack(outs), torch.stack(losses)

    def step(self, x, y):
        """One pattern per replica: x (K, 32, 32), y (K,)."""
        out, loss = self.steps(x.unsqueeze(0), y.unsqueeze(0))
        return out[0], loss[0]
