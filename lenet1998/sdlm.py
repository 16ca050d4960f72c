"""Stochastic diagonal Levenberg-Marquardt (SDLM), the paper's training algorithm.

Paper: Appendix C, Eqs. (18)-(27); Sec. III-B (constants and schedule).

    w_k <- w_k - eps_k dE^p/dw_k                        after every single pattern p (Eq. 18)
    eps_k = eta / (mu + h_kk)                            (Eq. 21), mu = 0.02
    h_kk  = sum_{(i,j) in V_k} d2E/du_ij^2               summed over the connections sharing w_k (Eq. 23)
    d2E/du_ij^2 = d2E/da_i^2 x_j^2                       (Gauss-Newton, Eq. 25)
    d2E/da_i^2  = f'(a_i)^2 sum_k u_ki^2 d2E/da_k^2      (Gauss-Newton, Eq. 27)

h_kk is averaged over `sdlm_samples` (500) patterns and re-estimated before each pass; eta
follows the schedule 5e-4 (passes 1-2), 2e-4 (3-5), 1e-4 (6-8), 5e-5 (9-12), 1e-5 (13-20).

How the second derivatives are backpropagated: each layer's linear part is linear in its
weights and in its input, so Eqs. (25) and (27) are exactly the reverse-mode derivatives of the
same linear part evaluated with squared weights on squared inputs, with f'(a)^2 in place of
f'(a). `hessian_diagonal` builds that "squared network" on the activations of a real forward
pass and lets autograd run it backwards once for a whole batch; summing over the batch gives
the sum over patterns, and weight sharing gives the sum over shared connections for free.
This is the paper's per-parameter estimate, not an average of squared gradients.

Deviation: the paper does not state the second derivative that seeds Eq. (27) at the output;
see lenet1998/loss.py `output_curvature`.
"""

from __future__ import annotations

import torch

from .loss import output_curvature


def hessian_diagonal(model, x, curvature):
    """Gauss-Newton diagonal h_kk of every parameter of `model`, averaged over the batch x.

    model: a module whose forward(x, trace) appends (layer, activation, input, pre-activation)
    per linear stage; curvature: d2E/d(out)^2 at the last traced stage's output (after its
    activation): a number or a tensor, or a function of the model's output returning one.
    Returns one tensor per parameter of `model.parameters()`, shaped like it.
    """
    trace = []
    with torch.no_grad():
        out = model(x, trace)
    if callable(curvature):
        curvature = curvature(out)
    params = list(model.parameters())
    squared = {id(p): p.detach().square().requires_grad_() for p in params}
    z = None
    for layer, activation, inp, a in trace:
        x2 = inp.square()
        if z is not None:
            # Value x^2 (what Eq. 25 multiplies with), gradient routed to the layer below.
            x2 = x2 + (z - z.detach()).reshape(x2.shape)
        a2 = layer.linear(x2, tuple(squared[id(p)] for p in layer.parameters()), squared=True, reference=inp)
        z = a2 * activation.derivative(a).square()  # d2E/da^2 = f'(a)^2 d2E/dx^2 (Eq. 27)
    total = (z * curvature).sum()
    leaves = [squared[id(p)] for p in params]
    grads = torch.autograd.grad(total, leaves, allow_unused=True)
    n = x.shape[0]
    return [torch.zeros_like(p) if g is None else g / n for p, g in zip(params, grads)]


class SDLM:
    """Per-pattern updates w_k -= eps_k g_k with eps_k = eta / (mu + h_kk) fixed during a pass."""

    def __init__(self, model, mu: float):
        self.model, self.mu = model, mu
        self.params = list(model.parameters())
        self.eps = [torch.zeros_like(p) for p in self.params]
        self.h = [torch.zeros_like(p) for p in self.params]

    def estimate(self, x, config, eta: float, fixed=None):
        """Re-estimate h_kk on the patterns x (N, K, 32, 32) and set the step sizes for a pass."""
        self.h = hessian_diagonal(self.model, x, lambda out: output_curvature(config, out))
        self.set_steps(eta, fixed)

    def set_steps(self, eta: float, fixed=None):
        """eps = eta / (mu + h) for a pass; fixed {k: step}: replica k takes that constant step
        on every parameter instead (per-pattern SGD in a group of mixed variants)."""
        # Contiguous like the parameters, so that a compiled step sees the same layout every pass.
        self.eps = [(eta / (self.mu + h)).contiguous() for h in self.h]
        K = self.model.replicas
        for k, step in (fixed or {}).items():
            for e in self.eps:
                e.view(K, -1)[k] = step

    @torch.no_grad()
    def step(self, grads):
        torch._foreach_addcmul_(self.params, grads, self.eps, value=-1.0)

    def step_ranges(self):
        """{layer: [(min eps, max eps) per replica]} over the real connections of each layer."""
        K, out = self.model.replicas, {}
        eps = {id(p): e for p, e in zip(self.params, self.eps)}
        for name, layer in self.model.trainable_layers():
            lo = torch.full((K,), float("inf"))
            hi = torch.full((K,), -float("inf"))
            for p in layer.parameters():
                e, free = eps[id(p)].reshape(K, -1), layer.free_entries(p).reshape(K, -1)
                lo = torch.minimum(lo, e.masked_fill(~free, float("inf")).min(1).values.cpu())
                hi = torch.maximum(hi, e.masked_fill(~free, -float("inf")).max(1).values.cpu())
            out[name] = list(zip(lo.tolist(), hi.tolist()))
        return out


class PerPatternSGD(SDLM):
    """Plain per-pattern SGD, w -= lr g (the SDLM ablation; not the paper): SDLM with h = 0
    and eta = lr * mu, so every parameter's step is lr."""

    def __init__(self, model, lr: float = 0.0):
        super().__init__(model, mu=1.0)
        self.set_steps(lr)
