"""Minibatch runs in lockstep: K seeds of one minibatch config (Adam, the modern ablation)
trained at once, each as if it were alone (lenet1998/reference.py).

The K networks' parameters are stacked along a leading replica axis; one forward runs all K
(torch.func.vmap over `torch.func.functional_call` of the one-network LeNet5), each on its own
minibatch, in its own order (its seed's permutation). The summed loss, sum_k mean_b E(k, b),
has as its gradient in replica k's parameters exactly replica k's own gradient (the replicas
share nothing), and Adam is elementwise, so one torch.optim.Adam over the stacked tensors is K
independent Adams with the same step count: the same updates as K reference runs, up to the
rounding of the batched convolutions (tests/test_engine.py checks it in float64).

What a group shares: every config field but the seed (`handles`). A resumed run, or a group of
one, trains with the reference trainer instead.
"""

from __future__ import annotations

import math

import torch
from torch.func import functional_call, vmap

from ..loss import LOSSES
from ..model import LeNet5
from ..patterns import TrainingPatterns, test_images, validation_images
from ..record import RunResult, evaluate, pass_record, timer
from ..reference import CHUNK


def handles(configs, starts=None) -> bool:
    """Whether the minibatch group trains these runs: two or more minibatch Adam runs that differ
    only in their seed, none resuming."""
    configs = list(configs)
    if len(configs) < 2 or any(s is not None for s in (starts or [])):
        return False
    same = {c.replace(seed=0) for c in configs}
    return len(same) == 1 and configs[0].optimizer == "adam" and len({c.seed for c in configs}) == len(configs)


def train_group(configs, data, device="cpu", on_pass=None, on_progress=None) -> list:
    """Train the minibatch runs `configs` (handles() is True) together; see lenet1998.train.fit.
    on_pass(pass_number, results, rule_states) after every pass (rule_states: each run's Adam state)."""
    configs = list(configs)
    K, c0 = len(configs), configs[0]
    nets = [LeNet5(c).initialize().to(device) for c in configs]
    names = [n for n, _ in nets[0].named_parameters()]
    stacked = {n: torch.stack([dict(net.named_parameters())[n].detach() for net in nets]).requires_grad_()
               for n in names}
    opt = torch.optim.Adam(list(stacked.values()), lr=c0.step_size(1))
    criterion = LOSSES[c0.loss]
    sets = [TrainingPatterns(c, data, device) for c in configs]
    x_test, y_test = test_images(c0, data, device)
    validation = validation_images(c0, data, device)
    template = nets[0]

    def forward(params, x):  # one replica: its parameters, its minibatch (B, 1, 32, 32)
        return functional_call(template, params, (x,))

    batched = vmap(forward)
    results = [RunResult(c.seed, engine="minibatch") for c in configs]
    n, bs = c0.train_size, c0.batch_size
    for pass_number in range(1, c0.epochs + 1):
        elapsed = timer()
        for group in opt.param_groups:
            group["lr"] = c0.step_size(pass_number)
        orders = torch.stack([ts.order(pass_number) for ts in sets])  # (K, n)
        wrong, loss_sum = torch.zeros(K, dtype=torch.float64), torch.zeros(K, dtype=torch.float64)
        # the reference's batches: minibatches of bs within chunks of CHUNK patterns (a chunk's last may be short)
        starts = [b for s in range(0, n, CHUNK) for b in range(s, min(s + CHUNK, n), bs)]
        for b in starts:
            idx = orders[:, b:min(b + bs, (b // CHUNK + 1) * CHUNK, n)]  # (K, B)
            x = torch.stack([ts.patterns(i) for ts, i in zip(sets, idx)]).unsqueeze(2)  # (K, B, 1, 32, 32)
            y = torch.stack([ts.targets(i) for ts, i in zip(sets, idx)])  # (K, B)
            out = batched(stacked, x)  # (K, B, 10)
            loss = criterion(out, y, c0.map_j)  # (K, B)
            opt.zero_grad(set_to_none=True)
            loss.mean(dim=1).sum().backward()  # replica k's gradient: its own mean loss's
            opt.step()
            wrong += (template.predict(out.detach()) != y).sum(1).double().cpu()
            loss_sum += loss.detach().sum(1).double().cpu()
            if on_progress is not None:
                on_progress(b + idx.shape[1], n)
        train_time = elapsed()
        with torch.no_grad():
            for k, net in enumerate(nets):
                for name, p in net.named_parameters():
                    p.copy_(stacked[name][k])
        for k, (net, c, r) in enumerate(zip(nets, configs, results)):
            if r.failed is None and not math.isfinite(loss_sum[k]):
                r.failed = f"non-finite loss in pass {pass_number}"
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
            on_pass(pass_number, results, [replica_state(opt, stacked, k) for k in range(K)])
        if all(r.failed for r in results):
            break
    return results


def replica_state(opt, stacked: dict, k: int) -> dict:
    """Replica k's Adam state in the shape a one-network torch.optim.Adam saves it (its resume
    point: lenet1998.sdlm.Adam.load_state_dict)."""
    state = opt.state_dict()
    one = {"state": {}, "param_groups": [dict(g, params=list(g["params"])) for g in state["param_groups"]]}
    for i, s in state["state"].items():
        one["state"][i] = {key: ((v[k] if v.dim() > 0 else v).clone() if torch.is_tensor(v) else v)  # the shared step too:
                           for key, v in s.items()}  # Adam counts it up in place
    return one
