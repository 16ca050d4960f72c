"""Boosted LeNet-4 (Sec. III-C.8): boosting by filtering, as the paper describes it.

"Three LeNet-4s are combined: the first one is trained the usual way. The second one is trained
on patterns that are filtered by the first net so that the second machine sees a mix of
patterns, 50% of which the first net got right, and 50% of which it got wrong. Finally, the
third net is trained on new patterns on which the first and the second nets disagree. During
testing, the outputs of the three nets are simply added." Distorted patterns were needed to
have enough of them; "when the first net produces a high confidence answer, the other nets are
not called": on average about 1.75 nets per pattern.

The filters read a stream of candidate patterns (the distortion pool, pass after pass, in the
order it is drawn) through the answers of the nets already trained:

    mixed_filter(correct, n, generator)   net 2's set: for each pattern a fair coin says whether
                                          it is the next one net 1 gets right or wrong
    disagreement_filter(a, b, n, start)   net 3's set: the next patterns (after those net 2's set
                                          used) on which nets 1 and 2 disagree
    added(scores)                         the combined scores: the nets' outputs added
    shortcut(first, combined, threshold)  net 1's answer where its top-two margin reaches the
                                          threshold, else the sum; returns the nets called

Not stated, and so readings (REPRODUCING "The other networks of Fig. 9"): the sizes of the
second and third training sets, the confidence measure and its threshold.
"""

from __future__ import annotations

import torch


def mixed_filter(correct, n: int, generator: torch.Generator) -> torch.Tensor:
    """Indices into the stream of the n patterns net 2 trains on, in the order they were kept.
    correct: (N,) bool, whether net 1 answers each candidate right, in stream order. Pattern i
    of the set: a fair coin (from `generator`); heads, the next candidate after the last one
    kept that net 1 gets right; tails, the next one it gets wrong. ValueError if the stream
    runs out first (draw more distorted patterns)."""
    correct = torch.as_tensor(correct, dtype=torch.bool)
    right, wrong = correct.nonzero().flatten().tolist(), (~correct).nonzero().flatten().tolist()
    coins = torch.rand(n, generator=generator) < 0.5
    kept, position, r, w = [], -1, 0, 0
    for heads in coins.tolist():
        pool, start = (right, r) if heads else (wrong, w)
        i = start
        while i < len(pool) and pool[i] <= position:  # the next candidate after the last one kept
            i += 1
        if i == len(pool):
            raise ValueError(f"the stream ran out after {len(kept)} of {n} patterns: "
                             f"{len(right)} right and {len(wrong)} wrong answers of net 1 in {len(correct)} candidates")
        kept.append(pool[i])
        position = pool[i]
        if heads:
            r = i + 1
        else:
            w = i + 1
    return torch.tensor(kept, dtype=torch.long)


def disagreement_filter(first, second, n: int, start: int = 0) -> torch.Tensor:
    """Indices of the first n candidates at or after `start` (new patterns: past those net 2's
    set was drawn from) whose answers by nets 1 and 2 (first, second: (N,) classes) differ."""
    first, second = torch.as_tensor(first), torch.as_tensor(second)
    found = (first[start:] != second[start:]).nonzero().flatten()[:n] + start
    if len(found) < n:
        raise ValueError(f"the stream ran out: {len(found)} of {n} disagreements after pattern {start}")
    return found


def added(scores) -> torch.Tensor:
    """The boosted scores: the three nets' outputs added ((N, 10) each, the highest wins)."""
    return torch.stack(list(scores)).sum(0)


def margin(scores) -> torch.Tensor:
    """The confidence of an answer: the difference of the two highest scores (as Fig. 10 ranks)."""
    top = torch.as_tensor(scores).topk(2, dim=-1).values
    return top[..., 0] - top[..., 1]


def shortcut(first, combined, threshold: float):
    """(scores, nets called per pattern): net 1's scores where its margin is at least
    `threshold` (1 net called), the combined scores elsewhere (3 nets). The average of the
    second is the cost in single-net evaluations (the paper: about 1.75)."""
    confident = margin(first) >= threshold
    scores = torch.where(confident.unsqueeze(-1), torch.as_tensor(first), torch.as_tensor(combined))
    return scores, torch.where(confident, 1, 3)
