"""The lockstep engine: many per-pattern runs trained at once, each as if it were alone.

A group holds K runs (seeds, or configs of several variants) that share the layer shapes and
budget (`lockstep_key`). Each run keeps its one-network LeNet5 (lenet1998/model.py) and its
step rule (lenet1998/sdlm.py): before a pass they estimate h_kk and set eps exactly as the
reference trainer does; during the pass the group steps all K networks on one pattern each
(their own pattern, in their own order); after it the networks are evaluated as the reference
does (test error, and validation error where the runs hold patterns out). Only the per-pattern
step is fast machinery, in one of three paths, chosen once:

    kernel    lenet1998/engine/kernel.py: a C kernel, replicas as the SIMD lanes (paper shapes;
              every S2/S4 kind: trainable, avg_pool, max_pool; the RBF output with MAP or MLE
              or the linear output with cross-entropy; every squashing and C3 table; on the CPU)
    compiled  lenet1998/engine/replicas.py under torch.compile (any layer shape, CPU or CUDA)
    eager     the same in plain PyTorch: portable, needs no compiler

The other networks of Fig. 9 (lenet1998/networks.py) step in their own groups: the fully
connected ones by a second C kernel (lenet1998/engine/dense.py, path "dense"), LeNet-1 and
LeNet-4 by a third (lenet1998/engine/convnet.py, path "convnet"); off the CPU, in float64 or
where they do not build, by torch.func.vmap (lenet1998/engine/vmap.py, path "vmap").

tests/test_engine.py checks every variant and registry entry: each replica of a group follows
its config trained alone by lenet1998/reference.py. Every RunResult names its path (`engine`).
"""

from __future__ import annotations

import json
import math
import shutil

import torch

from ..networks import build_model
from ..patterns import TrainingPatterns, test_images, validation_images
from ..sdlm import STEP_RULES
from ..record import RunResult, evaluate, pass_record, timer
from .replicas import TorchGroup, stack, unstack

CHUNK = 2000  # patterns gathered at once

# What may differ between the runs of one group (each run keeps its own): everything else in
# the config is shared, except that trainable S2/S4 may average or sum, an RBF output may be
# trained by MAP or MLE, and per-pattern runs may step by SDLM or SGD (with their own lr).
# distortion_scale (each run's pool), subsampling_init (each run's start) and sdlm_subsampling_h,
# sdlm_output_seed, sdlm_reestimate, sdlm_output_curvature, sdlm_samples (h_kk is estimated by
# each run's own network and step rule, outside the fast step: the kernel reads none of them)
# are per run as well.
PER_RUN = ("seed", "init", "bias_init", "input_coding", "distortions", "order", "squashing", "c3_table",
           "distortion_scale", "sdlm_subsampling_h", "subsampling_init", "sdlm_output_seed", "sdlm_reestimate",
           "sdlm_output_curvature", "sdlm_samples", "sdlm_sample")
# What the replicas of a group of another network (lenet1998/networks.py, trained by the vmap group,
# lenet1998/engine/vmap.py, or stacked minibatch runs) may differ in: their data and start, and
# their step rule's own readings; the network itself is one module for all of them.
DATA_FIELDS = ("seed", "init", "bias_init", "input_coding", "distortions", "distortion_scale", "order",
               "sdlm_output_seed", "sdlm_reestimate", "sdlm_output_curvature", "sdlm_samples", "sdlm_sample")


def handles(config) -> bool:
    """Whether the engine trains this run: one pattern per step, by a step rule with per-parameter
    steps eps (SDLM, or SGD = SDLM with h_kk = 0). Minibatch and Adam runs use the reference."""
    return config.batch_size == 1 and config.optimizer in ("sdlm", "sgd")


def lockstep_key(config) -> str:
    """Two per-pattern configs with the same key can train in one group."""
    d = config.to_dict()
    for name in PER_RUN if config.network == "lenet5" else DATA_FIELDS:
        del d[name]
    if d["subsampling"] in ("trainable_average", "trainable_sum"):
        d["subsampling"] = "trainable"
    if d["output"] == "rbf":
        del d["loss"]
    if d["optimizer"] in ("sdlm", "sgd"):
        d["optimizer"] = "per_pattern"
        del d["lr"]
    return json.dumps(d, sort_keys=True, default=str)


def check_group(configs) -> list:
    configs = list(configs)
    if not configs:
        raise ValueError("a lockstep group needs at least one config")
    if not all(handles(c) for c in configs):
        raise ValueError("the lockstep engine trains per-pattern SDLM and SGD runs only")
    if len({lockstep_key(c) for c in configs}) > 1:
        raise ValueError("these configs cannot train in one lockstep group: they differ in more than "
                         f"{', '.join(PER_RUN)}, S2/S4 average or sum, criterion or step rule "
                         "(lenet1998.engine.lockstep_key)")
    return configs


def kernel_fits(configs, device="cpu"):
    """(True, "") if the C kernel covers the group here (the paper's layer shapes, on the CPU,
    where it builds; kernel.unsupported lists what it covers), else (False, why)."""
    from . import kernel

    why = kernel.unsupported(configs, device)
    return not why, why


def make_group(configs, engine: str, device):
    """(group, path name) for `engine` ("auto": kernel where it fits on CPU, else compiled where a
    compiler exists, else eager). Another network than LeNet-5 steps in its C kernel's group (on
    the CPU in float32: engine/dense.py, engine/convnet.py), else in the vmap group."""
    if configs[0].network != "lenet5":
        if engine in ("auto", "kernel"):
            from . import convnet, dense

            why = dense.unsupported(configs, device)
            if not why:
                return dense.DenseGroup(configs), "dense"
            why_conv = convnet.unsupported(configs, device)
            if not why_conv:
                return convnet.ConvNetGroup(configs), "convnet"
            if engine == "kernel":
                raise RuntimeError(f"engine 'kernel' cannot train this group: {why}; {why_conv}")
        from .vmap import VmapGroup

        return VmapGroup(configs, device), "vmap"
    if engine in ("auto", "kernel"):
        ok, why = kernel_fits(configs, device)
        if ok:
            from .kernel import for_configs
            return for_configs(configs), "kernel"
        if engine == "kernel":
            raise RuntimeError(f"engine 'kernel' cannot train this group: {why}")
    if engine == "auto":
        engine = "compiled" if str(device) != "cpu" or shutil.which("cc") or shutil.which("gcc") else "eager"
    return TorchGroup(configs, compiled=engine == "compiled", device=device), engine


def train_group(configs, data, device="cpu", starts=None, on_pass=None, on_progress=None, engine="auto") -> list:
    """Train the per-pattern runs `configs` in lockstep; see lenet1998.train.fit."""
    configs = check_group(configs)
    K, c0, n = len(configs), configs[0], configs[0].train_size
    starts = starts or [None] * K
    nets = [build_model(c).to(device) for c in configs]
    rules = [STEP_RULES[c.optimizer](net, c) for net, c in zip(nets, configs)]
    codings = {c.input_coding for c in configs}
    plain = c0.replace(distortions="none", distortion_scale=1.0)  # the originals, shared by every run's pool
    images = {cd: TrainingPatterns(plain.replace(input_coding=cd), data, device).images for cd in codings}
    tests = {cd: test_images(c0.replace(input_coding=cd), data, device) for cd in codings}
    vals = {cd: validation_images(c0.replace(input_coding=cd), data, device) for cd in codings}  # val_size is shared
    sets = [TrainingPatterns(c, data, device, images[c.input_coding]) for c in configs]
    group, path = make_group(configs, engine, device)
    results = [RunResult(c.seed, engine=path) for c in configs]
    first_pass = 1
    if any(s is not None for s in starts):
        if len({None if s is None else s.passes_done for s in starts}) > 1:
            raise ValueError("the runs of a group must resume from the same pass")
        for net, rule, r, s in zip(nets, rules, results, starts):
            net.load_state(s.state)
            rule.load_state_dict(s.rule_state)  # h_kk estimated once are kept
            r.history = list(s.history)
        first_pass = starts[0].passes_done + 1

    for pass_number in range(first_pass, c0.epochs + 1):
        elapsed = timer()
        for rule, ts in zip(rules, sets):  # each run's own h_kk sample and steps, as the reference
            rule.begin_pass(pass_number, ts.hessian_sample(pass_number).unsqueeze(1) if rule.needs_sample else None)
        params = stack(nets)
        group.load(params)
        group.set_steps({name: torch.stack([r.eps[i] for r in rules]) for i, name in enumerate(params)})
        hessian_time = elapsed()
        wrong, loss_sum = train_pass(group, sets, nets[0].predict, pass_number, n, results, on_progress)
        train_time = elapsed()
        unstack(group.export(), nets)
        test_errors = error_rates(group, nets, configs, {cd: x for cd, (x, _) in tests.items()}, tests[c0.input_coding][1])
        val_errors = [None] * K if not c0.val_size else \
            error_rates(group, nets, configs, {cd: x for cd, (x, _) in vals.items()}, vals[c0.input_coding][1])
        if pass_number == c0.epochs:
            train_errors = error_rates(group, nets, configs, images, sets[0].labels)
        for k, (net, c, r) in enumerate(zip(nets, configs, results)):
            times = {"wall_time_s": None, "train_time_s": train_time, "hessian_time_s": hessian_time}
            r.history.append(pass_record(c, pass_number, float(wrong[k]), float(loss_sum[k]), test_errors[k], times,
                                         rules[k].ranges(), val_errors[k]))
            if pass_number == c.epochs:
                r.history[-1]["train_error_final"] = train_errors[k]
            r.state = net.state()
        for r in results:
            r.history[-1]["wall_time_s"] = elapsed()
        if on_pass is not None:
            on_pass(pass_number, results, [rule.state_dict() for rule in rules])
        if all(r.failed for r in results):
            break
    return results


EVAL_CHUNK = 500  # patterns per replica in one call of the kernel's forward


@torch.no_grad()
def error_rates(group, nets, configs, coded: dict, labels) -> list:
    """Error rate (%) of each run on the images coded its way ({coding: (N, 32, 32)}): all runs
    at once through the group's forward where it has one (the C kernel: the same network in
    float32, tests/test_kernel.py), else each run's own network (lenet1998.record.evaluate)."""
    if not hasattr(group, "forward"):
        return [evaluate(net, coded[c.input_coding], labels) for net, c in zip(nets, configs)]
    wrong = torch.zeros(len(configs), dtype=torch.float64)
    for s in range(0, len(labels), EVAL_CHUNK):
        x = torch.stack([coded[c.input_coding][s:s + EVAL_CHUNK] for c in configs], 1)  # (B, K, 32, 32)
        wrong += (nets[0].predict(group.forward(x)) != labels[s:s + EVAL_CHUNK, None]).sum(0)
    return (100.0 * wrong / len(labels)).tolist()


def train_pass(group, sets, predict, pass_number, n, results, on_progress):
    """One pass of per-pattern steps: replica k sees its own patterns in its own order.
    Returns each replica's wrong count and loss sum, measured on the fly (Fig. 5)."""
    K = len(sets)
    orders = torch.stack([ts.order(pass_number) for ts in sets])  # (K, n)
    wrong, loss_sum = torch.zeros(K, dtype=torch.float64), torch.zeros(K, dtype=torch.float64)
    for s in range(0, n, CHUNK):
        idx = orders[:, s:s + CHUNK]  # (K, B)
        xs = torch.stack([ts.patterns(i) for ts, i in zip(sets, idx)], 1)  # (B, K, 32, 32)
        ys = torch.stack([ts.targets(i) for ts, i in zip(sets, idx)], 1)  # (B, K)
        outs, losses = group.steps(xs, ys)  # (B, K, 10), (B, K): one step per pattern, in order
        wrong += (predict(outs) != ys).sum(0).cpu()
        loss_sum += losses.sum(0).double().cpu()
        for k, r in enumerate(results):
            if r.failed is None and not math.isfinite(loss_sum[k]):
                r.failed = f"non-finite loss in pass {pass_number}"
        if on_progress is not None:
            on_progress(s + xs.shape[0], n)
        if all(r.failed for r in results):
            break
    return wrong, loss_sum
