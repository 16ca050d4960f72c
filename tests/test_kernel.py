"""The compiled C kernel (lenet1998/engine/kernel.py) against the torch eager per-pattern step.

A lockstep group of mixed variants (squashing, C3 table, S2/S4 reading, criterion, seed) is
trained by the torch model (forward, replica_losses, torch.autograd.grad, w -= eps g) and by the
kernel, from the same parameters and SDLM steps, on real MNIST patterns in each replica's
coding. GROUPS holds one such group per S2/S4 kind and output the kernel covers (the paper's
trainable S2/S4 with the RBF output, avg_pool, max_pool, linear_softmax, and modern+sdlm).
Skipped where no C compiler can build the kernel.
"""

import itertools

import pytest
import torch

from experiments.variants import VARIANTS as GRID_VARIANTS
from lenet1998.config import LeNetConfig
from lenet1998.data import encode
from lenet1998.engine.replicas import TorchGroup, stack, stacked_name
from lenet1998.loss import LOSSES
from lenet1998.model import LeNet5
from lenet1998.sdlm import SDLM
from lenet1998.engine import kernel

pytestmark = pytest.mark.skipif(not kernel.available(), reason=f"kernel unavailable: {kernel.reason()}")

# One variant per replica, cycling through every choice the kernel covers.
VARIANTS = [
    {},
    {"squashing": "tanh", "c3_table": "full"},
    {"squashing": "relu", "subsampling": "trainable_sum", "loss": "mle"},
    {"c3_table": "full", "subsampling": "trainable_sum"},
    {"squashing": "tanh", "loss": "mle"},
    {"squashing": "relu", "c3_table": "full"},
]

# One step: the kernel's arithmetic rounds differently (summation order, a float tanh of a
# few ulp, fused multiply-adds); measured differences are ~1e-7 relative.
STEP_RTOL = 1e-5
# After 300 steps the rounding differences have been carried through 300 updates. At eta 5e-5
# (the schedule's later steps, as tests/test_mixed_groups.py) they stay at rounding level: the
# largest difference measured is ~1e-6, and torch float32 itself is that far from float64. At
# eta 5e-4 some replicas amplify rounding chaotically (torch float32 and float64 then differ by
# 0.5 after 300 patterns, and so do kernel and torch): no tolerance can be stated there.
RUN_ETA, RUN_ATOL = 5e-5, 1e-5
# Max pooling adds a discontinuity: where the two largest values of a 2x2 window differ by a
# few ulp, the kernel's rounding and torch's can pick different winners, and that step's
# gradient goes to another input (measured: replica 3 of the max_pool group at step 40, an S4
# window whose two largest values differ by 4e-7 relative in float32 and 1e-7 in float64, so
# torch float32 itself is on the wrong side of float64). Exact ties (the flat background, relu
# zeros) fall the same way in both (test_max_pool_ties_...). After 300 steps such a replica is
# off by about one misrouted update; the others must still meet RUN_ATOL.
FLIP_ATOL, FLIP_REPLICAS = 1e-4, 2


# The groups whose replicas share a parameter-free S2/S4 (avg_pool, max_pool: no coefficient, no
# squashing after it) or a linear output with cross-entropy; each replica varies what its group may.
POOLED_VARIANTS = [
    {},
    {"squashing": "tanh", "c3_table": "full"},
    {"squashing": "relu", "loss": "mle"},
    {"c3_table": "full", "loss": "mle"},
    {"squashing": "relu", "c3_table": "full"},
    {"squashing": "tanh", "loss": "mle"},
]
LINEAR_VARIANTS = [
    {},
    {"squashing": "tanh", "c3_table": "full"},
    {"squashing": "relu", "subsampling": "trainable_sum"},
    {"c3_table": "full", "subsampling": "trainable_sum"},
    {"squashing": "relu", "c3_table": "full"},
    {"squashing": "tanh"},
]
# modern+sdlm (max_pool, full C3, relu, linear + cross_entropy, pytorch init, unit input, SDLM)
# itself, and beside it the per-run fields a lockstep group of it may vary.
MODERN_VARIANTS = [
    {},
    {"squashing": "scaled_tanh"},
    {"c3_table": "paper", "optimizer": "sgd"},
    {"squashing": "tanh", "input_coding": "paper"},
    {"init": "paper_sqrt"},
    {},
]


def configs_of(base, variants, K):
    return [base.replace(seed=100 + k, **v) for k, v in zip(range(K), itertools.cycle(variants))]


def mixed_configs(K):
    return configs_of(LeNetConfig(), VARIANTS, K)


GROUPS = {
    "paper": mixed_configs,
    "avg_pool": lambda K: configs_of(LeNetConfig(subsampling="avg_pool"), POOLED_VARIANTS, K),
    "max_pool": lambda K: configs_of(LeNetConfig(subsampling="max_pool"), POOLED_VARIANTS, K),
    "linear_softmax": lambda K: configs_of(LeNetConfig(output="linear", loss="cross_entropy"), LINEAR_VARIANTS, K),
    "modern+sdlm": lambda K: configs_of(GRID_VARIANTS["modern+sdlm"].config, MODERN_VARIANTS, K),
}


def patterns(mnist, K, n, offset=0, configs=None):
    """Replica k's n patterns (n, K, 32, 32): its own slice of the training set, in its config's
    input coding (default the paper's), and labels (n, K)."""
    idx = torch.arange(n * K).view(n, K) * 7 % 6000 + offset
    codings = [c.input_coding for c in configs] if configs else ["paper"] * K
    x = torch.stack([encode(mnist.train_images[idx[:, k]], coding) for k, coding in enumerate(codings)], 1)
    return x, mnist.train_labels[idx].long()


def groups(configs, mnist, eta=5e-4, width=None):
    """The reference networks, a torch eager group and a kernel group with the same weights and
    SDLM's eps = eta / (mu + h) estimated on 100 patterns per replica (nonzero on masked C3
    entries too: the kernel must keep those weights at zero by itself)."""
    K = len(configs)
    nets = [LeNet5(c).initialize() for c in configs]
    x, _ = patterns(mnist, K, 100, offset=3, configs=configs)
    rules = [SDLM(net, c.replace(optimizer="sdlm", eta_schedule=((1, eta),))) for net, c in zip(nets, configs)]
    for k, rule in enumerate(rules):
        rule.begin_pass(1, x[:, k:k + 1])
    params = stack(nets)
    eps = {name: torch.stack([r.eps[i] for r in rules]) for i, name in enumerate(params)}
    reference = TorchGroup(configs, compiled=False)
    fast = kernel.for_configs(configs, width=width)
    for g in (reference, fast):
        g.load(params)
        g.set_steps(eps)
    return nets, reference, fast


def assert_rel_close(got, ref, rtol, what):
    scale = ref.abs().max().clamp_min(1e-30)
    diff = (got - ref).abs().max()
    assert diff <= rtol * scale, f"{what}: max |diff| {diff:.3g} > {rtol} x max |ref| {scale:.3g}"


@pytest.mark.parametrize("K", [3, 13])  # one partial block; a full block and a partial one
@pytest.mark.parametrize("kind", list(GROUPS))
def test_one_step_matches_the_torch_eager_step(mnist, kind, K):
    configs = GROUPS[kind](K)
    _, reference, group = groups(configs, mnist)
    assert group.names == list(reference.export())  # the same parameters, no more, no fewer
    before = reference.export()
    x, y = patterns(mnist, K, 1, configs=configs)
    out, loss = reference.step(x[0], y[0])
    pen, kloss = group.step(x[0], y[0])
    assert_rel_close(pen, out, STEP_RTOL, "penalties")
    for k in range(K):
        assert kloss[k] == pytest.approx(float(loss[k]), rel=STEP_RTOL), k
    ref, got = reference.export(), group.export()
    for name in ref:
        for k in range(K):
            assert_rel_close(got[name][k], ref[name][k], STEP_RTOL, f"{name} replica {k}")
            # The update itself, not just the weights, agrees (it is ~1e-3 of the weights).
            delta_ref, delta_got = ref[name][k] - before[name][k], got[name][k] - before[name][k]
            assert delta_ref.abs().max() > 0, f"{name} replica {k}: no update to compare"
            assert_rel_close(delta_got, delta_ref, 2e-3, f"update of {name} replica {k}")


@pytest.mark.parametrize("width", kernel.WIDTHS)
@pytest.mark.parametrize("K", [3, 13, 16, 17, 33])  # partial, full and several blocks at either width
def test_one_step_at_every_lane_width(mnist, width, K):
    """The kernel built with blocks of 8 lanes (256-bit) and of 16 (512-bit) steps alike."""
    configs = GROUPS[next(iter(GROUPS))](K)
    _, reference, group = groups(configs, mnist, width=width)
    assert group.width == width and group._lib.lk_kp() == width
    x, y = patterns(mnist, K, 1, configs=configs)
    out, loss = reference.step(x[0], y[0])
    pen, kloss = group.step(x[0], y[0])
    assert_rel_close(pen, out, STEP_RTOL, "penalties")
    ref, got = reference.export(), group.export()
    for name in ref:
        assert_rel_close(got[name], ref[name], STEP_RTOL, name)


def test_the_lane_width_is_measured_once_and_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("LENET1998_CACHE", str(tmp_path))
    monkeypatch.delenv("LENET1998_KERNEL_WIDTH", raising=False)
    monkeypatch.setattr(kernel, "_measured", None)
    calls = []
    monkeypatch.setattr(kernel, "measure_widths", lambda: calls.append(1) or {8: 1000.0, 16: 1500.0})
    assert kernel.lane_width() == 16 and calls == [1]
    monkeypatch.setattr(kernel, "_measured", None)  # a new process: the cache answers, no measurement
    assert kernel.lane_width() == 16 and calls == [1]
    assert len(list(tmp_path.glob("lenet1998_kernel_width_*.json"))) == 1
    monkeypatch.setenv("LENET1998_KERNEL_WIDTH", "8")
    assert kernel.lane_width() == 8 and kernel.width_for(16) == 8
    monkeypatch.setenv("LENET1998_KERNEL_WIDTH", "12")
    with pytest.raises(ValueError, match="LENET1998_KERNEL_WIDTH"):
        kernel.lane_width()


def test_each_group_takes_the_width_that_steps_its_replicas_fastest(monkeypatch):
    """Seconds per step = blocks x lanes / updates per second: a near tie at full blocks (Zen 4
    runs 512-bit operations on 256-bit units) leaves a group of 3 in one 8-lane block."""
    monkeypatch.delenv("LENET1998_KERNEL_WIDTH", raising=False)
    monkeypatch.setattr(kernel, "_measured", {8: 27_655.0, 16: 28_406.0})  # measured on an AVX-512 EPYC
    assert kernel.lane_width() == 16
    assert [kernel.width_for(K) for K in (1, 3, 8, 9, 16, 17, 24, 32, 33)] == [8, 8, 8, 16, 16, 8, 8, 16, 8]
    monkeypatch.setattr(kernel, "_measured", {8: 20_000.0, 16: 45_000.0})  # two 512-bit FMA units
    assert [kernel.width_for(K) for K in (3, 9, 17)] == [16, 16, 16]
    monkeypatch.setattr(kernel, "_measured", {8: 20_000.0})  # no 16-lane build here
    assert kernel.width_for(16) == 8


def test_the_measurement_times_every_width_that_builds():
    speeds = kernel.measure_widths(replicas=4, steps=5)
    assert set(speeds) == set(kernel.WIDTHS) and all(v > 0 for v in speeds.values())


@pytest.mark.parametrize("kind", list(GROUPS))
def test_300_patterns_follow_the_torch_eager_loop(mnist, kind):
    K, n = 13, 300
    configs = GROUPS[kind](K)
    _, reference, stepped = groups(configs, mnist, eta=RUN_ETA)
    chunked = kernel.for_configs(configs)
    chunked.load(reference.export())
    chunked.set_steps(stepped.export_steps())
    x, y = patterns(mnist, K, n, configs=configs)
    ref_pen, ref_loss, pen, loss = [], [], [], []
    for t in range(n):
        o, l = reference.step(x[t], y[t])
        ref_pen.append(o)
        ref_loss.append(l)
        p, l = stepped.step(x[t], y[t])
        pen.append(p)
        loss.append(l)
    chunk_pen, chunk_loss = chunked.steps(x, y)
    # steps() runs the same arithmetic as step() in another order of blocks: bit for bit equal.
    assert torch.equal(chunk_pen, torch.stack(pen)) and torch.equal(chunk_loss, torch.stack(loss))
    ref, got = reference.export(), stepped.export()
    for name in got:
        assert torch.equal(chunked.export()[name], got[name]), name
        diff = (got[name] - ref[name]).abs().amax(dim=tuple(range(1, ref[name].dim())))  # per replica
        if configs[0].subsampling == "max_pool":
            assert (diff <= FLIP_ATOL).all() and (diff > RUN_ATOL).sum() <= FLIP_REPLICAS, \
                f"{name}: per-replica max |diff| {diff.tolist()}"
        else:
            assert (diff <= RUN_ATOL).all(), f"{name}: per-replica max |diff| {diff.tolist()}"
    # The losses on the fly agree as well (the same patterns classified the same way).
    torch.testing.assert_close(torch.stack(loss), torch.stack(ref_loss), rtol=1e-3, atol=1e-3)
    predict = LeNet5(configs[0]).predict  # smallest penalty, or largest logit
    assert (predict(torch.stack(pen)) != predict(torch.stack(ref_pen))).float().mean() < 0.01


def test_masked_c3_weights_stay_exactly_zero(mnist):
    K = 6
    configs = mixed_configs(K)
    _, _, group = groups(configs, mnist, eta=5e-3)
    x, y = patterns(mnist, K, 50)
    group.steps(x, y)
    w = group.export()["C3.weight"]  # (K, 16, 6, 5, 5)
    mask = group.c3_masks.view(K, 16, 6, 1, 1).expand_as(w)
    assert (w[mask == 0] == 0).all()
    assert (w[mask == 0]).numel() == 36 * 25 * sum(c.c3_table == "paper" for c in configs)
    steps = group.export_steps()["C3.weight"]
    assert (steps[mask == 0] > 0).all()  # SDLM steps on absent connections are not zero
    assert (w[mask == 1] != 0).all()


@pytest.mark.parametrize("kind", list(GROUPS))
def test_forward_matches_the_reference_networks_and_zero_steps_change_nothing(mnist, kind):
    K = 5
    configs = GROUPS[kind](K)
    nets, reference, group = groups(configs, mnist)
    params = reference.export()
    assert list(group.export()) == list(params)
    for name, p in group.export().items():
        assert torch.equal(p, params[name]), name
    x, _ = patterns(mnist, K, 7, configs=configs)
    with torch.no_grad():
        ref = torch.stack([net(x[:, k:k + 1]) for k, net in enumerate(nets)], 1)  # (7, K, 10)
    assert_rel_close(group.forward(x), ref, STEP_RTOL, "forward")
    assert_rel_close(group.forward(x[2]), ref[2], STEP_RTOL, "forward of one pattern")
    group.set_steps({name: torch.zeros_like(p) for name, p in params.items()})
    group.step(x[0], torch.zeros(K, dtype=torch.long))
    for name, p in group.export().items():
        assert torch.equal(p, params[name]), name


def test_unavailable_without_a_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("LENET1998_CACHE", str(tmp_path))
    monkeypatch.setattr(kernel, "_compiler", lambda: None)
    monkeypatch.setattr(kernel, "_libs", {})
    monkeypatch.setattr(kernel, "_failure", None)
    assert kernel.available() is False
    assert "no C compiler" in kernel.reason()
    with pytest.raises(RuntimeError, match="not available"):
        kernel.KernelGroup(1, ["tanh"], torch.ones(1, 16, 6), [0.25], [1.0], 10.0, torch.zeros(10, 84))


@pytest.mark.parametrize("layer", ["C1", "C3"])
def test_max_pool_ties_go_to_the_first_maximum_as_in_pytorch(mnist, layer):
    """Zero weights and a positive bias make every map of `layer` constant, so every 2x2 window of
    the max pooling after it (S2 or S4) is a four-way tie (with relu too: the tied values are
    positive). F.max_pool2d routes the gradient to the first maximum in row-major order; the
    layer's weight gradient then reads its inputs at those positions, so another rule shows."""
    K = 6
    configs = GROUPS["max_pool"](K)
    nets = [LeNet5(c).initialize() for c in configs]
    for net in nets:
        net.layers[layer].weight.data.zero_()
        net.layers[layer].bias.data.abs_().add_(0.1)
    params = stack(nets)
    eps = {name: torch.full_like(p, 1e-3) for name, p in params.items()}
    reference, group = TorchGroup(configs, compiled=False), kernel.for_configs(configs)
    for g in (reference, group):
        g.load(params)
        g.set_steps(eps)
    x, y = patterns(mnist, K, 1, configs=configs)
    reference.step(x[0], y[0])
    group.step(x[0], y[0])
    ref, got = reference.export(), group.export()
    name = f"{layer}.weight"
    for k in range(K):
        delta_ref, delta_got = ref[name][k] - params[name][k], got[name][k] - params[name][k]
        assert delta_ref.abs().max() > 0, f"{name} replica {k}: no update to compare"
        assert_rel_close(delta_got, delta_ref, 2e-3, f"update of {name} replica {k}")


@pytest.mark.parametrize("kind", ["avg_pool", "max_pool", "linear_softmax", "modern+sdlm"])
def test_fit_on_the_kernel_follows_fit_on_the_eager_group(mnist, kind):
    """Through the engine (h_kk and eps outside the kernel, load, steps, export, the error rates
    from the kernel's forward: penalties or logits): one short pass of a mixed group."""
    from lenet1998.data import MNIST
    from lenet1998.train import fit

    small = MNIST(mnist.train_images[:400], mnist.train_labels[:400], mnist.test_images[:200], mnist.test_labels[:200])
    configs = [c.replace(epochs=1, train_size=60, sdlm_samples=20, eta_schedule=((1, 2e-5),)) for c in GROUPS[kind](5)]
    eager, fast = fit(configs, small, engine="eager"), fit(configs, small, engine="kernel")
    for e, f in zip(eager, fast):
        assert f.engine == "kernel"
        for p in e.state:
            torch.testing.assert_close(f.state[p], e.state[p], rtol=0, atol=1e-4, msg=p)
        assert f.history[-1]["test_error"] == pytest.approx(e.history[-1]["test_error"], abs=0.5)


def test_fit_takes_the_kernel_where_it_applies_and_says_why_not_elsewhere(mnist):
    from lenet1998.train import fit

    config = LeNetConfig(epochs=1, train_size=20, sdlm_samples=10)
    assert fit(config, mnist, engine="auto")[0].engine == "kernel"
    linear = config.replace(output="linear", loss="cross_entropy", subsampling="max_pool")
    assert fit(linear, mnist, engine="auto")[0].engine == "kernel"
    assert "CPU" in kernel.unsupported([config], device="cuda")
    assert "share" in kernel.unsupported([config, config.replace(subsampling="avg_pool")])
    assert kernel.unsupported([config, config.replace(subsampling="trainable_sum")]) == ""
    adam = config.replace(optimizer="adam", batch_size=64)
    assert "per-pattern" in kernel.unsupported([adam])


def test_the_build_is_cached_per_source_and_flags(monkeypatch, tmp_path):
    monkeypatch.setenv("LENET1998_CACHE", str(tmp_path))
    first = kernel._build()
    assert first.parent == tmp_path and first.is_file()
    assert kernel._build() == first  # no second build
    assert [p.name for p in tmp_path.iterdir()] == [first.name]  # no temporary files left


def test_bad_shapes_and_labels_are_refused():
    group = kernel.KernelGroup(2, ["tanh", "relu"], torch.ones(2, 16, 6), [0.25, 1.0], [1.0, 0.0], 10.0,
                               torch.zeros(10, 84))
    x = torch.zeros(2, 32, 32)
    with pytest.raises(ValueError, match="0..9"):
        group.step(x, torch.tensor([0, 10]))
    with pytest.raises(ValueError, match=r"\(K, 32, 32\)"):
        group.step(torch.zeros(3, 32, 32), torch.tensor([0, 1]))
    with pytest.raises(ValueError, match=r"\(T, K\)"):
        group.steps(x[None], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="C1.weight"):
        group.load({name: torch.zeros(1, *shape) for name, shape in kernel.STACKED_SHAPES.items()})


@pytest.mark.parametrize("width", kernel.WIDTHS)
@pytest.mark.parametrize("kind", list(GROUPS))
def test_accumulating_sums_each_replicas_own_gradients_and_moves_nothing(mnist, kind, width):
    """accumulate(): a minibatch's summed gradient at fixed weights (engine/minibatch.py's Adam
    path), equal to the autograd gradient of each replica's summed loss, absent C3 connections 0."""
    K, n = 11, 7  # one full block and a partial one at 8 lanes
    configs = GROUPS[kind](K)
    nets, _, group = groups(configs, mnist, width=width)
    before = group.export()
    group.accumulate()
    x, y = patterns(mnist, K, n, configs=configs)
    group.steps(x, y)
    sums = group.gradient_sums()
    for name, t in group.export().items():
        assert torch.equal(t, before[name]), f"{name} moved while accumulating"
    for k, (net, c) in enumerate(zip(nets, configs)):
        loss = LOSSES[c.loss](net(x[:, k].unsqueeze(1)), y[:, k], c.map_j).sum()
        grads = dict(zip([stacked_name(p) for p, _ in net.named_parameters()],
                         torch.autograd.grad(loss, list(net.parameters()))))
        for name, g in grads.items():
            if name == "C3.weight":
                g = g * group.c3_masks[k][:, :, None, None]
            assert_rel_close(sums[name][k], g, 2e-5, f"{name} replica {k}")
    group.steps(x[:1], y[:1])  # restarted from zero: one pattern's gradient only
    one = group.gradient_sums()
    assert one["C1.bias"].abs().sum() < sums["C1.bias"].abs().sum()
    group.accumulate(False)
    group.steps(x[:1], y[:1])
    assert not torch.equal(group.export()["C1.weight"], before["C1.weight"])  # updating again
