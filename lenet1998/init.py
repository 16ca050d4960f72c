"""Initialisation of LeNet-5's parameters.

Paper: Appendix A. "The weights were initialized with random values using a uniform
distribution between -2.4/F_i and 2.4/F_i, where F_i is the number of inputs (fan-in) of the
unit which the connection belongs to."

F_i is 25 for C1, 4 for an S2/S4 coefficient, 25 x (connected maps) for C3 (Table I, per map),
400 for C5, 120 for F6 (and 84 for a linear output layer).

Registries declared here: `INIT` (the bound of the weights), `BIAS_INIT` (the biases) and
`SUBSAMPLING_INIT` (the S2/S4 coefficient and bias).
Deviation: the default rule is "paper_sqrt", U(+-2.4/sqrt(F_i)): read literally ("paper"),
2.4/F_i leaves every SDLM step at the cap eta/mu in the first passes (variant `literal_init`;
REPRODUCING.md, "Open questions"). The paper is silent on biases: "fan_in" draws them like the
unit's weights.

The authors' code (Lush 2, packages/gblearn2; SPEC.md section 15) reads Appendix A another way,
and two entries measure it (issue "fingerprints"; REPRODUCING.md, "The paper gap"):
- INIT "lab": gb-params.lsh's `forget v p` draws U(+-v / F_i^(1/p)), and the LeNet-5 demo
  (demos/lenet5.lsh) calls `(==> net forget 1 2)`: U(+-1/sqrt(F_i)), F_i counted over the maps
  the connection table links (as ours, unlike "pytorch", which ignores Table I). The same
  comment calls v = 2.5, p = 2 "reasonable", next to our 2.4.
- SUBSAMPLING_INIT "constant": gb-modules-nn.lsh's subsampling layer forgets its coefficient
  to the constant v / (2*2)^(1/p) = 0.5 on the 2x2 sum (2.0 on our average, 0.5 on the sum)
  and its bias to 0, where ours ("fan_in") draws both like any unit's weights, so that some
  maps start with a coefficient near 0 or negative.
"""

from __future__ import annotations

import torch

from .layers import Conv, FullyConnected, TrainableSubsampling
from .registry import Registry


def _as_double(fan_in):
    return torch.as_tensor(fan_in, dtype=torch.float64)


INIT = Registry("init", {
    "paper_sqrt": lambda fan_in: 2.4 / _as_double(fan_in).sqrt(),  # our reading of Appendix A
    "paper": lambda fan_in: 2.4 / _as_double(fan_in),  # Appendix A read literally
    "pytorch": lambda fan_in: 1.0 / _as_double(fan_in).sqrt(),  # nn.Conv2d/nn.Linear's default
    "lab": lambda fan_in: 1.0 / _as_double(fan_in).sqrt(),  # the authors' demo, `forget 1 2`, Table I fan-ins
})


def uniform(shape, bound, generator):
    """U(-bound, bound) with a per-row bound broadcast over the trailing dimensions."""
    bound = bound.to(torch.float32).reshape(-1, *([1] * (len(shape) - 1)))
    return (torch.rand(shape, generator=generator) * 2 - 1) * bound


BIAS_INIT = Registry("bias_init", {
    "fan_in": lambda bound, generator: uniform(tuple(bound.shape), bound, generator),
    "zero": lambda bound, generator: torch.zeros(bound.shape),
})


# The S2/S4 coefficient's constant start in the authors' code: 0.5 times the 2x2 sum.
LAB_SUBSAMPLING_COEF_ON_SUM = 0.5

SUBSAMPLING_INIT = Registry("subsampling_init", {
    "fan_in": None,  # coefficient and bias drawn by the weights' rule, fan-in 4 (ours)
    "constant": LAB_SUBSAMPLING_COEF_ON_SUM,  # the authors' code: 0.5 on the sum, bias 0
})


@torch.no_grad()
def init_layer(layer, rule: str, bias_rule: str, generator: torch.Generator, subsampling_rule: str = "fan_in") -> None:
    """Draw one layer's parameters from `generator`: weights, then biases.

    With rule "pytorch" the fan-in of C3 ignores Table I, as nn.Conv2d would. With
    subsampling_rule "constant", a trainable S2/S4 layer draws nothing: its coefficient is 0.5
    on the 2x2 sum (coef * scale = 0.5, i.e. 2.0 where the layer averages) and its bias 0.
    """
    bound_of, bias_of = INIT[rule], BIAS_INIT[bias_rule]
    if isinstance(layer, Conv):
        k2 = layer.kernel**2
        fan_in = layer.inputs_per_map() * k2 if rule != "pytorch" else torch.full((layer.out_maps,), float(layer.in_maps * k2))
        bound = bound_of(fan_in)
        layer.weight.copy_(uniform(layer.weight.shape, bound, generator) * layer.mask)
        layer.bias.copy_(bias_of(bound, generator))
    elif isinstance(layer, TrainableSubsampling) and SUBSAMPLING_INIT[subsampling_rule] is not None:
        layer.coef.fill_(SUBSAMPLING_INIT[subsampling_rule] / layer.scale)
        layer.bias.zero_()
    elif isinstance(layer, TrainableSubsampling):
        bound = bound_of(torch.full((layer.maps,), 4.0))
        layer.coef.copy_(uniform((layer.maps,), bound, generator))
        layer.bias.copy_(bias_of(bound, generator))
    elif isinstance(layer, FullyConnected):
        bound = bound_of(torch.full((layer.out_features,), float(layer.in_features)))
        layer.weight.copy_(uniform(layer.weight.shape, bound, generator))
        layer.bias.copy_(bias_of(bound, generator))
