"""What a training run records, and where it resumes: shared by both trainers.

Paper: Sec. III-B and Appendix C. Training error is measured on the fly, while the weights
change (Fig. 5), and test error after each pass.

The reference trainer (lenet1998/reference.py) and the lockstep engine (lenet1998/engine/) both
fill these records; lenet1998/train.py `fit` only chooses between them. This module imports
neither, so the three never import each other in a circle (tests/test_grid.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

EVAL_BATCH = 1000  # patterns per evaluation batch


@dataclass
class RunResult:
    """One run: per-pass records, final parameters, and why it failed, if it did."""

    seed: int
    history: list = field(default_factory=list)
    state: dict | None = None
    failed: str | None = None
    engine: str = "reference"  # the code path that trained it (lenet1998/engine/)


@dataclass
class ResumePoint:
    """Where a run resumes: after `passes_done` passes, with these parameters, records and
    step-rule state (Adam's moments; SDLM's h_kk where they are estimated once; None for SDLM
    and SGD that re-estimate every pass)."""

    passes_done: int
    state: dict
    history: list
    rule_state: dict | None = None


@torch.no_grad()
def evaluate(model, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Error rate (%) of one network on coded images (N, 32, 32)."""
    wrong = 0
    for s in range(0, len(labels), EVAL_BATCH):
        wrong += int((model.predict(model(images[s:s + EVAL_BATCH].unsqueeze(1))) != labels[s:s + EVAL_BATCH]).sum())
    return 100.0 * wrong / len(labels)


def pass_record(config, pass_number: int, wrong: float, loss_sum: float, test_error: float,
                times: dict, ranges: dict, val_error: float | None = None) -> dict:
    """The metrics.csv row of one pass (training error and loss on the fly, as in Fig. 5). A run
    with a validation split (val_size > 0) also records `val_error`; the others have no such column."""
    record = {"pass": pass_number, "eta": config.step_size(pass_number),
              "train_error": 100.0 * wrong / config.train_size, "train_loss": loss_sum / config.train_size,
              "test_error": test_error, **({} if val_error is None else {"val_error": val_error}), **times}
    for layer, (lo, hi) in ranges.items():
        record[f"eps_min_{layer}"], record[f"eps_max_{layer}"] = lo, hi
    return record


def timer():
    """A function returning the seconds since this call."""
    t0 = time.perf_counter()
    return lambda: time.perf_counter() - t0
