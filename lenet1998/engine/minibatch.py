"""Minibatch runs in lockstep: K Adam runs (seeds, and variants that share the layer shapes: the
modern ablation with and without distortions) trained at once, each as if it were alone
(lenet1998/reference.py).

The K networks' parameters are stacked along a leading replica axis (the stacked layout of
lenet1998/engine/replicas.py). Each replica takes its own minibatch, in its own order (its
seed's permutation), of its own patterns (its input coding, its distortion pool). Replica k's
gradient is its own mean loss's, and Adam is elementwise, so one torch.optim.Adam over the
stacked tensors is K independent Adams with the same step count: the same updates as K
reference runs, up to the rounding of the gradients. The gradients come from one of two paths:

    kernel  the C kernel (lenet1998/engine/kernel.py) accumulating: each replica's per-pattern
            gradients summed over its minibatch at fixed weights, replicas as SIMD lanes; the
            replicas may differ in what a kernel group allows (squashing, C3 table, S2/S4 sum
            or average, MAP or MLE). float32, CPU.
    vmap    torch.func.vmap over `functional_call` of the one-network LeNet5: any device and
            dtype; the replicas share the network (they differ in seed, init, data only).

tests/test_engine.py checks the vmap path against the reference trainer in float64, and the
kernel path against the vmap path; tests/test_kernel.py checks the kernel's gradient sums
against autograd. A resumed run, or a group of one, trains with the reference trainer instead.
"""

from __future__ import annotations

import math

import torch
from torch.func import functional_call, vmap

from ..loss import LOSSES
from ..networks import build_model
from ..patterns import TrainingPatterns, test_images, validation_images
from ..record import RunResult, evaluate, pass_record, timer
from ..reference import CHUNK
from .replicas import stack, stacked_name, unstack


def groupable(config) -> bool:
    """Whether a run may train in a minibatch lockstep group: an Adam run."""
    return config.optimizer == "adam"


def path(configs, device="cpu", engine: str = "auto") -> str:
    """The gradient path of a group: "kernel" where the C kernel covers the network here (on the
    CPU, in float32, engine "auto" or "kernel"), "vmap" where the replicas share their network,
    "" where neither (the runs then train one after the other)."""
    from . import DATA_FIELDS, kernel, lockstep_key

    configs = list(configs)
    if len(configs) < 2 or not all(groupable(c) for c in configs) or len(set(configs)) < len(configs):
        return ""
    if len({lockstep_key(c) for c in configs}) > 1:  # the optimizer, its lr and batch size, the budget
        return ""
    if engine in ("auto", "kernel") and torch.get_default_dtype() == torch.float32 \
            and not kernel.unsupported(configs, device, minibatch=True):
        return "kernel"
    if len({c.replace(**{f: getattr(configs[0], f) for f in DATA_FIELDS}) for c in configs}) == 1:
        return "vmap"
    return ""


def handles(configs, starts=None, device="cpu", engine: str = "auto") -> bool:
    """Whether the minibatch group trains these runs: two or more distinct Adam runs of one
    lockstep key that a gradient path covers (`path`), none resuming."""
    if any(s is not None for s in (starts or [])):
        return False
    return bool(path(configs, device, engine))


def train_group(configs, data, device="cpu", on_pass=None, on_progress=None, engine: str = "auto") -> list:
    """Train the minibatch runs `configs` (handles() is True) together; see lenet1998.train.fit.
    on_pass(pass_number, results, rule_states) after every pass (rule_states: each run's Adam state)."""
    configs = list(configs)
    how = path(configs, device, engine)
    if not how:
        raise ValueError("these runs cannot train in one minibatch group (lenet1998.engine.minibatch.path)")
    K, c0 = len(configs), configs[0]
    nets = [build_model(c).to(device) for c in configs]
    stacked = {n: t.clone().requires_grad_() for n, t in stack(nets).items()}  # in named_parameters order
    opt = torch.optim.Adam(list(stacked.values()), lr=c0.step_size(1))
    sets = [TrainingPatterns(c, data, device) for c in configs]
    evaluation = {c.input_coding: (test_images(c, data, device), validation_images(c, data, device)) for c in configs}
    criteria = [LOSSES[c.loss] for c in configs]
    if how == "kernel":
        from .kernel import for_configs

        group = for_configs(configs, minibatch=True)
        group.load({n: t.detach() for n, t in stacked.items()})
        group.accumulate()
    else:
        template = nets[0]
        full_names = {stacked_name(n): n for n, _ in template.named_parameters()}
        batched = vmap(lambda params, x: functional_call(template, params, (x,)))

    results = [RunResult(c.seed, engine=f"minibatch-{how}") for c in configs]
    n, bs = c0.train_size, c0.batch_size
    for pass_number in range(1, c0.epochs + 1):
        elapsed = timer()
        for g in opt.param_groups:
            g["lr"] = c0.step_size(pass_number)
        orders = torch.stack([ts.order(pass_number) for ts in sets])  # (K, n)
        wrong, loss_sum = torch.zeros(K, dtype=torch.float64), torch.zeros(K, dtype=torch.float64)
        for start in range(0, n, CHUNK):  # the reference's batches: minibatches of bs within chunks of CHUNK
            chunk = orders[:, start:start + CHUNK]  # (K, C)
            xs = torch.stack([ts.patterns(i) for ts, i in zip(sets, chunk)])  # (K, C, 32, 32)
            ys = torch.stack([ts.targets(i) for ts, i in zip(sets, chunk)])  # (K, C)
            for b in range(0, chunk.shape[1], bs):
                x, y = xs[:, b:b + bs], ys[:, b:b + bs]  # (K, B, 32, 32), (K, B); a chunk's last may be short
                if how == "kernel":
                    out, loss = (t.transpose(0, 1) for t in group.steps(x.transpose(0, 1), y.t()))  # (K, B, 10), (K, B)
                    for name, grad in group.gradient_sums().items():
                        stacked[name].grad = grad.div_(x.shape[1])  # the mean loss's gradient, as the reference
                else:
                    out = batched({full_names[k]: v for k, v in stacked.items()}, x.unsqueeze(2))  # (K, B, 10)
                    loss = torch.stack([crit(o, t, c.map_j) for crit, o, t, c in zip(criteria, out, y, configs)])
                    opt.zero_grad(set_to_none=True)
                    loss.mean(dim=1).sum().backward()  # replica k's gradient: its own mean loss's
                opt.step()
                if how == "kernel":
                    group.load({name: t.detach() for name, t in stacked.items()})
                wrong += torch.stack([(net.predict(o) != t).sum() for net, o, t in zip(nets, out.detach(), y)]).double().cpu()
                loss_sum += loss.detach().sum(1).double().cpu()
            if on_progress is not None:
                on_progress(start + chunk.shape[1], n)
        train_time = elapsed()
        with torch.no_grad():
            unstack({name: t.detach() for name, t in stacked.items()}, nets)
        for k, (net, c, r) in enumerate(zip(nets, configs, results)):
            if r.failed is None and not math.isfinite(loss_sum[k]):
                r.failed = f"non-finite loss in pass {pass_number}"
            (x_test, y_test), validation = evaluation[c.input_coding]
            test_error = evaluate(net, x_test, y_test)
            val_error = None if validation is None else evaluate(net, *validation)
            times = {"wall_time_s": None, "train_time_s": train_time, "hessian_time_s": 0.0}
            r.history.append(pass_record(c, pass_number, float(wrong[k]), float(loss_sum[k]), test_error, times, {},
                                         val_error))
            if pass_number == c.epochs:
                r.history[-1]["train_error_final"] = evaluate(net, sets[k].images, sets[k].labels)
            r.state = net.state()
        for r in results:
            r.history[-1]["wall_time_s"] = elapsed()
        if on_pass is not None:
            on_pass(pass_number, results, [replica_state(opt, k) for k in range(K)])
        if all(r.failed for r in results):
            break
    return results


def replica_state(opt, k: int) -> dict:
    """Replica k's Adam state in the shape a one-network torch.optim.Adam saves it (its resume
    point: lenet1998.sdlm.Adam.load_state_dict)."""
    state = opt.state_dict()
    one = {"state": {}, "param_groups": [dict(g, params=list(g["params"])) for g in state["param_groups"]]}
    for i, s in state["state"].items():
        one["state"][i] = {key: ((v[k] if v.dim() > 0 else v).clone() if torch.is_tensor(v) else v)  # the shared step too:
                           for key, v in s.items()}  # Adam counts it up in place
    return one
