"""K-NN, the pairwise classifier's scoring rule and the rejection rule of Fig. 10
(lenet1998/classical.py) against hand-made cases and brute-force loops."""


import pytest
import torch

from lenet1998.classical import PAIRS, knn, pairwise_combine, pairwise_fit, pairwise_scores, rejection


def brute_force_knn(train, labels, test, k):
    out = []
    for t in test.tolist():
        d = [sum((a - b) ** 2 for a, b in zip(t, row)) for row in train.tolist()]  # exact integers
        nearest = sorted(range(len(d)), key=lambda i: (d[i], i))[:k]  # ties: the lower index
        votes = {}
        for rank, i in enumerate(nearest):
            votes.setdefault(int(labels[i]), []).append(rank)
        top = max(len(v) for v in votes.values())
        out.append(min((ranks[0], label) for label, ranks in votes.items() if len(ranks) == top)[1])
    return out


@pytest.mark.parametrize("k", [1, 3, 5])
def test_knn_equals_a_brute_force_loop(k):
    g = torch.Generator().manual_seed(0)
    train = torch.randint(0, 4, (60, 3, 3), generator=g, dtype=torch.uint8)  # small values: many ties
    labels = torch.randint(0, 10, (60,), generator=g)
    test = torch.randint(0, 4, (25, 3, 3), generator=g, dtype=torch.uint8)
    got, scores = knn(train, labels, test, k=k, chunk=7)
    assert got.tolist() == brute_force_knn(train.flatten(1), labels, test.flatten(1), k)
    if k == 1:  # the 1-NN class is the class of the best score
        assert (scores.argmax(1) == got).float().mean() > 0.5


def test_pairwise_scores_follow_the_papers_rule():
    """Class i's score: the sum of the outputs of units i/x minus the sum of the units y/i."""
    out = torch.zeros(1, 45, dtype=torch.float64)
    out[0, PAIRS.index((2, 7))] = 1.0  # unit 2/7 says "2, not 7"
    out[0, PAIRS.index((0, 2))] = 0.5  # unit 0/2 leans to 0
    scores = pairwise_combine(out)[0]
    assert scores.tolist() == [0.5, 0, 1.0 - 0.5, 0, 0, 0, 0, -1.0, 0, 0]


def test_a_pairwise_unit_is_trained_on_its_two_classes_only():
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (200, 4, 4), generator=g, dtype=torch.uint8)
    labels = torch.arange(200) % 10
    units = pairwise_fit(images, labels)
    moved = images.clone()
    moved[labels == 9] = 0  # class 9's patterns change: unit 0/1 must not
    again = pairwise_fit(moved, labels)
    assert torch.equal(units[PAIRS.index((0, 1))], again[PAIRS.index((0, 1))])
    assert not torch.equal(units[PAIRS.index((0, 9))], again[PAIRS.index((0, 9))])
    assert pairwise_scores(units, images).shape == (200, 10)


def test_rejection_drops_the_least_confident_first():
    # margins 3, 2, 1, 0.5 ... the wrong answers are the two least confident
    scores = torch.tensor([[4.0, 1.0], [3.0, 1.0], [2.0, 1.0], [1.5, 1.0]] * 1, dtype=torch.float64)
    scores = torch.cat([scores, torch.zeros(4, 8, dtype=torch.float64)], 1)
    labels = torch.tensor([0, 0, 1, 1])  # the last two are answered 0: wrong
    assert rejection(scores, labels, target=0.0) == pytest.approx(50.0)
    assert rejection(scores, labels, target=34.0) == pytest.approx(25.0)  # 1 wrong of 3 kept: 33.3%
    assert rejection(scores, labels, target=50.0) == 0.0
    assert rejection(scores, torch.tensor([1, 1, 0, 0]), target=0.0) == 100.0


def test_a_squashed_unit_votes_at_most_one():
    g = torch.Generator().manual_seed(2)
    images = torch.randint(0, 256, (100, 4, 4), generator=g, dtype=torch.uint8)
    units = torch.randn(45, 17, generator=g, dtype=torch.float64) * 100  # outputs far beyond +-1
    linear, squashed = pairwise_scores(units, images, "linear"), pairwise_scores(units, images, "tanh")
    assert squashed.abs().max() <= 9.0 < linear.abs().max()  # 9 units per class, each within (-1, 1)
