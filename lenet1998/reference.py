"""The reference trainer: the paper's training of one network, written out plainly.

Paper: Sec. III-B and Appendix C. Per pass: re-estimate the diagonal Hessian h_kk on 500
patterns and fix the steps eps_k = eta / (mu + h_kk) (lenet1998/sdlm.py); then present every
training pattern once, in a constant random order, and after each single pattern take the step
w_k -= eps_k dE/dw_k (Eq. 18); then measure the test error (and the validation error, if the
config holds patterns out). SGD is the same loop with
h_kk = 0; Adam (the modern ablation) the same loop over minibatches. Every run of the project
is equivalent to this loop: the lockstep engine (lenet1998/engine/) is tested against it.
"""

from __future__ import annotations

import math

import torch

from .loss import LOSSES
from .networks import build_model
from .patterns import TrainingPatterns, test_images, validation_images
from .sdlm import STEP_RULES
from .record import ResumePoint, RunResult, evaluate, pass_record, timer

CHUNK = 2000  # patterns coded (or distorted) at once


def train(config, data, device="cpu", start: ResumePoint | None = None, on_pass=None, on_progress=None) -> RunResult:
    """Train one network by `config` (its seed) and return its RunResult; on_pass(pass_number,
    result, rule_state) after every pass."""
    model = build_model(config).to(device)
    params = list(model.parameters())
    rule = STEP_RULES[config.optimizer](model, config)
    criterion = LOSSES[config.loss]
    train_set = TrainingPatterns(config, data, device)
    x_test, y_test = test_images(config, data, device)
    validation = validation_images(config, data, device)  # None: no validation split (the paper)
    result, first_pass = RunResult(config.seed), 1
    if start is not None:
        model.load_state(start.state)
        rule.load_state_dict(start.rule_state)
        result.history, first_pass = list(start.history), start.passes_done + 1

    for pass_number in range(first_pass, config.epochs + 1):
        elapsed = timer()
        sample = train_set.hessian_sample(pass_number).unsqueeze(1) if rule.needs_sample else None
        rule.begin_pass(pass_number, sample)  # SDLM: h_kk on the sample, eps = eta / (mu + h_kk)
        hessian_time = elapsed()
        wrong, loss_sum, done = 0.0, 0.0, 0
        for chunk in train_set.order(pass_number).split(CHUNK):
            xs, ys = train_set.patterns(chunk).unsqueeze(1), train_set.targets(chunk)  # (B, 1, 32, 32), (B,)
            for b in range(0, len(chunk), config.batch_size):  # batch_size 1: one pattern at a time
                x, y = xs[b:b + config.batch_size], ys[b:b + config.batch_size]
                out = model(x)  # (bs, 10)
                loss = criterion(out, y, config.map_j)  # (bs,)
                rule.step(torch.autograd.grad(loss.mean(), params))  # w -= eps * dE/dw
                wrong += float((model.predict(out) != y).sum())
                loss_sum += float(loss.detach().sum())
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, config.train_size)
            if not math.isfinite(loss_sum):
                result.failed = f"non-finite loss in pass {pass_number}"
                break
        train_time = elapsed()
        test_error = evaluate(model, x_test, y_test)
        val_error = None if validation is None else evaluate(model, *validation)
        times = {"wall_time_s": elapsed(), "train_time_s": train_time, "hessian_time_s": hessian_time}
        result.history.append(pass_record(config, pass_number, wrong, loss_sum, test_error, times, rule.ranges(),
                                          val_error))
        if pass_number == config.epochs:
            result.history[-1]["train_error_final"] = evaluate(model, train_set.images, train_set.labels)
        result.state = model.state()
        if on_pass is not None:
            on_pass(pass_number, result, rule.state_dict())
        if result.failed:
            break
    return result
