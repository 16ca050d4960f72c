"""Training runs: what a run records, where it resumes, and `fit`, the one entry point that
every command line, benchmark and test trains through.

Paper: Sec. III-B and Appendix C. "The weights are updated after each presentation of a single
pattern"; 20 passes; training error is measured on the fly, while the weights change (Fig. 5),
and test error after each pass.

`fit` takes one config per run. Runs trained one pattern at a time (SDLM, SGD) go to the
lockstep engine (lenet1998/engine/), which trains many at once and is tested against the
reference trainer; minibatch runs (Adam) train with the reference trainer
(lenet1998/reference.py), which is also where a reader finds the algorithm written out.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch

from .config import LeNetConfig

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
    step-rule state (Adam's moments; None for SDLM and SGD, which re-estimate every pass)."""

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


def pass_record(config: LeNetConfig, pass_number: int, wrong: float, loss_sum: float, test_error: float,
                times: dict, ranges: dict, val_error: float | None = None) -> dict:
    """The metrics.csv row of one pass (training error and loss on the fly, as in Fig. 5). A run
    with a validation split (val_size > 0) also records `val_error`; the others have no such column."""
    record = {"pass": pass_number, "eta": config.step_size(pass_number),
              "train_error": 100.0 * wrong / config.train_size, "train_loss": loss_sum / config.train_size,
              "test_error": test_error, **({} if val_error is None else {"val_error": val_error}), **times}
    for layer, (lo, hi) in ranges.items():
        record[f"eps_min_{layer}"], record[f"eps_max_{layer}"] = lo, hi
    return record


ENGINES = ("auto", "kernel", "compiled", "eager")


def fit(configs, data, device="cpu", start=None, on_pass=None, on_progress=None, engine: str = "auto") -> list:
    """Train one run per config and return a RunResult each.

    configs: a LeNetConfig or a list of them (each with its own seed). start: a ResumePoint per
    config (or None). on_pass(pass_number, results, rule_states) after every pass of a group
    (rule_states: each run's step-rule state, for its resume point); on_progress(done, total)
    during a pass. engine: how per-pattern runs step ("auto": the compiled kernel where it
    builds and fits the group, else torch.compile; see lenet1998/engine/); minibatch runs
    always use the reference trainer.
    """
    from . import engine as lockstep
    from .reference import train as train_reference

    configs = [configs] if isinstance(configs, LeNetConfig) else list(configs)
    starts = list(start) if start is not None else [None] * len(configs)
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r} is not valid; choose one of {list(ENGINES)}")
    if all(lockstep.handles(c) for c in configs):
        return lockstep.train_group(configs, data, device, starts, on_pass, on_progress, engine)
    results = []
    for config, point in zip(configs, starts):  # minibatch and Adam runs: one at a time
        def one(pass_number, result, rule_state):
            if on_pass is not None:
                on_pass(pass_number, [result], [rule_state])
        results.append(train_reference(config, data, device, point, one, on_progress))
    return results


def timer():
    t0 = time.perf_counter()
    return lambda: time.perf_counter() - t0
