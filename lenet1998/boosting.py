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

The stream of new patterns the filters read (CandidateStream): distortions of the training
digits that no net has seen. Sweep s presents the n training originals in a random order of its
own, each with fresh distortion parameters (lenet1998/distortions.py's ranges), drawn from
generators that depend only on (seed, sweep); candidate j is place j % n of sweep j // n. The
sets are built by reading the stream in chunks through the nets' answers:

    mixed_set(stream, answer, n, coins)         net 2's set, from candidate 0 on
    disagreement_set(stream, a, b, n, start)    net 3's set, from the candidate after net 2's last

Not stated, and so readings (REPRODUCING "The other networks of Fig. 9"): the sizes of the
second and third training sets, the stream they are drawn from, the confidence measure and its
threshold.
"""

from __future__ import annotations

import hashlib

import torch

from .distortions import FIELD, distort, sample_parameters
from .patterns import STREAM_CANDIDATES, generator

CHUNK = 50_000  # candidates read through the nets at once
LIMIT = 20_000_000  # candidates a set may read (333 sweeps of 60,000) before it is given up


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


class CandidateStream:
    """An unending stream of new distorted training digits (see the module docstring).

    originals: (n, 32, 32) ink in [0, 1] (lenet1998.data.ink of the training images); labels
    (n,). A candidate is returned as the 28x28 image LeNet-4 reads (the central 28x28 of the
    distorted 32x32 field) in MNIST's grey levels 0-255, as floats (not rounded): a training set
    of such images goes through lenet1998.data.encode like MNIST's own."""

    def __init__(self, originals: torch.Tensor, labels: torch.Tensor, seed: int, scale: float = 1.0):
        self.originals, self.labels, self.seed, self.scale = originals, labels, int(seed), scale
        self.n = len(originals)
        self._sweeps = {}

    def sweep(self, s: int):
        """(order (n,), parameters (n, 5)) of sweep s."""
        if s not in self._sweeps:
            g = generator(self.seed, STREAM_CANDIDATES, s)
            self._sweeps = {s: (torch.randperm(self.n, generator=g), sample_parameters(self.n, g, self.scale))}
        return self._sweeps[s]

    def _parts(self, index: torch.Tensor):
        index = torch.as_tensor(index, dtype=torch.long)
        originals, params = torch.empty_like(index), torch.empty(len(index), 5)
        for s in index.div(self.n, rounding_mode="floor").unique().tolist():
            at = index.div(self.n, rounding_mode="floor") == s
            order, p = self.sweep(s)
            originals[at], params[at] = order[index[at] % self.n], p[index[at] % self.n]
        return originals, params

    def targets(self, index) -> torch.Tensor:
        return self.labels[self._parts(index)[0]]

    def images(self, index) -> torch.Tensor:
        """(M, 28, 28) grey levels of candidates `index` (M,)."""
        originals, params = self._parts(index)
        ink = distort(self.originals[originals], params)
        margin = (FIELD - 28) // 2
        return 255.0 * ink[:, margin:FIELD - margin, margin:FIELD - margin]


def _chunks(stream, start: int, chunk: int, limit: int):
    for first in range(start, start + limit, chunk):
        index = torch.arange(first, min(first + chunk, start + limit))
        yield index, stream.images(index), stream.targets(index)


def mixed_set(stream, answer, n: int, coins: torch.Generator, chunk: int = CHUNK, limit: int = LIMIT) -> torch.Tensor:
    """Net 2's set: the stream indices mixed_filter keeps, reading the stream from candidate 0
    through answer(images) -> net 1's classes, chunk after chunk until the mix is complete.
    ValueError if `limit` candidates do not complete it."""
    state = coins.get_state()
    heads = int((torch.rand(n, generator=coins) < 0.5).sum())
    correct = []
    for index, images, targets in _chunks(stream, 0, chunk, limit):
        correct.append(answer(images) == targets)
        every = torch.cat(correct)
        if int(every.sum()) >= heads and int((~every).sum()) >= n - heads:
            try:
                return mixed_filter(every, n, torch.Generator().set_state(state))
            except ValueError:  # enough of each kind, but not in an order that completes the mix yet
                continue
    every = torch.cat(correct)
    raise ValueError(f"the stream ran out: {limit:,} candidates hold {int(every.sum())} right and "
                     f"{int((~every).sum())} wrong answers of net 1, short of a {n}-pattern mix")


def disagreement_set(stream, first, second, n: int, start: int, chunk: int = CHUNK, limit: int = LIMIT) -> torch.Tensor:
    """Net 3's set: the first n stream indices at or after `start` on which first(images) and
    second(images) (nets 1 and 2's classes) differ. ValueError if `limit` candidates hold fewer."""
    found, total = [], 0
    for index, images, _ in _chunks(stream, start, chunk, limit):
        differ = index[first(images) != second(images)]
        found.append(differ)
        total += len(differ)
        if total >= n:
            return torch.cat(found)[:n]
    raise ValueError(f"the stream ran out: {total} of {n} disagreements (no disagreement beyond those) "
                     f"in {limit:,} candidates from {start}")


def digest(images: torch.Tensor) -> str:
    """The SHA-256 of a set's images (float32 bytes): what a resumed run checks it trains on."""
    return hashlib.sha256(images.to(torch.float32).contiguous().numpy().tobytes()).hexdigest()
