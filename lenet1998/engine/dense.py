"""The lockstep group of the fully connected networks of Fig. 9 (lenet1998/networks.py
FullyConnectedNet: the linear classifier, 28x28-300-10, -1000-10, -300-100-10, -500-150-10):
per-pattern SDLM steps by a small C kernel (dense.c beside this file), built and cached as the
LeNet-5 kernel is (lenet1998/engine/kernel.py).

Why not lanes across replicas: these networks are nearly all first-layer weights, and each step
reads every weight and its step and writes every weight, so a step costs its memory traffic.
dense.c keeps one replica's weights and steps in the last-level cache and runs it through all
the patterns of a call before the next replica (the replicas are independent: the group's
result is the same), and fuses the first layer's update with the next pattern's forward pass.

Same math as the vmap group (lenet1998/engine/vmap.py) and the reference trainer, in float32
(tests/test_engine.py); the interface of the other groups: load / export / set_steps in the
stacked layout, steps(xs (B, K, 32, 32), ys (B, K)) -> penalties (B, K, 10), loss (B, K).
"""

from __future__ import annotations

import ctypes

import torch

from ..networks import IMAGE, FullyConnectedNet, build, crop
from .kernel import Extension, OneReplicaAtATime, pointers

VW = 16  # dense.c pads every layer's inputs to a multiple of this
# A layer's squashing, as dense.c's SQ_* enum: none (the linear classifier's output), A tanh(S a), ReLU.
SQUASHINGS = {"scaled_tanh": (1, 1.7159, 2.0 / 3.0), "tanh": (1, 1.0, 1.0), "relu": (2, 1.0, 1.0)}
_P, _I = ctypes.c_void_p, ctypes.c_int
EXTENSION = Extension("dense.c", {"dn_steps": ([_I] + [_P] * 10 + [_I, _P, _P], _I),
                                  "dn_forward": ([_I] + [_P] * 7 + [_I, _P], _I)})
available, reason = EXTENSION.available, EXTENSION.reason


def unsupported(configs, device="cpu") -> str:
    """Why dense.c cannot train this group ('' if it can)."""
    if str(device) != "cpu":
        return f"the dense kernel runs on the CPU, not {device}"
    if torch.get_default_dtype() != torch.float32:
        return "the dense kernel computes in float32"
    net = build(configs[0])
    if not isinstance(net, FullyConnectedNet):
        return f"the dense kernel covers the fully connected networks only, not network={configs[0].network!r}"
    if configs[0].squashing not in SQUASHINGS:
        return f"the dense kernel covers the squashings {list(SQUASHINGS)} only, not {configs[0].squashing!r}"
    if not available():
        return f"the dense kernel is not available here: {reason()}"
    return ""


def _padded(n: int) -> int:
    return -(-n // VW) * VW



class DenseGroup(OneReplicaAtATime):
    """K replicas of the fully connected network of configs[0] (they share it: lockstep_key),
    each with its own parameters, steps and patterns, stepped by dense.c one replica at a time."""

    name = "dense.c"

    def __init__(self, configs):
        why = unsupported(configs)
        if why:
            raise ValueError(why)
        self.K, net = len(configs), build(configs[0])
        self.lib = EXTENSION.lib()
        self.layers = list(net.stage_names)  # H1, H2, ..., F
        self.sizes = [net.layers[s].in_features for s in self.layers] + [10]
        self.names = [f"{s}.{p}" for s in self.layers for p in ("weight", "bias")]
        kind, A, S = SQUASHINGS[configs[0].squashing]
        kinds = [kind if s != "F" or net.squash_output else 0 for s in self.layers]
        self.kind = torch.tensor(kinds, dtype=torch.int32)
        self.A = torch.tensor([A] * len(self.layers), dtype=torch.float32)
        self.S = torch.tensor([S] * len(self.layers), dtype=torch.float32)
        self.n = torch.tensor(self.sizes, dtype=torch.int32)
        # per replica, per layer: weights (out, padded in) and biases, their steps
        shapes = {s: (b, _padded(a)) for s, a, b in zip(self.layers, self.sizes, self.sizes[1:])}
        self.w = [[torch.zeros(shapes[s]) for s in self.layers] for _ in range(self.K)]
        self.b = [[torch.zeros(shapes[s][0]) for s in self.layers] for _ in range(self.K)]
        self.ew = [[torch.zeros(shapes[s]) for s in self.layers] for _ in range(self.K)]
        self.eb = [[torch.zeros(shapes[s][0]) for s in self.layers] for _ in range(self.K)]

    def _fill(self, w, b, stacked):
        for k in range(self.K):
            for i, s in enumerate(self.layers):
                wk = stacked[f"{s}.weight"][k]
                w[k][i][:, :wk.shape[1]] = wk
                b[k][i][:] = stacked[f"{s}.bias"][k]

    def load(self, stacked: dict) -> None:
        self._fill(self.w, self.b, stacked)

    def set_steps(self, eps: dict) -> None:
        self._fill(self.ew, self.eb, eps)

    def export(self) -> dict:
        out = {}
        for i, (s, a) in enumerate(zip(self.layers, self.sizes)):
            out[f"{s}.weight"] = torch.stack([self.w[k][i][:, :a] for k in range(self.K)]).clone()
            out[f"{s}.bias"] = torch.stack([self.b[k][i] for k in range(self.K)]).clone()
        return out

    def _inputs(self, x):
        """(N, 32, 32) coded images -> (N, padded 784) float32: the network's 28x28 input."""
        flat = crop(torch.as_tensor(x, dtype=torch.float32)).reshape(len(x), IMAGE * IMAGE)
        pad = _padded(IMAGE * IMAGE) - IMAGE * IMAGE
        return torch.nn.functional.pad(flat, (0, pad)).contiguous() if pad else flat.contiguous()

    def _steps(self, k, x, y, pen, loss):
        return self.lib.dn_steps(len(self.layers), self.n.data_ptr(), pointers(self.w[k]), pointers(self.b[k]),
                                 pointers(self.ew[k]), pointers(self.eb[k]), self.kind.data_ptr(), self.A.data_ptr(),
                                 self.S.data_ptr(), x.data_ptr(), y.data_ptr(), len(y), pen.data_ptr(), loss.data_ptr())

    def _forward(self, k, x, pen):
        return self.lib.dn_forward(len(self.layers), self.n.data_ptr(), pointers(self.w[k]), pointers(self.b[k]),
                                   self.kind.data_ptr(), self.A.data_ptr(), self.S.data_ptr(), x.data_ptr(), len(x),
                                   pen.data_ptr())
