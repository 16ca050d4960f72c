"""Lockstep groups of mixed variants: every replica follows its own config trained alone,
with its own squashing, C3 table, S2/S4 reading, init, input coding, distortions, order,
criterion and step rule."""

import pytest
import torch

from lenet1998.config import LeNetConfig
from lenet1998.train import fit

# Variants that share the paper's architecture, each as a change to a small paper config.
MIXED = {  # SGD first: what the group shares must not be read from its first config
    "sgd": {"optimizer": "sgd", "lr": 1e-4},  # a step of 1e-4 on every weight, not SDLM's eta
    "paper": {},
    "mle": {"loss": "mle"},
    "pytorch_init": {"init": "pytorch"},
    "literal_init": {"init": "paper"},
    "unit_input": {"input_coding": "unit"},
    "distortions": {"distortions": "affine"},
    "reshuffle": {"order": "reshuffle"},
    "full_c3": {"c3_table": "full"},
    "relu": {"squashing": "relu"},
    "tanh": {"squashing": "tanh"},
    "sum_subsampling": {"subsampling": "trainable_sum"},
}


def small(**changes):
    # eta 5e-5 (the schedule's later steps): rounding differences stay at rounding level.
    return LeNetConfig(**{"epochs": 2, "train_size": 300, "sdlm_samples": 50,
                          "eta_schedule": ((1, 5e-5),), **changes})


def mixed_group():
    return [small(seed=10 + k, **changes) for k, changes in enumerate(MIXED.values())]


def test_each_replica_of_a_mixed_group_follows_its_config_alone(mnist):
    configs = mixed_group()
    group = fit(configs, mnist)
    for (name, _), config, grouped in zip(MIXED.items(), configs, group):
        (alone,) = fit(config, mnist)
        assert grouped.seed == alone.seed == config.seed
        for key, p in alone.state.items():
            # Grouped and single-replica arithmetic round differently (about 1e-7 per step).
            torch.testing.assert_close(grouped.state[key], p, rtol=0, atol=1e-5, msg=f"{name} {key}")
        for g, a in zip(grouped.history, alone.history):
            assert set(g) == set(a), name  # SGD replicas record no SDLM step ranges, as alone
            assert g["eta"] == a["eta"], name
            assert g["test_error"] == pytest.approx(a["test_error"], abs=0.05), name
            assert g["train_loss"] == pytest.approx(a["train_loss"], rel=1e-4), name
    assert "eps_max_C1" not in group[0].history[0] and group[0].history[0]["eta"] == 1e-4
    assert group[1].history[0]["eta"] == 5e-5 and "eps_max_C1" in group[1].history[0]
    # Distinct configs give distinct runs (the test can fail): replica 2 (MLE) is not replica 1.
    assert not torch.allclose(group[1].state["layers.F6.weight"], group[2].state["layers.F6.weight"])


def test_the_compiled_engine_follows_the_eager_loop_in_a_mixed_group(mnist):
    configs = [c.replace(epochs=1, train_size=200) for c in mixed_group()]
    eager = fit(configs, mnist)
    compiled = fit(configs, mnist, engine="compiled")
    for name, e, c in zip(MIXED, eager, compiled):
        for key, p in e.state.items():
            torch.testing.assert_close(c.state[key], p, rtol=0, atol=1e-5, msg=f"{name} {key}")


def test_configs_that_differ_in_architecture_or_budget_do_not_group(mnist):
    base = small()
    for changes in ({"subsampling": "max_pool"}, {"output": "linear", "loss": "cross_entropy"}, {"epochs": 3},
                    {"optimizer": "adam", "batch_size": 4}, {"map_j": 5.0}, {"train_size": 200}):
        assert base.replace(**changes).lockstep_key() != base.lockstep_key(), changes
        with pytest.raises(ValueError, match="one lockstep group"):
            fit([base, base.replace(seed=1, **changes)], mnist)
    for changes in MIXED.values():
        assert base.replace(seed=4, **changes).lockstep_key() == base.lockstep_key(), changes
    with pytest.raises(ValueError, match="inside each config"):
        fit([base], mnist, seeds=[1])


def test_sgd_replicas_with_their_own_steps_follow_their_configs_alone(mnist):
    configs = [small(optimizer="sgd", lr=lr, seed=seed, epochs=1, train_size=100)
               for seed, lr in ((1, 1e-4), (2, 3e-4))]
    group = fit(configs, mnist)
    for config, grouped in zip(configs, group):
        (alone,) = fit(config, mnist)
        assert grouped.history[0]["eta"] == config.lr
        for key, p in alone.state.items():
            torch.testing.assert_close(grouped.state[key], p, rtol=0, atol=1e-5, msg=key)
