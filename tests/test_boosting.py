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


def _stream(n=40, seed=0):
    from lenet1998.boosting import CandidateStream

    g = torch.Generator().manual_seed(5)
    originals = torch.zeros(n, 32, 32)
    originals[:, 10:22, 12:20] = torch.rand(n, 12, 8, generator=g)  # a blob of ink per digit
    return CandidateStream(originals, torch.arange(n) % 10, seed)


def test_the_stream_gives_new_distortions_of_every_training_digit_each_sweep():
    stream = _stream()
    first, second = stream.images(torch.arange(40)), stream.images(torch.arange(40, 80))
    assert first.shape == (40, 28, 28) and 0 <= first.min() and first.max() <= 255
    order0, order1 = stream.sweep(0)[0], stream.sweep(1)[0]
    assert sorted(order0.tolist()) == sorted(order1.tolist()) == list(range(40))  # every digit once per sweep
    assert not torch.equal(order0, order1)
    # candidate j is digit order[j % n] of sweep j // n, with that digit's label
    assert torch.equal(stream.targets(torch.arange(40, 80)), order1 % 10)
    assert not torch.allclose(first[order0.argsort()], second[order1.argsort()])  # fresh parameters: new patterns
    # the same candidate, read alone, in another batch or from another stream object: the same image
    again = _stream().images(torch.tensor([77, 3]))
    assert torch.allclose(again, torch.stack([second[37], first[3]]))
    assert not torch.allclose(_stream(seed=1).images(torch.arange(40)), first)


def test_the_sets_read_the_stream_through_the_nets_answers():
    from lenet1998.boosting import disagreement_set, mixed_set

    stream = _stream()
    net1 = lambda images: (images.sum((1, 2)) / 100).long() % 10  # noqa: E731  (any rule of the images)
    net2 = lambda images: (images.sum((1, 2)) / 110).long() % 10  # noqa: E731
    index = mixed_set(stream, net1, 30, torch.Generator().manual_seed(0), chunk=25)
    right = net1(stream.images(index)) == stream.targets(index)
    every = torch.arange(int(index[-1]) + 1)
    expected = mixed_filter(net1(stream.images(every)) == stream.targets(every), 30, torch.Generator().manual_seed(0))
    assert torch.equal(index, expected) and 10 <= int(right.sum()) <= 20  # the filter over the stream read so far
    start = int(index[-1]) + 1
    later = disagreement_set(stream, net1, net2, 5, start, chunk=7)
    assert (later >= start).all() and len(later) == 5
    images = stream.images(torch.arange(start, int(later[-1]) + 1))
    assert torch.equal(later, start + (net1(images) != net2(images)).nonzero().flatten()[:5])
    with pytest.raises(ValueError, match="no disagreement"):  # nets that always agree: a clear error, not a hang
        disagreement_set(stream, net1, net1, 5, start, chunk=7, limit=100)
    with pytest.raises(ValueError, match="ran out"):
        mixed_set(stream, lambda images: stream.targets(torch.arange(len(images))) * 0 + 11, 5,
                  torch.Generator().manual_seed(0), chunk=7, limit=100)  # a net never right
