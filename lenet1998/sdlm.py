"""Stochastic diagonal Levenberg-Marquardt (SDLM), the paper's training algorithm.

Paper: Appendix C, Eqs. (18)-(27); Sec. III-B (constants and schedule).

    w_k <- w_k - eps_k dE^p/dw_k                        after every single pattern p (Eq. 18)
    eps_k = eta / (mu + h_kk)                            (Eq. 21), mu = 0.02
    h_kk  = sum_{(i,j) in V_k} d2E/du_ij^2               summed over the connections sharing w_k (Eq. 23)
    d2E/du_ij^2 = d2E/da_i^2 x_j^2                       (Gauss-Newton, Eq. 25)
    d2E/da_i^2  = f'(a_i)^2 sum_k u_ki^2 d2E/da_k^2      (Gauss-Newton, Eq. 27)

h_kk is averaged over `sdlm_samples` (500) patterns and re-estimated before each pass
(`sdlm_reestimate` "every_pass"; "once": estimated before pass 1 and kept, as the Lush 2 demo,
packages/gblearn2/demos/lenet5.lsh, computes it once before training); eta follows the schedule 5e-4 (passes 1-2), 2e-4 (3-5), 1e-4 (6-8), 5e-5 (9-12), 1e-5 (13-20).

How the second derivatives are backpropagated: each layer's linear part is linear in its
weights and in its input, so Eqs. (25) and (27) are exactly the reverse-mode derivatives of the
same linear part evaluated with squared weights on squared inputs, with f'(a)^2 in place of
f'(a). `hessian_diagonal` builds that "squared network" on the activations of a real forward
pass and lets autograd run it backwards once for a whole batch; summing over the batch gives
the sum over patterns, and weight sharing gives the sum over shared connections for free.
This is the paper's per-parameter estimate, not an average of squared gradients.

Registry declared here: `STEP_RULES` (the config's `optimizer`: "sdlm", "sgd" = SDLM with
h_kk = 0, "adam").

Deviation: the paper does not state the second derivative that seeds Eq. (27) at the output;
see lenet1998/loss.py `output_curvature`.
"""

from __future__ import annotations

import torch

from .loss import output_curvature
from .registry import Registry


def hessian_diagonal(model, x, curvature):
    """Gauss-Newton diagonal h_kk of every parameter of `model`, averaged over the batch x.

    model: a module whose forward(x, trace) appends (layer, activation, input, pre-activation)
    per linear stage; curvature: d2E/d(out)^2 at the last traced stage's output (after its
    activation): a number or a tensor, or a function (model output, last traced stage's
    output) -> one (for LeNet-5 with the RBF head: the penalties and the F6 outputs).
    Returns one tensor per parameter of `model.parameters()`, shaped like it.
    """
    trace = []
    with torch.no_grad():
        out = model(x, trace)
    if callable(curvature):
        layer, activation, _, a = trace[-1]
        curvature = curvature(out, activation(a))
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
    """The paper's step rule for one network: per-pattern w_k -= eps_k g_k, eps_k = eta / (mu + h_kk),
    with h_kk re-estimated on a sample of patterns before each pass and fixed during it.

    The step rules share these methods: `begin_pass(pass_number, sample)` (sample: the coded
    patterns (m, 1, 32, 32) of the h_kk sample, or None for a rule that needs none),
    `step(grads)`, `ranges()` and `state_dict()` / `load_state_dict()`.
    """

    needs_sample = True

    def __init__(self, model, config):
        self.model, self.config = model, config
        self.params = list(model.parameters())
        self.eps = [torch.zeros_like(p) for p in self.params]
        self.h = None  # the h_kk of the last estimate

    def curvature(self, sample):
        """h_kk of every parameter (Eqs. 23-27), averaged over the sample."""
        centres = getattr(self.model.head, "centres", None)
        return hessian_diagonal(self.model, sample,
                                lambda out, features: output_curvature(self.config, out, features, centres))

    def begin_pass(self, pass_number: int, sample=None):
        if self.h is None or REESTIMATE[self.config.sdlm_reestimate]:
            self.h = self.curvature(sample)
        h = self.h
        eta = self.config.step_size(pass_number)
        # Contiguous like the parameters, so that a compiled step sees the same layout every pass.
        self.eps = [(eta / (self.config.sdlm_mu + hk)).contiguous() for hk in h]  # Eq. (21)

    @torch.no_grad()
    def step(self, grads):
        torch._foreach_addcmul_(self.params, list(grads), self.eps, value=-1.0)  # w -= eps g (Eq. 18)

    def ranges(self):
        """{layer: (min eps, max eps)} over the real connections of each layer (Table I)."""
        eps = {id(p): e for p, e in zip(self.params, self.eps)}
        out = {}
        for name, layer in self.model.trainable_layers():
            values = torch.cat([eps[id(p)][layer.free_entries(p)] for p in layer.parameters()])
            out[name] = (float(values.min()), float(values.max()))
        return out

    def state_dict(self):
        """None where everything is re-estimated at the start of a pass; with h_kk estimated
        once, the h_kk of pass 1 (a resumed run keeps them)."""
        if REESTIMATE[self.config.sdlm_reestimate] or self.h is None:
            return None
        return {"h": [h.detach().cpu().clone() for h in self.h]}

    def load_state_dict(self, state):
        if state is not None and "h" in state:
            self.h = [h.to(p.device, p.dtype) for h, p in zip(state["h"], self.params)]


# When SDLM estimates h_kk (LeNetConfig.sdlm_reestimate): True = before every pass (Appendix C),
# False = once, before the first pass, kept for the run (the Lush 2 demo).
REESTIMATE = Registry("sdlm_reestimate", {"every_pass": True, "once": False})


class SGD(SDLM):
    """Plain per-pattern SGD (the SDLM ablation; not the paper): SDLM with h_kk = 0, so every
    parameter takes the step eta / mu (or the config's constant `lr`): LeNetConfig.step_size."""

    needs_sample = False

    def begin_pass(self, pass_number: int, sample=None):
        step = self.config.step_size(pass_number)
        self.eps = [torch.full_like(p, step) for p in self.params]

    def ranges(self):
        return {}  # one constant step: nothing to record


class Adam:
    """Adam on minibatches (the modern ablation; not the paper), torch.optim.Adam with the
    config's learning rate (LeNetConfig.step_size)."""

    needs_sample = False

    def __init__(self, model, config):
        self.model, self.config = model, config
        self.params = list(model.parameters())
        self.opt = torch.optim.Adam(self.params, lr=config.step_size(1))

    def begin_pass(self, pass_number: int, sample=None):
        for group in self.opt.param_groups:
            group["lr"] = self.config.step_size(pass_number)

    def step(self, grads):
        for p, g in zip(self.params, grads):
            p.grad = g
        self.opt.step()

    def ranges(self):
        return {}

    def state_dict(self):
        return self.opt.state_dict()

    def load_state_dict(self, state):
        if state is not None:
            self.opt.load_state_dict(state)


STEP_RULES = Registry("optimizer", {"sdlm": SDLM, "sgd": SGD, "adam": Adam})
