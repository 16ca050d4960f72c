"""The rows of Fig. 9 that are not trained by back-propagation, and the rejection rule of Fig. 10.

Paper: Sec. III-C.1 (the pairwise linear classifier), III-C.2 (K-nearest neighbours), Fig. 10.

    knn(train, train_labels, test, k)    K-NN with the Euclidean distance on the 28x28 images,
                                         exact: integer pixel values, distances computed in
                                         float64, which holds them exactly (at most 784 x 255^2)
    pairwise_fit(images, labels)         the 45 units i/j of the pairwise linear classifier
    pairwise_scores(units, images)       class i's score: sum of the units i/x minus the units y/i
    rejection(scores, labels, target)    the share of patterns to reject, smallest difference of
                                         the top two scores first, for the rest to reach `target`% error

Readings where the paper is silent (REPRODUCING "The other networks of Fig. 9"):
- K-NN: k = 1 and k = 3 are reported (the paper's 5.0% on regular data gives no k; its
  deslanted row uses k = 3). Ties between equal distances go to the lower training index; a
  3-NN vote of three different labels goes to the nearest neighbour's label. Its score for
  rejection: minus the distance to the nearest training pattern of each class.
- Pairwise: each unit is the least-squares linear fit (with a bias) of +1 on class i and -1 on
  class j over the training patterns of those two classes only ("learning by directly solving
  linear systems", one of the methods Sec. III-C.1 says gave similar results), no seeds; its
  output enters the score as it is or squashed (UNIT_OUTPUT), chosen on a validation split.
"""

from __future__ import annotations

import itertools

import torch

PAIRS = list(itertools.combinations(range(10), 2))  # the 45 units i/j, i < j


def pixels(images) -> torch.Tensor:
    """(N, 28, 28) images (uint8, 0..255) -> (N, 784) float64, the values unchanged."""
    return torch.as_tensor(images).reshape(len(images), -1).to(torch.float64)


def squared_distances(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """||a_i - b_j||^2 for (n, d) and (m, d) float64 rows of integers: exact (every term is an
    integer below 2^53)."""
    return (a * a).sum(1, keepdim=True) + (b * b).sum(1) - 2.0 * a @ b.T


def knn(train, train_labels, test, k: int = 1, chunk: int = 500):
    """(predictions (n,), per-class distance scores (n, 10)) of K-NN on flattened images.

    Neighbours: the k smallest squared Euclidean distances, ties to the lower training index.
    Vote: the most frequent label among them; a tie between labels goes to the label of the
    nearest of the tied ones. Scores: minus the distance to each class's nearest training
    pattern (for the rejection rule)."""
    x, t = pixels(train), pixels(test)
    y = torch.as_tensor(train_labels).long()
    predictions, scores = [], []
    for start in range(0, len(t), chunk):
        d = squared_distances(t[start:start + chunk], x)  # (c, N)
        # equal distances keep the lower training index first: rank by d * N + index, exact in
        # float64 (at most 784 x 255^2 x 60,000 < 2^53)
        order = (d * len(x) + torch.arange(len(x), dtype=torch.float64)).topk(k, dim=1, largest=False).indices
        labels = y[order]  # (c, k), nearest first
        votes = torch.zeros(len(d), 10, dtype=torch.long).scatter_add_(1, labels, torch.ones_like(labels))
        best = votes.max(1, keepdim=True).values
        tied = votes.gather(1, labels) == best.expand_as(labels)  # (c, k): which neighbours carry a top label
        predictions.append(labels.gather(1, tied.float().argmax(1, keepdim=True)).squeeze(1))  # the nearest such
        per_class = torch.full((len(d), 10), float("inf"), dtype=torch.float64)
        per_class = per_class.scatter_reduce(1, y.expand(len(d), -1), d, reduce="amin")
        scores.append(-per_class.sqrt())
    return torch.cat(predictions), torch.cat(scores)


def pairwise_fit(images, labels) -> torch.Tensor:
    """The 45 units i/j as (45, 785) weights and bias: least squares of +1 (class i) / -1
    (class j) on the patterns of those two classes alone, in the order of PAIRS."""
    x, y = pixels(images) / 255.0, torch.as_tensor(labels).long()
    x = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1)  # the bias as a constant input
    units = []
    for i, j in PAIRS:
        keep = (y == i) | (y == j)
        target = torch.where(y[keep] == i, 1.0, -1.0).to(torch.float64)
        units.append(torch.linalg.lstsq(x[keep], target.unsqueeze(1), driver="gelsd").solution.squeeze(1))
    return torch.stack(units)


# How a unit's output enters the score: as it is (a linear unit), or squashed to (-1, 1) as the
# output of a trained sigmoid unit would be. The paper does not say; experiments/fig9.py chooses
# on a validation split (the last 10,000 training patterns), never on the test set.
UNIT_OUTPUT = {"linear": lambda a: a, "tanh": torch.tanh}


def pairwise_scores(units: torch.Tensor, images, output: str = "linear") -> torch.Tensor:
    """Class i's score (n, 10): the sum of the outputs of the units i/x minus the sum of the
    outputs of the units y/i (Sec. III-C.1); the class is the largest."""
    x = pixels(images) / 255.0
    out = torch.cat([x, torch.ones(len(x), 1, dtype=torch.float64)], 1) @ units.T  # (n, 45)
    return pairwise_combine(UNIT_OUTPUT[output](out))


def pairwise_combine(out: torch.Tensor) -> torch.Tensor:
    """(n, 45) outputs of the units i/j (PAIRS order) -> (n, 10) class scores."""
    scores = torch.zeros(len(out), 10, dtype=out.dtype)
    for u, (i, j) in enumerate(PAIRS):
        scores[:, i] += out[:, u]  # unit i/j counts for i
        scores[:, j] -= out[:, u]  # and against j
    return scores


def rejection(scores, labels, target: float = 0.5) -> float:
    """Fig. 10: the share (%) of patterns to reject so that the rest reach `target`% error,
    rejecting first those with the smallest difference between their two highest scores (the
    class is the highest). 0 when no rejection is needed; 100 when only rejecting all would do."""
    scores, labels = torch.as_tensor(scores, dtype=torch.float64), torch.as_tensor(labels).long()
    top = scores.topk(2, dim=1)
    margin = top.values[:, 0] - top.values[:, 1]
    wrong = (top.indices[:, 0] != labels).double()
    order = torch.sort(margin, descending=True, stable=True).indices  # kept first: the most confident
    kept_wrong = torch.cumsum(wrong[order], 0)
    kept = torch.arange(1, len(order) + 1, dtype=torch.float64)
    ok = (100.0 * kept_wrong / kept <= target).nonzero()
    if not len(ok):
        return 100.0
    return 100.0 * (1.0 - (int(ok.max()) + 1) / len(order))
