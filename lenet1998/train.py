"""Training runs: `fit`, the one entry point that every command line, benchmark and test
trains through. What a run records and where it resumes (RunResult, ResumePoint, evaluate,
pass_record) live in lenet1998/record.py, below both trainers, and are re-exported here.

Paper: Sec. III-B and Appendix C. "The weights are updated after each presentation of a single
pattern"; 20 passes; training error is measured on the fly, while the weights change (Fig. 5),
and test error after each pass.

`fit` takes one config per run. Runs trained one pattern at a time (SDLM, SGD) go to the
lockstep engine (lenet1998/engine/), which trains many at once and is tested against the
reference trainer; Adam runs that share their layer shapes and budget train stacked in one
process (lenet1998/engine/minibatch.py, tested against the reference too); other minibatch
runs train with the reference trainer
(lenet1998/reference.py), which is also where a reader finds the algorithm written out.
"""

from __future__ import annotations

from . import engine as lockstep
from .engine import minibatch
from .config import LeNetConfig
from .record import EVAL_BATCH, ResumePoint, RunResult, evaluate, pass_record, timer  # noqa: F401 (the public names)
from .reference import train as train_reference

ENGINES = ("auto", "kernel", "compiled", "eager")


def fit(configs, data, device="cpu", start=None, on_pass=None, on_progress=None, engine: str = "auto") -> list:
    """Train one run per config and return a RunResult each.

    configs: a LeNetConfig or a list of them (each with its own seed). start: a ResumePoint per
    config (or None). on_pass(pass_number, results, rule_states) after every pass of a group
    (rule_states: each run's step-rule state, for its resume point; both hold one entry per
    config, in order, None for a run that did not train in that call: runs that train one at a
    time report one at a time); on_progress(done, total)
    during a pass. engine: how per-pattern runs step ("auto": the compiled kernel where it
    builds and fits the group, else torch.compile; see lenet1998/engine/); Adam runs of one
    lockstep key train stacked (lenet1998/engine/minibatch.py: "auto" and "kernel" take the
    kernel's gradient sums where it covers them, else vmap), other minibatch runs use the
    reference trainer.
    """
    configs = [configs] if isinstance(configs, LeNetConfig) else list(configs)
    starts = list(start) if start is not None else [None] * len(configs)
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r} is not valid; choose one of {list(ENGINES)}")
    if all(lockstep.handles(c) for c in configs):
        return lockstep.train_group(configs, data, device, starts, on_pass, on_progress, engine)
    if minibatch.handles(configs, starts, device, engine):  # Adam runs of one lockstep key: stacked, in one process
        return minibatch.train_group(configs, data, device, on_pass, on_progress, engine)
    results, K = [], len(configs)
    for k, (config, point) in enumerate(zip(configs, starts)):  # minibatch and Adam runs: one at a time
        def one(pass_number, result, rule_state, k=k):
            if on_pass is not None:  # one entry per config, in order: only run k has trained this pass
                on_pass(pass_number, [result if i == k else None for i in range(K)],
                        [rule_state if i == k else None for i in range(K)])
        results.append(train_reference(config, data, device, point, one, on_progress))
    return results

