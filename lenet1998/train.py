"""The one training loop, `fit`, used by every command line, benchmark and test.

Paper: Sec. III-B and Appendix C. "The weights are updated after each presentation of a single
pattern"; "the patterns are presented in a constant random order"; 20 passes; before each
pass the diagonal Hessian is re-estimated on 500 patterns; training error is measured on the
fly, while the weights change (Fig. 5), and test error after each pass.

`fit` trains K replicas in lockstep: the model holds K copies (lenet1998/layers.py), replica k
gets its own initialisation, pattern order, h_kk sample and step sizes, all drawn from
generators seeded by its own seed. The replicas are seeds of one config, or configs of several
variants that share the layer shapes (LeNetConfig.lockstep_key): then each replica also keeps
its own squashing function, C3 table, S2/S4 reading, initialisation rule, input coding,
distortion pool, criterion (MAP/MLE) and step rule (SDLM/SGD). A replica trained in a group follows the same config trained alone, up to float
rounding.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import torch

from .config import LeNetConfig
from .data import MNIST, code, encode, ink
from .distortions import POOL_FACTOR, DistortionPool
from .loss import replica_losses
from .model import LeNet5
from .sdlm import SDLM, PerPatternSGD

CHUNK = 2000  # patterns gathered at once for the per-pattern loop
EVAL_BATCH = 900  # patterns x replicas per evaluation batch: small batches stay in cache (2x faster on CPU)


def eval_batch(replicas: int) -> int:
    return max(25, min(100, EVAL_BATCH // replicas))

# Streams of per-seed random numbers, so that no two uses share a generator.
STREAM_ORDER, STREAM_HESSIAN, STREAM_DISTORTIONS, STREAM_POOL = 1, 2, 3, 4


def generator(seed: int, stream: int, pass_number: int = 0) -> torch.Generator:
    """A generator that depends only on (seed, stream, pass): runs resume exactly."""
    return torch.Generator().manual_seed(int(seed) * 1_000_003 + stream * 10_007 + pass_number)


@dataclass
class ReplicaResult:
    """One seed's run: per-pass records, final parameters, and why it failed, if it did."""

    seed: int
    history: list = field(default_factory=list)
    state: dict | None = None
    failed: str | None = None


class AdamStep:
    """Adam on minibatches (the modern ablation; not the paper). Elementwise, so replicas
    in one model stay independent."""

    def __init__(self, model, lr):
        self.params = list(model.parameters())
        self.opt = torch.optim.Adam(self.params, lr=lr)

    def step(self, grads):
        for p, g in zip(self.params, grads):
            p.grad = g
        self.opt.step()

    def replica_state(self, k: int, K: int) -> list:
        """Replica k's moments (and the shared step count), one dict per parameter, shaped as
        in a one-replica model: runs resume in any group."""
        return [{key: v.view(K, -1)[k].clone() if v.dim() > 0 else v.clone()
                 for key, v in self.opt.state.get(p, {}).items()} for p in self.params]

    def load_replica_states(self, states: list) -> None:
        """The inverse of replica_state for a group: states[k] is replica k's."""
        for i, p in enumerate(self.params):
            if states[0][i]:
                self.opt.state[p] = {key: torch.stack([s[i][key] for s in states]).view_as(p).to(p.device)
                                     if v.dim() > 0 else v.clone() for key, v in states[0][i].items()}


def pattern_order(config: LeNetConfig, seed: int, n: int, pass_number: int) -> torch.Tensor:
    """The order of the n training patterns in a pass: one constant random permutation
    ("fixed", Appendix C) or a new one each pass ("reshuffle"). With distortions, a pass is
    n patterns drawn without replacement from the pool of 10 n (Sec. III-C)."""
    if config.distortions == "affine":
        return torch.randperm(POOL_FACTOR * n, generator=generator(seed, STREAM_POOL, pass_number))[:n]
    p = 0 if config.order == "fixed" else pass_number
    return torch.randperm(n, generator=generator(seed, STREAM_ORDER, p))


@torch.no_grad()
def _error_rates(model: LeNet5, labels: torch.Tensor, inputs) -> torch.Tensor:
    """Error rate (%) of each replica; inputs(a, b): the inputs (b - a, K, 32, 32) of patterns a..b."""
    K, wrong = model.replicas, torch.zeros(model.replicas)
    B = eval_batch(K)
    for s in range(0, len(labels), B):
        pred = model.predict(model(inputs(s, s + B)))  # (B, K)
        wrong += (pred != labels[s:s + B, None]).sum(0).cpu()
    return 100.0 * wrong / len(labels)


def evaluate(model: LeNet5, images: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Error rate (%) of each replica on coded images (N, 32, 32): a (K,) tensor."""
    return _error_rates(model, labels, lambda a, b: images[a:b].unsqueeze(1).expand(-1, model.replicas, -1, -1))


def evaluate_coded(model: LeNet5, coded: dict, labels: torch.Tensor, codings: list) -> torch.Tensor:
    """`evaluate` where replica k reads the images in its own input coding codings[k]:
    coded maps each coding to its images (N, 32, 32). One forward pass for all codings."""
    if len(coded) == 1:
        return evaluate(model, next(iter(coded.values())), labels)
    names = list(coded)
    stacked = torch.stack([coded[c] for c in names])  # (codings, N, 32, 32)
    which = torch.tensor([names.index(c) for c in codings], device=stacked.device)  # (K,)
    return _error_rates(model, labels, lambda a, b: stacked[:, a:b][which].transpose(0, 1))


def make_optimizer(configs, model: LeNet5):
    """The step rule of a group: Adam; per-pattern SGD; or SDLM, with the SGD replicas of a
    mixed group taking their constant step instead of eta / (mu + h) (see `sgd_steps`)."""
    config = configs[0]
    if config.optimizer == "adam":
        return AdamStep(model, config.step_size(1))
    if all(c.optimizer == "sgd" for c in configs):
        return PerPatternSGD(model)
    return SDLM(model, config.sdlm_mu)


def sgd_steps(configs, pass_number: int) -> dict:
    """{k: step} of the per-pattern SGD replicas of a group, for one pass."""
    return {k: c.step_size(pass_number) for k, c in enumerate(configs) if c.optimizer == "sgd"}


def lockstep_configs(config, seeds=None) -> list:
    """One config per replica: `config` (a LeNetConfig) for each seed, or a list of configs
    that share a lockstep key (each with its own seed)."""
    if isinstance(config, LeNetConfig):
        seeds = seeds if seeds is not None else [config.seed]
        return [config.replace(seed=int(s)) for s in seeds]
    configs = list(config)
    if seeds is not None:
        raise ValueError("give seeds inside each config of a mixed group, not as seeds=")
    if not configs:
        raise ValueError("a lockstep group needs at least one config")
    keys = {c.lockstep_key() for c in configs}
    if len(keys) > 1:
        raise ValueError("these configs cannot train in one lockstep group: they differ in more than "
                         "seed, init, input coding, distortions, order, squashing, C3 table, S2/S4 "
                         "average or sum, criterion or step rule (LeNetConfig.lockstep_key)")
    return configs


def compiled_pattern_step(model: LeNet5, loss_fn, j):
    """One per-pattern update (forward, loss, gradient, w -= eps g) as a single compiled function.

    The same arithmetic as the eager loop in `fit`, traced once by torch.compile into fused
    kernels: the per-operation overhead of eager PyTorch dominates one-pattern steps.
    """
    names = [name for name, _ in model.named_parameters()]

    def loss_of(params, x, y):
        out = torch.func.functional_call(model, dict(zip(names, params)), (x,))  # (1, K, 10)
        per_pattern = loss_fn(out, y, j)  # (1, K)
        return per_pattern.sum(), (out, per_pattern)

    def step(params, eps, x, y):
        grads, (out, per_pattern) = torch.func.grad(loss_of, has_aux=True)(params, x, y)
        torch._foreach_addcmul_(params, grads, eps, value=-1.0)
        return out, per_pattern

    torch._dynamo.reset()  # a new model: start from an empty cache, not a recompile of the last one
    return torch.compile(step, dynamic=False)


ENGINES = ("eager", "compiled")


def fit(config, data: MNIST, seeds=None, device="cpu", start=None,
        on_pass=None, on_progress=None, engine: str = "eager") -> list:
    """Train replicas in lockstep and return a ReplicaResult each.

    config: a LeNetConfig, trained once per seed (default: config.seed), or a list of configs,
    one per replica, that share LeNetConfig.lockstep_key (a group of mixed variants).
    start: optional resume point {"passes_done": n, "states": [...], "histories": [...],
    "optimizer_states": [...] (Adam only: AdamStep.replica_state of each replica)};
    on_pass(pass_number, results, model, optimizer) is called after every pass (checkpoints);
    on_progress(patterns_done, patterns_total) during a pass. engine "compiled" runs each
    per-pattern SDLM/SGD update as one torch.compile'd function (same math, other rounding;
    minibatch training always runs eagerly).
    """
    if engine not in ENGINES:
        raise ValueError(f"engine={engine!r} is not valid; choose one of {list(ENGINES)}")
    configs = lockstep_configs(config, seeds)
    config = configs[0]  # what the group shares: architecture, budget, schedule
    seeds = [c.seed for c in configs]
    K = len(configs)
    model = LeNet5(config, replicas=K, configs=configs).initialize(seeds, configs).to(device)
    results = [ReplicaResult(seed) for seed in seeds]
    first_pass = 1
    if start is not None:
        for k in range(K):
            model.load_replica_state(k, start["states"][k])
            results[k].history = list(start["histories"][k])
        first_pass = start["passes_done"] + 1

    n = config.train_size
    codings = [c.input_coding for c in configs]
    x_train = {c: encode(data.train_images[:n], c).to(device) for c in dict.fromkeys(codings)}  # (n, 32, 32) each
    x_test = {c: encode(data.test_images, c).to(device) for c in dict.fromkeys(codings)}
    pools = [None] * K
    if any(c.distortions == "affine" for c in configs):  # a pool per replica, its distortions fixed by its seed
        originals = ink(data.train_images[:n])
        pools = [DistortionPool(originals, generator(c.seed, STREAM_DISTORTIONS)) if c.distortions == "affine"
                 else None for c in configs]
    y_train = data.train_labels[:n].to(device)
    y_test = data.test_labels.to(device)
    loss_fn, j = replica_losses([c.loss for c in configs]), config.map_j
    params = list(model.parameters())
    optimizer = make_optimizer(configs, model)
    if start is not None and start.get("optimizer_states") is not None:
        optimizer.load_replica_states(start["optimizer_states"])
    sdlm = [c.optimizer == "sdlm" for c in configs]
    bs = config.batch_size
    compiled = None
    if engine == "compiled" and bs == 1 and config.optimizer in ("sdlm", "sgd"):
        compiled = compiled_pattern_step(model, loss_fn, j)
        detached = [p.detach() for p in params]  # same storage: updates land in the model
        # Fixed input buffers: the compiled step always sees the same shapes and strides.
        x_buf = torch.zeros(1, K, 32, 32, device=device)
        y_buf = torch.zeros(1, K, dtype=torch.long, device=device)
        # Compile now, on copies with zero steps, so that no pass pays for it.
        compiled([p.clone() for p in detached], [torch.zeros_like(p) for p in detached], x_buf, y_buf)

    def patterns(idx):
        """Replica k's patterns idx[k] (training-set or pool indices), coded: (B, K, 32, 32)."""
        xs = [x_train[c][i] if pool is None else code(pool.patterns(i), c).to(device)
              for c, pool, i in zip(codings, pools, idx)]
        return torch.stack(xs, 1)

    for pass_number in range(first_pass, config.epochs + 1):
        t0 = time.perf_counter()
        order = torch.stack([pattern_order(c, c.seed, n, pass_number) for c in configs]).to(device)  # (K, n)
        ranges = None
        if config.optimizer == "sgd" and not any(sdlm):  # each replica its own step (lr may differ)
            optimizer.set_steps(config.step_size(pass_number), sgd_steps(configs, pass_number))
        if any(sdlm):
            m = min(config.sdlm_samples, n)
            sample = torch.stack([
                torch.randperm(n, generator=generator(s, STREAM_HESSIAN, pass_number))[:m] for s in seeds
            ]).to(device)  # (K, m): each replica's own patterns
            h_patterns = torch.stack([x_train[c][i] for c, i in zip(codings, sample)], 1)  # (m, K, 32, 32)
            eta = configs[sdlm.index(True)].step_size(pass_number)  # SDLM's eta (an SGD config's step is eta/mu)
            optimizer.estimate(h_patterns, config, eta, sgd_steps(configs, pass_number))
            ranges = optimizer.step_ranges()
        hessian_time = time.perf_counter() - t0
        wrong = torch.zeros(K, dtype=torch.float64)
        loss_sum = torch.zeros(K, dtype=torch.float64)
        for s in range(0, n, CHUNK):
            idx = order[:, s:s + CHUNK]  # (K, B)
            xs = patterns(idx)  # (B, K, 32, 32)
            ys = y_train[idx % n].t().contiguous()  # (B, K): a distorted copy has its original's label
            outs, losses = [], []
            for b in range(0, xs.shape[0], bs):
                if compiled is not None:
                    x_buf.copy_(xs[b:b + 1])
                    y_buf.copy_(ys[b:b + 1])
                    out, per_pattern = compiled(detached, optimizer.eps, x_buf, y_buf)
                    outs.append(out)
                    losses.append(per_pattern)
                    continue
                out = model(xs[b:b + bs])  # (bs, K, 10)
                per_pattern = loss_fn(out, ys[b:b + bs], j)  # (bs, K)
                grads = torch.autograd.grad(per_pattern.mean(0).sum(), params)
                optimizer.step(grads)
                outs.append(out.detach())
                losses.append(per_pattern.detach())
            wrong += (model.predict(torch.cat(outs)) != ys).sum(0).cpu()
            loss_sum += torch.cat(losses).sum(0).double().cpu()
            for k in range(K):
                if results[k].failed is None and not math.isfinite(loss_sum[k]):
                    results[k].failed = f"non-finite loss in pass {pass_number}"
            if on_progress is not None:
                on_progress(s + xs.shape[0], n)
            if all(r.failed for r in results):
                break
        train_time = time.perf_counter() - t0
        test_error = evaluate_coded(model, x_test, y_test, codings)
        wall = time.perf_counter() - t0
        for k, r in enumerate(results):
            record = {
                "pass": pass_number, "eta": configs[k].step_size(pass_number),
                "train_error": 100.0 * float(wrong[k]) / n,  # on the fly, as in Fig. 5
                "train_loss": float(loss_sum[k]) / n,
                "test_error": float(test_error[k]),
                "wall_time_s": wall, "train_time_s": train_time, "hessian_time_s": hessian_time,
            }
            if ranges is not None and sdlm[k]:
                for layer, per_replica in ranges.items():
                    record[f"eps_min_{layer}"], record[f"eps_max_{layer}"] = per_replica[k]
            r.history.append(record)
        if pass_number == config.epochs:
            train_error = evaluate_coded(model, x_train, y_train, codings)
            for k, r in enumerate(results):
                r.history[-1]["train_error_final"] = float(train_error[k])
        for k, r in enumerate(results):
            r.state = model.replica_state(k)
        if on_pass is not None:
            on_pass(pass_number, results, model, optimizer)
        if all(r.failed for r in results):
            break
    return results
