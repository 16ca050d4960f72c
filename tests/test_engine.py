"""The lockstep engine against the reference trainer: every run of a group, mixed variants
included, follows its config trained alone by lenet1998/reference.py.

Per-pattern training at the paper's first steps is chaotic: two float32 runs that differ by
one rounding (1e-7) drift apart by ~2x per pattern (about 0.1 after a pass of 300). So the
equivalence runs in float64 and at a small global step (eta = 2e-5, SDLM's eps <= 1e-3):
differences then stay at rounding level (~1e-15) for hundreds of patterns, and any real
difference (order, sample, step, criterion, squashing, table, coding, pool) shows at once.
The paper's own steps are checked one pattern at a time, from the same weights.

New registry entries and new variants are covered without editing this file: the cases are
built from lenet1998.config.REGISTRIES and experiments.variants.VARIANTS.
"""

from __future__ import annotations

import pytest
import torch

from experiments.variants import VARIANTS
from lenet1998 import engine
from lenet1998.config import REGISTRIES, ConfigError, LeNetConfig
from lenet1998.data import MNIST
from lenet1998.loss import LOSSES
from lenet1998.model import LeNet5
from lenet1998.reference import train as train_reference
from lenet1998.engine.kernel import available as kernel_available
from lenet1998.train import fit

PATTERNS, TOLERANCE = 300, 1e-10  # per run, float64; the measured differences are ~1e-15


def budget(config: LeNetConfig, **changes) -> LeNetConfig:
    return config.replace(epochs=1, train_size=PATTERNS, sdlm_samples=30, eta_schedule=((1, 2e-5),), **changes)


def registry_cases():
    """One config per registry entry: the paper with that one field changed (and the field it
    must move with, where the paper's value is invalid with it)."""
    cases = {}
    for field, registry in REGISTRIES.items():
        for name in registry:
            for extra in ({}, {"loss": "cross_entropy"}, {"loss": "mle"}, {"output": "linear"}, {"batch_size": 10},
                          {"output": "targets", "loss": "mle"}):
                try:
                    cases[f"{field}={name}"] = LeNetConfig().replace(**{field: name, **extra})
                    break
                except ConfigError:
                    continue
            else:
                raise AssertionError(f"no valid config with {field}={name}")
    return cases


def distinct(cases):
    """One case per config under the test's budget: a road step equal to another variant, or an
    open question the budget erases (sdlm_samples), trains once."""
    seen, out = set(), {}
    for name, config in cases.items():
        if budget(config) not in seen:
            seen.add(budget(config))
            out[name] = config
    return out


CASES = distinct({**{f"variant {n}": v.config for n, v in VARIANTS.items()}, **registry_cases()})


@pytest.fixture(scope="module")
def small_mnist(mnist):
    """The first 400 training and 200 test digits (evaluation is not what is tested here)."""
    return MNIST(mnist.train_images[:400], mnist.train_labels[:400], mnist.test_images[:200], mnist.test_labels[:200])


@pytest.fixture
def float64():
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(torch.float32)


def groups_of(configs):
    """The per-pattern configs by lockstep key (mixed groups, as `ablate` builds them)."""
    groups = {}
    for i, c in enumerate(configs):
        if engine.handles(c):
            groups.setdefault(engine.lockstep_key(c), []).append(i)
    return list(groups.values())


def untimed(history):
    return [{k: v for k, v in r.items() if not k.endswith("time_s")} for r in history]


def test_every_case_trains_in_a_group_as_it_does_alone(small_mnist, float64):
    names = list(CASES)
    configs = [budget(CASES[n], seed=i % 3) for i, n in enumerate(names)]
    alone = {n: train_reference(c, small_mnist) for n, c in zip(names, configs)}
    groups = groups_of(configs)
    assert len(groups) >= 3  # the paper's shapes, the pooled shapes, the linear output
    for group in groups:
        results = fit([configs[i] for i in group], small_mnist, engine="eager")
        for i, r in zip(group, results):
            ref = alone[names[i]]
            assert r.engine == ("eager" if configs[i].network == "lenet5" else "vmap")  # networks.py: the vmap group
            for p in ref.state:
                torch.testing.assert_close(r.state[p], ref.state[p], rtol=0, atol=TOLERANCE, msg=f"{names[i]}: {p}")
            for got, want in zip(untimed(r.history), untimed(ref.history), strict=True):
                assert got == pytest.approx(want, rel=1e-9), names[i]


@pytest.mark.parametrize("path", ["compiled", "kernel"])
def test_each_fast_path_follows_the_eager_group(small_mnist, path):
    """The compiled and kernel paths on a mixed group of the paper's shapes (float32, short)."""
    if path == "kernel":
        ok, why = engine.kernel_fits([LeNetConfig()])
        if not ok:
            pytest.skip(f"no kernel here: {why}")
    base = LeNetConfig(epochs=1, train_size=60, sdlm_samples=20, eta_schedule=((1, 2e-5),))
    configs = [base, base.replace(seed=1, squashing="tanh", loss="mle"), base.replace(seed=2, c3_table="full", optimizer="sgd"),
               base.replace(seed=3, subsampling="trainable_sum", input_coding="unit"), base.replace(seed=4, squashing="relu")]
    eager = fit(configs, small_mnist, engine="eager")
    fast = fit(configs, small_mnist, engine=path)
    for e, f in zip(eager, fast):
        assert f.engine == path
        for p in e.state:
            torch.testing.assert_close(f.state[p], e.state[p], rtol=0, atol=1e-4, msg=p)


def test_the_papers_steps_agree_pattern_by_pattern(small_mnist, float64):
    """At the paper's eta (pass 1: 5e-4): from the same weights, one step of the group equals one
    step of each network alone, along 30 patterns of a real trajectory."""
    from lenet1998.engine.replicas import TorchGroup, stack
    from lenet1998.patterns import TrainingPatterns
    from lenet1998.sdlm import STEP_RULES

    configs = [LeNetConfig(train_size=PATTERNS, sdlm_samples=30), LeNetConfig(train_size=PATTERNS, sdlm_samples=30, seed=1, loss="mle", c3_table="full")]
    nets = [LeNet5(c).initialize() for c in configs]
    rules = [STEP_RULES[c.optimizer](net, c) for net, c in zip(nets, configs)]
    sets = [TrainingPatterns(c, small_mnist) for c in configs]
    for rule, ts in zip(rules, sets):
        rule.begin_pass(1, ts.hessian_sample(1).unsqueeze(1))
    group = TorchGroup(configs, compiled=False)
    group.set_steps({n: torch.stack([r.eps[i] for r in rules]) for i, n in enumerate(stack(nets))})
    orders = [ts.order(1) for ts in sets]
    for t in range(30):
        group.load(stack(nets))
        x = torch.stack([ts.patterns(o[t:t + 1])[0] for ts, o in zip(sets, orders)])
        y = torch.stack([ts.targets(o[t:t + 1])[0] for ts, o in zip(sets, orders)])
        out, loss = group.step(x, y)
        for k, (net, rule, c) in enumerate(zip(nets, rules, configs)):
            ref_out = net(x[k][None, None])
            ref_loss = LOSSES[c.loss](ref_out, y[k:k + 1], c.map_j)
            torch.testing.assert_close(out[k], ref_out[0].detach(), rtol=1e-12, atol=1e-9)
            rule.step(torch.autograd.grad(ref_loss.sum(), list(net.parameters())))
            torch.testing.assert_close(loss[k].item(), ref_loss.item(), rtol=1e-12, atol=1e-9)
        after = group.export()
        for name, p in stack(nets).items():
            torch.testing.assert_close(after[name], p, rtol=0, atol=1e-12, msg=name)


def test_groups_refuse_configs_that_cannot_share_a_step(small_mnist):
    with pytest.raises(ValueError, match="lockstep"):
        fit([LeNetConfig(), LeNetConfig(subsampling="max_pool")], small_mnist)
    with pytest.raises(ValueError, match="auto"):
        fit(LeNetConfig(), small_mnist, engine="turbo")


def test_a_group_holds_k_copies_of_the_papers_tensors():
    from lenet1998.engine.replicas import GroupNet

    net = GroupNet([LeNetConfig(seed=s) for s in range(3)])
    assert net.layers["C1"].weight.shape == (18, 1, 5, 5)
    assert net.layers["F6"].weight.shape == (3, 84, 120)
    assert sum(p.numel() for p in net.parameters()) == 3 * sum(p.numel() for p in LeNet5(LeNetConfig()).parameters())


def test_minibatch_seeds_in_lockstep_follow_the_reference_trainer(small_mnist, float64):
    """Adam runs of one config, stacked in one process (lenet1998/engine/minibatch.py), equal each
    seed trained alone by the reference trainer (float64, a few hundred patterns, two passes)."""
    from lenet1998.engine import minibatch

    base = LeNetConfig(epochs=2, train_size=PATTERNS, **VARIANTS["modern"].changes)
    configs = [base.replace(seed=s) for s in range(3)]
    assert minibatch.handles(configs) and not minibatch.handles(configs[:1])
    assert not minibatch.handles([configs[0], configs[1].replace(lr=1e-2)])  # the optimizer differs
    assert minibatch.path(configs) == "vmap"  # float64: the kernel is float32
    after_pass1 = {}

    def keep(pass_number, results, rule_states):
        if pass_number == 1:
            after_pass1.update({r.seed: (dict(r.state), list(r.history), state) for r, state in zip(results, rule_states)})

    together = fit(configs, small_mnist, on_pass=keep)
    from lenet1998.record import ResumePoint

    state, history, rule_state = after_pass1[1]  # seed 1 stopped after pass 1, resumed alone
    resumed = train_reference(configs[1], small_mnist, start=ResumePoint(1, state, history, rule_state))
    for p in resumed.state:
        torch.testing.assert_close(resumed.state[p], together[1].state[p], rtol=0, atol=1e-9, msg=p)
    for c, r in zip(configs, together):
        alone = train_reference(c, small_mnist)
        assert r.engine == "minibatch-vmap"
        for p in alone.state:
            torch.testing.assert_close(r.state[p], alone.state[p], rtol=0, atol=1e-9, msg=p)
        for got, want in zip(untimed(r.history), untimed(alone.history), strict=True):
            assert got == pytest.approx(want, rel=1e-9)


@pytest.mark.skipif(not kernel_available(), reason="the C kernel does not build here")
def test_minibatch_on_the_kernel_follows_the_reference_trainer(small_mnist):
    """Adam runs whose gradients the C kernel sums (float32), among them replicas of another
    network and another data set than the first (which the vmap path cannot stack), follow each
    run trained alone by the reference trainer: two passes of 300 patterns, minibatches of 64."""
    from lenet1998.engine import minibatch

    modern = LeNetConfig(epochs=2, train_size=PATTERNS, **VARIANTS["modern"].changes)
    configs = [modern.replace(seed=0), modern.replace(seed=1), modern.replace(seed=2, distortions="affine"),
               modern.replace(seed=3, squashing="tanh", c3_table="paper")]
    assert minibatch.path(configs) == "kernel" and minibatch.path(configs, engine="eager") == ""
    assert minibatch.path(configs[:3], engine="eager") == "vmap"
    together = fit(configs, small_mnist)
    for c, r in zip(configs, together):
        alone = train_reference(c, small_mnist)
        assert r.engine == "minibatch-kernel"
        for p in alone.state:
            diff = (r.state[p] - alone.state[p]).abs()
            if c.squashing == "relu":  # measured: at most 5e-6 (F6), mean 2e-9
                assert diff.max() <= 1e-5, f"seed {c.seed} {p}: {diff.max():.3g}"
            else:  # the kernel's float tanh (a few ulp) moves max-pooling winners now and then (as in
                # tests/test_kernel.py): measured at most 9e-5, a tenth of one Adam step (lr 1e-3), mean 7e-7
                assert diff.max() <= 2e-4 and diff.mean() <= 2e-6, f"seed {c.seed} {p}: {diff.max():.3g}"
        for got, want in zip(untimed(r.history), untimed(alone.history), strict=True):
            assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-4)
            assert got["test_error"] == want["test_error"]


@pytest.mark.parametrize("network, path", [("linear", "dense"), ("fc300_100", "dense"), ("lenet1", "convnet"),
                                           ("lenet4", "convnet")])
def test_the_other_networks_kernels_follow_the_vmap_group(small_mnist, network, path):
    """The other networks of Fig. 9 on their C kernels (lenet1998/engine/dense.py: float32, one
    replica at a time, the first layer's update fused with the next forward; engine/convnet.py)
    follow the vmap group over two passes of a mixed group (float32, so within rounding: 1e-4)."""
    from lenet1998.engine import convnet, dense

    kernel = {"dense": dense, "convnet": convnet}[path]
    if not kernel.available():
        pytest.skip(f"no {path} kernel here: {kernel.reason()}")
    base = LeNetConfig(network=network, output="targets", loss="mle", epochs=2, train_size=PATTERNS,
                       sdlm_samples=30, eta_schedule=((1, 2e-4),))
    configs = [base.replace(seed=0), base.replace(seed=1, distortions="affine"), base.replace(seed=2, init="pytorch")]
    vmap = fit(configs, small_mnist, engine="eager")
    fast = fit(configs, small_mnist, engine="kernel")
    for v, f in zip(vmap, fast):
        assert (v.engine, f.engine) == ("vmap", path)
        for p in v.state:
            torch.testing.assert_close(f.state[p], v.state[p], rtol=0, atol=1e-4, msg=p)
        for got, want in zip(untimed(f.history), untimed(v.history), strict=True):
            assert got["test_error"] == want["test_error"]
            assert got["train_loss"] == pytest.approx(want["train_loss"], rel=1e-4)


def test_another_network_trains_in_a_vmap_group_as_it_does_alone(small_mnist, float64):
    """A fully connected net of Fig. 9 (lenet1998/networks.py), per-pattern SDLM: each replica
    of a vmap group (lenet1998/engine/vmap.py) equals its run trained alone by the reference."""
    base = LeNetConfig(network="fc300", output="targets", loss="mle", epochs=2, train_size=PATTERNS,
                       sdlm_samples=30, eta_schedule=((1, 2e-4),))
    configs = [base.replace(seed=0), base.replace(seed=1, distortions="affine"), base.replace(seed=2, init="pytorch")]
    assert len({engine.lockstep_key(c) for c in configs}) == 1
    assert engine.lockstep_key(base.replace(squashing="tanh")) != engine.lockstep_key(base)  # one module per group
    together = fit(configs, small_mnist)
    for c, r in zip(configs, together):
        alone = train_reference(c, small_mnist)
        assert r.engine == "vmap"
        for p in alone.state:
            torch.testing.assert_close(r.state[p], alone.state[p], rtol=0, atol=TOLERANCE, msg=p)
        for got, want in zip(untimed(r.history), untimed(alone.history), strict=True):
            assert got == pytest.approx(want, rel=1e-9)
