"""--set FIELD=VALUE: bad values refused in one line, eta_schedule settable, seed not silently
overridden, and a command whose runs all failed exits non-zero."""

import dataclasses

import click
import pytest
from click.testing import CliRunner

from experiments.ablate import main as ablate
from experiments.common import parse_overrides
from experiments.train import main as train
from experiments.variants import VARIANTS
from lenet1998.config import LeNetConfig

DIVERGES = ["--set", "squashing=relu", "--set", "optimizer=sgd", "--set", "lr=1e30"]  # non-finite loss in pass 1


def invoke(command, args):
    result = CliRunner().invoke(command, args)
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
    return result, result.output


@pytest.mark.parametrize("value", ["nan", "inf", "-inf"])
def test_a_non_finite_lr_is_refused_in_one_line(tmp_path, value):
    result, text = invoke(train, ["--set", f"lr={value}", "--out", str(tmp_path / "runs")])
    assert result.exit_code == 2, text
    assert "finite" in text and "Traceback" not in text
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_eta_schedule_can_be_set():
    assert parse_overrides(["eta_schedule=1:5e-4,3:2e-4"]) == {"eta_schedule": ((1, 5e-4), (3, 2e-4))}
    assert parse_overrides(["eta_schedule=1:1e-3"]) == {"eta_schedule": ((1, 1e-3),)}
    config = LeNetConfig(**parse_overrides(["eta_schedule=1:5e-4,3:2e-4"]))
    assert config.step_size(1) == 5e-4 and config.step_size(3) == 2e-4 and config.step_size(20) == 2e-4


@pytest.mark.parametrize("value", ["", "5e-4", "1:", "1:x", "2:5e-4", "1:5e-4,1:2e-4", "3:1e-4,1:5e-4", "1:nan",
                                   "1:-1e-4", "0.5:1e-4"])
def test_a_bad_eta_schedule_is_one_line(value):
    with pytest.raises(click.BadParameter, match="eta_schedule") as e:
        parse_overrides([f"eta_schedule={value}"])
    assert "\n" not in str(e.value.message)


def test_help_documents_eta_schedule():
    result, text = invoke(train, ["--help"])
    assert "eta_schedule=1:5e-4,3:2e-4" in " ".join(text.split())


def test_set_seed_is_refused_and_points_at_the_seed_option(tmp_path, data_dir):
    result, text = invoke(train, ["--set", "seed=5", "--epochs", "1", "--set", "train_size=200", "--engine", "eager",
                                  "--out", str(tmp_path / "runs"), "--data-dir", str(data_dir)])
    assert result.exit_code == 2 and "--seed" in text and "Traceback" not in text


@pytest.mark.parametrize("pair,phrase", [("epochs=x", "takes an int"), ("lr=x", "takes a float")])
def test_the_type_in_the_message_reads(pair, phrase):
    with pytest.raises(click.BadParameter, match=phrase):
        parse_overrides([pair])


def test_train_exits_non_zero_when_every_run_failed(tmp_path, data_dir):
    result, text = invoke(train, ["--epochs", "1", "--set", "train_size=200", *DIVERGES, "--engine", "eager",
                                  "--out", str(tmp_path / "runs"), "--data-dir", str(data_dir)])
    assert result.exit_code == 1, text
    assert "runs failed" in text and "Traceback" not in text


def test_ablate_exits_non_zero_when_every_run_failed(tmp_path, data_dir, monkeypatch):
    paper = VARIANTS["paper"]
    diverging = {**paper.changes, "squashing": "relu", "optimizer": "sgd", "lr": 1e30}
    monkeypatch.setitem(VARIANTS, "paper", dataclasses.replace(paper, changes=diverging))
    result, text = invoke(ablate, ["--quick", "--only", "paper", "--seeds", "1", "--jobs", "1", "--engine", "eager",
                                   "--out", str(tmp_path), "--data-dir", str(data_dir)])
    assert result.exit_code == 1, text
    assert "runs failed" in text and "Traceback" not in text
