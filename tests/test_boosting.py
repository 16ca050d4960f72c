"""Boosting by filtering (lenet1998/boosting.py, Sec. III-C.8): net 2's 50/50 mix of net 1's
right and wrong answers, net 3's disagreement set, the added outputs and the shortcut's cost."""

import pytest
import torch

from lenet1998.boosting import added, disagreement_filter, margin, mixed_filter, shortcut


def test_the_mix_is_half_right_half_wrong_in_stream_order():
    g = torch.Generator().manual_seed(0)
    correct = torch.rand(200_000, generator=g) < 0.98  # net 1 right on 98% of the stream
    kept = mixed_filter(correct, 4000, torch.Generator().manual_seed(1))
    assert len(kept) == len(set(kept.tolist())) == 4000 and (kept.diff() > 0).all()  # each candidate once, in order
    share = correct[kept].double().mean().item()
    assert abs(share - 0.5) < 0.03  # a fair coin per pattern: half right, half wrong (binomial sd 0.008)
    again = mixed_filter(correct, 4000, torch.Generator().manual_seed(1))
    assert torch.equal(kept, again)  # the same coins, the same set


def test_the_mix_by_hand():
    correct = torch.tensor([True, True, False, True, False, False, True])
    coins = torch.Generator().manual_seed(0)
    heads = (torch.rand(3, generator=torch.Generator().manual_seed(0)) < 0.5).tolist()
    kept = mixed_filter(correct, 3, coins).tolist()
    position = -1
    for h, i in zip(heads, kept):  # each pick: the next candidate after the last one, of the coin's kind
        want = next(j for j in range(position + 1, len(correct)) if bool(correct[j]) == h)
        assert i == want
        position = i
    with pytest.raises(ValueError, match="ran out"):
        mixed_filter(torch.ones(50, dtype=torch.bool), 10, torch.Generator().manual_seed(0))


def test_the_disagreement_set_takes_new_patterns_only():
    first = torch.tensor([1, 2, 3, 4, 5, 6, 7, 8])
    second = torch.tensor([0, 2, 0, 4, 0, 6, 0, 8])
    assert disagreement_filter(first, second, 2).tolist() == [0, 2]
    assert disagreement_filter(first, second, 2, start=3).tolist() == [4, 6]
    with pytest.raises(ValueError, match="ran out"):
        disagreement_filter(first, second, 3, start=3)


def test_outputs_are_added_and_the_shortcut_counts_the_nets_called():
    a = torch.tensor([[3.0, 0.0, 0.0], [1.0, 0.9, 0.0]])  # margins 3.0 and 0.1
    b = torch.tensor([[0.0, 1.0, 0.0], [0.0, 2.0, 0.0]])
    c = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 0.5]])
    combined = added([a, b, c])
    assert torch.equal(combined, torch.tensor([[3.0, 2.0, 0.0], [1.0, 2.9, 0.5]]))
    assert torch.allclose(margin(a), torch.tensor([3.0, 0.1]))
    scores, called = shortcut(a, combined, threshold=1.0)
    assert called.tolist() == [1, 3] and called.double().mean() == 2.0  # 2 single-net evaluations on average
    assert torch.equal(scores[0], a[0]) and torch.equal(scores[1], combined[1])
    assert scores.argmax(1).tolist() == [0, 1]
