"""The validation split (LeNetConfig.val_size): the last val_size training patterns held out.

Train, validation and test never share a pattern; the h_kk sample and the distortion pool come
from the training patterns alone; val_size=0 (the paper) keeps every run's name and weights;
every trainer records `val_error` per pass beside `test_error`.
"""

import pytest
import torch

from lenet1998.config import DIGEST_FIELDS_V1, ConfigError, LeNetConfig
from lenet1998.data import MNIST, encode, ink
from lenet1998.patterns import TrainingPatterns, validation_images, validation_range
from lenet1998.patterns import test_images as coded_test_images
from experiments.grid import train_runs
from lenet1998.results import read_metrics
from lenet1998.train import evaluate, fit

from experiments.common import parse_overrides

PAPER_RUN = "cabe4ba7ef8e"  # results/runs/cabe4ba7ef8e: the paper config, seed 0, committed before val_size existed


@pytest.fixture(scope="module")
def small(mnist):
    """600 training digits (the last 200 held out below) and 300 test digits."""
    return MNIST(mnist.train_images[:600], mnist.train_labels[:600], mnist.test_images[:300], mnist.test_labels[:300])


def tiny(**changes):
    return LeNetConfig(**{"train_size": 120, "epochs": 2, "sdlm_samples": 40, **changes})


# --- the config ---

def test_val_size_zero_keeps_the_paper_runs_name():
    assert "val_size" not in DIGEST_FIELDS_V1
    assert LeNetConfig().digest() == LeNetConfig(val_size=0).digest() == PAPER_RUN
    assert LeNetConfig(train_size=50000, val_size=10000).digest() != LeNetConfig(train_size=50000).digest()


@pytest.mark.parametrize("changes, words", [
    ({"val_size": -1}, "val_size must be in 0..59999"),
    ({"val_size": 60000, "train_size": 1}, "val_size must be in 0..59999"),
    ({"val_size": 10000}, "train_size must be at most 50000"),  # train_size 60000 left at its default
    ({"val_size": 1, "train_size": 60000}, "train_size must be at most 59999"),
])
def test_a_split_that_does_not_fit_is_a_clear_config_error(changes, words):
    with pytest.raises(ConfigError, match=words):
        LeNetConfig(**changes)
    LeNetConfig(val_size=10000, train_size=50000)  # the largest that fits


def test_set_val_size_alone_trains_on_the_rest():
    assert parse_overrides(["val_size=10000"]) == {"val_size": 10000, "train_size": 50000}
    assert parse_overrides(["val_size=10000", "train_size=2000"]) == {"val_size": 10000, "train_size": 2000}
    assert parse_overrides(["train_size=2000"]) == {"train_size": 2000}


# --- which patterns ---

def test_train_validation_and_test_are_disjoint(small):
    config = tiny(val_size=200, train_size=400)
    held_out = validation_range(config, small)
    assert held_out == range(400, 600)  # the last 200 of the training set
    training = set(range(config.train_size))
    assert not training & set(held_out)
    ts = TrainingPatterns(config, small)
    assert torch.equal(ts.images, encode(small.train_images[:400]))
    x_val, y_val = validation_images(config, small)
    assert torch.equal(x_val, encode(small.train_images[400:])) and torch.equal(y_val, small.train_labels[400:])
    x_test, _ = coded_test_images(config, small)
    assert len(x_test) == 300 and len(x_val) == 200  # the test set is MNIST's own 10,000 (here 300): apart
    assert validation_images(config.replace(val_size=0), small) is None


def test_the_training_patterns_must_end_before_the_held_out_ones(small):
    with pytest.raises(ConfigError, match="need 601 training patterns; the data has 600"):
        TrainingPatterns(tiny(val_size=200, train_size=401), small)


def test_the_hessian_sample_and_the_distortion_pool_come_from_training_patterns_only(small):
    config = tiny(val_size=200, train_size=400, sdlm_samples=1000, distortions="affine")
    ts = TrainingPatterns(config, small)
    rows = {tuple(x.flatten().tolist()) for x in ts.images}
    held_out = {tuple(x.flatten().tolist()) for x in validation_images(config, small)[0]}
    sample = ts.hessian_sample(1)
    assert len(sample) == 400  # sdlm_samples capped at the training patterns, not 600
    assert {tuple(x.flatten().tolist()) for x in sample} <= rows
    assert torch.equal(ts.pool.originals, ink(small.train_images[:400]))
    assert ts.pool.size == 10 * 400
    pool = {tuple(code.flatten().tolist()) for code in encode(small.train_images[:400])}
    originals = ts.patterns(torch.arange(400))  # pool indices < n are the originals
    assert {tuple(x.flatten().tolist()) for x in originals} == pool and not pool & held_out


# --- training ---

def test_val_size_leaves_training_unchanged_and_records_val_error(small):
    """The engine (kernel where it builds, and eager) and the reference trainer (minibatch Adam):
    a held-out split changes nothing of training, and val_error is the error on the held-out patterns."""
    from lenet1998.model import LeNet5

    cases = [("auto", tiny()), ("eager", tiny(distortions="affine")), ("auto", tiny(optimizer="adam", batch_size=10))]
    for engine, config in cases:
        plain = fit([config], small, engine=engine)[0]
        split = fit([config.replace(val_size=200)], small, engine=engine)[0]
        for name in plain.state:
            assert torch.equal(plain.state[name], split.state[name]), (config, name)
        assert "val_error" not in plain.history[-1]
        for p, s in zip(plain.history, split.history, strict=True):
            assert s["val_error"] is not None
            assert {k: v for k, v in s.items() if "time" not in k and k != "val_error"} == \
                {k: v for k, v in p.items() if "time" not in k}
        model = LeNet5(config)
        model.load_state(split.state)
        x_val, y_val = validation_images(config.replace(val_size=200), small)
        tolerance = 0 if split.engine in ("reference", "eager") else 100 / 200  # the kernel's float32 forward
        assert split.history[-1]["val_error"] == pytest.approx(evaluate(model.eval(), x_val, y_val), abs=tolerance + 1e-9)


def test_metrics_csv_has_a_val_error_column_only_with_a_split(small, tmp_path):
    config = tiny(epochs=1)
    [plain] = train_runs(config, [0], tmp_path, small, "plain")
    [split] = train_runs(config.replace(val_size=200), [0], tmp_path, small, "split")
    assert plain.path.name == config.digest() != split.path.name
    assert "val_error" not in read_metrics(plain.path).columns  # old metrics.csv files read as before
    metrics = read_metrics(split.path)
    assert list(metrics.columns[:6]) == ["pass", "eta", "train_error", "train_loss", "test_error", "val_error"]
    assert 0 <= float(metrics.val_error.iloc[0]) <= 100
