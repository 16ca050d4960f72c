"""The lockstep group of the small convolutional networks of Fig. 9 (lenet1998/networks.py LeNet1
and LeNet4; Sec. III-C.6-7): per-pattern SDLM steps by a small C kernel (convnet.c beside this
file), built and cached as the LeNet-5 kernel is (lenet1998/engine/kernel.py). One replica at a
time runs through all the patterns of a call (its parameters and steps stay in the core's
caches); the replicas are independent, so the group's result is the same as in lockstep.

Same math as the vmap group (lenet1998/engine/vmap.py) and the reference trainer, in float32
(tests/test_engine.py); the interface of the other groups: load / export / set_steps in the
stacked layout, steps(xs (B, K, 32, 32), ys (B, K)) -> penalties (B, K, 10), loss (B, K).
"""

from __future__ import annotations

import ctypes

import torch

from ..layers import TrainableSubsampling
from ..networks import LeNet1, LeNet4, build
from .dense import SQUASHINGS
from .kernel import Extension, OneReplicaAtATime, pointers

# convnet.c's shape of each network it covers: k1, C1 maps, S2 maps per C1 map, C3 maps, k3, hidden units
SHAPES = {LeNet1: (5, 4, 1, 12, 5, 0), LeNet4: (5, 4, 2, 16, 7, 120)}
_P, _I, _F = ctypes.c_void_p, ctypes.c_int, ctypes.c_float
EXTENSION = Extension("convnet.c", {"cn_steps": ([_P, _P, _P, _I, _F, _F, _F, _P, _P, _P, _I, _P, _P], _I),
                                    "cn_forward": ([_P, _P, _I, _F, _F, _F, _P, _P, _I, _P], _I)})
available, reason = EXTENSION.available, EXTENSION.reason


def unsupported(configs, device="cpu") -> str:
    """Why convnet.c cannot train this group ('' if it can)."""
    if str(device) != "cpu":
        return f"the convnet kernel runs on the CPU, not {device}"
    if torch.get_default_dtype() != torch.float32:
        return "the convnet kernel computes in float32"
    net = build(configs[0])
    if type(net) not in SHAPES:
        return f"the convnet kernel covers LeNet-1 and LeNet-4 only, not network={configs[0].network!r}"
    if not isinstance(net.layers["S2"], TrainableSubsampling):
        return f"the convnet kernel covers trainable S2/S4 only, not {configs[0].subsampling!r}"
    if configs[0].squashing not in SQUASHINGS:
        return f"the convnet kernel covers the squashings {list(SQUASHINGS)} only, not {configs[0].squashing!r}"
    if not available():
        return f"the convnet kernel is not available here: {reason()}"
    return ""



class ConvNetGroup(OneReplicaAtATime):
    """K replicas of LeNet-1 or LeNet-4 (the configs share the network: lockstep_key), each with
    its own parameters, steps and patterns, stepped by convnet.c one replica at a time."""

    name = "convnet.c"

    def __init__(self, configs):
        why = unsupported(configs)
        if why:
            raise ValueError(why)
        self.K, net = len(configs), build(configs[0])
        self.lib = EXTENSION.lib()
        self.field = net.field
        self.shape = torch.tensor(SHAPES[type(net)], dtype=torch.int32)
        self.names = [n.removeprefix("layers.") for n, _ in net.named_parameters()]  # convnet.c's order
        shapes = [p.shape for p in net.parameters()]
        self.kind, self.A, self.S = SQUASHINGS[configs[0].squashing]
        self.scale = net.layers["S2"].scale
        self.mask = net.layers["C3"].mask[:, :, 0, 0].contiguous()  # (C3 maps, S2 maps)
        self.p = [[torch.zeros(s) for s in shapes] for _ in range(self.K)]
        self.e = [[torch.zeros(s) for s in shapes] for _ in range(self.K)]

    def load(self, stacked: dict) -> None:
        for k in range(self.K):
            for t, n in zip(self.p[k], self.names):
                t.copy_(stacked[n][k])

    def set_steps(self, eps: dict) -> None:
        for k in range(self.K):
            for t, n in zip(self.e[k], self.names):
                t.copy_(eps[n][k])

    def export(self) -> dict:
        return {n: torch.stack([self.p[k][i] for k in range(self.K)]) for i, n in enumerate(self.names)}

    def _inputs(self, x):
        """(N, 32, 32) coded images -> (N, 28, 28) float32: the network's input layer."""
        return self.field(torch.as_tensor(x, dtype=torch.float32).unsqueeze(1)).squeeze(1).contiguous()

    def _steps(self, k, x, y, pen, loss):
        return self.lib.cn_steps(self.shape.data_ptr(), pointers(self.p[k]), pointers(self.e[k]), self.kind, self.A,
                                 self.S, self.scale, self.mask.data_ptr(), x.data_ptr(), y.data_ptr(), len(y),
                                 pen.data_ptr(), loss.data_ptr())

    def _forward(self, k, x, pen):
        return self.lib.cn_forward(self.shape.data_ptr(), pointers(self.p[k]), self.kind, self.A, self.S, self.scale,
                                   self.mask.data_ptr(), x.data_ptr(), len(x), pen.data_ptr())
