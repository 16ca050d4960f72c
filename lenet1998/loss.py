"""The training criteria of Sec. II-C, per pattern, and the modern cross-entropy.

Paper: Sec. II-C, Eq. (8) (maximum likelihood, "MLE") and Eq. (9) (discriminative, "MAP").

    MLE:  E^p = y_{D_p}(Z^p, W)
    MAP:  E^p = y_{D_p}(Z^p, W) + log( e^{-j} + sum_i e^{-y_i(Z^p, W)} )

y_i are the RBF penalties and D_p the correct class. e^{-j} is a "rubbish" class: a wrong
class whose penalty is already well above j is no longer pushed up. The log-sum is computed
with logsumexp; log(sum(exp(-y))) in plain floats underflows to log(0) for penalties near 100.

Every function takes outputs (..., 10) and targets (...) and returns the per-pattern criterion,
shape (...); the trainers average it over a minibatch (the 1/P of the paper). Registries
declared here: `LOSSES` and `OUTPUT_SEEDS` (how SDLM's second-derivative pass is seeded at the
RBF output: LeNetConfig.sdlm_output_seed).

Deviation: the paper gives no value of j; LeNetConfig.map_j defaults to 10 (REPRODUCING.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .registry import Registry


def mle_loss(penalties, target, j=None):
    """Eq. (8): the penalty of the correct class. penalties (..., 10), target (...)."""
    return penalties.gather(-1, target.unsqueeze(-1)).squeeze(-1)


def log_sum(penalties, j):
    """The term Eq. (9) adds to Eq. (8): log(e^{-j} + sum_i e^{-y_i}), with logsumexp."""
    rubbish = torch.full_like(penalties[..., :1], -float(j))  # (..., 1): the e^{-j} term
    return torch.logsumexp(torch.cat([rubbish, -penalties], dim=-1), dim=-1)


def map_loss(penalties, target, j):
    """Eq. (9): y_D + log(e^{-j} + sum_i e^{-y_i}), computed with logsumexp."""
    return mle_loss(penalties, target) + log_sum(penalties, j)


def cross_entropy(logits, target, j=None):
    """Softmax cross-entropy on the logits of a linear output layer (not in the paper)."""
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none").view(target.shape)


LOSSES = Registry("loss", {"map": map_loss, "mle": mle_loss, "cross_entropy": cross_entropy})

# Which criteria an output layer can be trained with: MAP and MLE are defined on RBF penalties.
# The 2009 demo's head ("targets": +-1 codes as centres) trains with its Euclidean cost, which is
# MLE's y_D (halved: see lenet1998/layers.py TargetOutput).
LOSSES_FOR_OUTPUT = {"rbf": ("map", "mle"), "linear": ("cross_entropy",), "targets": ("mle",)}


def map_output_curvature(penalties, features, centres, j):
    """The exact d2E/dx_j^2 of the MAP criterion (Eq. 9) at each F6 output x_j: (N, 84).

    With d_ij = x_j - c_ij (c_i the fixed code of class i), y_i = sum_j d_ij^2 (Eq. 7),
    Z = e^{-j} + sum_k e^{-y_k}, p_i = e^{-y_i} / Z and p_none = e^{-j} / Z (Eq. 9's posteriors,
    `posteriors`), the criterion is E = y_D + log Z. Then
        dE/dx_j     = 2 d_Dj - 2 sum_i p_i d_ij
        dp_i/dx_j   = -2 p_i (d_ij - m_j),  m_j = sum_k p_k d_kj
        d2E/dx_j^2  = 2 - 2 sum_i p_i - 2 sum_i d_ij dp_i/dx_j
                    = 2 p_none + 4 (sum_i p_i d_ij^2 - m_j^2)  =  2 p_none + 4 Var_p(d_j),
    since sum_i p_i = 1 - p_none. It does not depend on the class D. Var_p is taken with the
    weights p_i, whose sum 1 - p_none is at most 1, so by Cauchy-Schwarz m_j^2 <= (sum_i p_i)
    (sum_i p_i d_ij^2) <= sum_i p_i d_ij^2: the seed is never negative, and Eqs. (25)-(27)
    keep every h_kk >= 0. Far from every code (p_none -> 1) it tends to 2, today's constant
    (the MLE part's own 2); where one class dominates (p_i -> 1) it tends to 0; between
    competing classes it grows with their codes' disagreement at x_j. The off-diagonal terms in
    x_j, x_k are dropped, as Eq. (23) drops cross terms. tests/test_fingerprint.py checks it
    against autograd and a loop over patterns and units.
    """
    probs, none = posteriors(penalties, "map", j)  # (N, 10), (N,)
    d = features.unsqueeze(-2) - centres  # (N, 10, 84)
    p = probs.unsqueeze(-1)  # (N, 10, 1)
    s = probs.sum(-1)[..., None]  # (N, 1): 1 - p_none
    m = (p * d).sum(-2)  # (N, 84)
    centre = m / s.clamp_min(torch.finfo(m.dtype).tiny)  # the p-weighted mean of d_j
    # sum_i p_i d_ij^2 - m_j^2 = sum_i p_i (d_ij - centre_j)^2 + p_none m_j^2 / s: two terms that
    # are never negative, where the difference of the first form rounds below 0 in float32
    variance = (p * (d - centre.unsqueeze(-2)).square()).sum(-2) + none[..., None] * m * centre
    return 2 * none.unsqueeze(-1) + 4 * variance


# How the second-derivative pass is seeded at the RBF output (LeNetConfig.sdlm_output_seed):
# the constant config.sdlm_output_curvature, or the exact diagonal of Eq. (9)'s second derivative.
OUTPUT_SEEDS = Registry("sdlm_output_seed", {"constant": None, "map_exact": map_output_curvature})


def output_curvature(config, out, features=None, centres=None):
    """d2E/d(out)^2 seeding the second-derivative pass of SDLM (Appendix C, Eq. 27).

    RBF output: the recursion starts at the F6 outputs x_j (`features`, (N, 84)) with the
    constant config.sdlm_output_curvature (2, the second derivative of (x_j - w_Dj)^2 in y_D;
    the paper does not state the seed), or, with sdlm_output_seed "map_exact", with the exact
    diagonal of the MAP criterion's second derivative (`map_output_curvature`; `centres` the
    RBF codes (10, 84)). Linear output with cross-entropy: the Gauss-Newton diagonal
    p_i (1 - p_i) on the logits, derived as follows (not in the paper).

    With logits a, p = softmax(a) and target D, E = -a_D + log sum_k e^{a_k}, so
        dE/da_i = p_i - [i = D],   d2E/da_i da_k = p_i [i = k] - p_i p_k,
    i.e. the Hessian at the logits is H = diag(p) - p p^T, independent of D and positive
    semi-definite (a covariance). Gauss-Newton for a weight u feeding the logits through the
    Jacobian J = da/du: d2E/du^2 ~ J^T H J, with no term in d2a/du^2 (the logits are linear in
    their own weights, so for the output layer this is exact). Eqs. (25)-(27) keep only the
    diagonal of the curvature at each layer, so the seed is diag(H): d2E/da_i^2 = p_i - p_i^2
    = p_i (1 - p_i), in [0, 1/4]. This is the exact second derivative of E in a_i, not an
    approximation of it; what is dropped are the off-diagonal -p_i p_k, as Eq. (23) drops the
    cross terms between connections. tests/test_variants_grid.py checks both against autograd.
    """
    if config.loss in ("map", "mle"):  # the criteria on RBF penalties (the Fig. 3 codes, or the demo's +-1 targets)
        if OUTPUT_SEEDS[config.sdlm_output_seed] is None:
            return config.sdlm_output_curvature
        return map_output_curvature(out, features, centres, config.map_j)
    p = torch.softmax(out, dim=-1)
    return p * (1 - p)


def posteriors(penalties, loss_name, j=None):
    """Class probabilities of the outputs, as the training criterion reads them: (probs (..., 10), none (...)).

    MAP (Eq. 9): the criterion is -log of P(D) = e^{-y_D} / (e^{-j} + sum_k e^{-y_k}), so
        P(i) = e^{-y_i} / (e^{-j} + sum_k e^{-y_k}),   none = e^{-j} / (e^{-j} + sum_k e^{-y_k}).
    "none" is the mass of the rubbish class e^{-j}: the probability that the pattern is none of
    the ten digits. It is near 1 when every penalty is well above j, and the ten P(i) plus none
    sum to 1. MLE (Eq. 8) has no such term: the softmin over the penalties, none = 0. A linear
    output (cross_entropy): the softmax of the logits, none = 0. Computed with logsumexp, so
    penalties of 1e3 and more neither underflow nor give 0/0.
    """
    if loss_name == "cross_entropy":
        return torch.softmax(penalties, dim=-1), torch.zeros_like(penalties[..., 0])
    if loss_name == "mle":
        return torch.softmax(-penalties, dim=-1), torch.zeros_like(penalties[..., 0])
    if loss_name == "map":
        # shift every exponent by the smallest of them first: y_i - s and j - s are exact where
        # y_i and j are close, so the quotients keep float32 precision at penalties of 1e3
        shift = penalties.min(dim=-1).values.clamp(max=float(j))  # (...,)
        y, rubbish = penalties - shift[..., None], float(j) - shift  # (..., 10), (...,)
        total = torch.logsumexp(torch.cat([-rubbish[..., None], -y], dim=-1), dim=-1)  # log(e^{-j} + sum e^{-y})
        return torch.exp(-y - total[..., None]), torch.exp(-rubbish - total)
    raise ValueError(f"loss={loss_name!r} is not valid; choose one of {list(LOSSES)}")
