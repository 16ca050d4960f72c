"""TensorBoard logs (experiments/tensorboard.py): the scalars read back equal metrics.csv.

`train --tensorboard`, `ablate`'s worker (experiments.grid.run_job) and `report --tensorboard` each write one
TensorBoard run per run; the event files are read back with TensorBoard's own EventAccumulator.
"""

import json
import math
import sys

import pytest
from click.testing import CliRunner

from lenet1998.config import LeNetConfig
from lenet1998.results import metrics_csv, read_metrics

pytest.importorskip("tensorboard")

from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402

from experiments.tensorboard import TAGS, TensorBoardLog  # noqa: E402


def events(folder):
    """{tag: [(step, value), ...]} as TensorBoard reads the folder."""
    acc = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def assert_log_equals_metrics(log_folder, run_folder):
    metrics = read_metrics(run_folder)
    logged = events(log_folder)
    eps = [c for c in metrics.columns if c.startswith("eps_")]
    columns = [c for c in TAGS if c in metrics.columns] + eps
    assert {"test_error", "train_error", "train_loss", "eta", "wall_time_s"} <= set(columns)
    assert set(logged) == {TAGS.get(c) or c.replace("eps_min_", "eps_min/").replace("eps_max_", "eps_max/")
                           for c in columns}
    for column in columns:
        tag = TAGS.get(column) or column.replace("eps_min_", "eps_min/").replace("eps_max_", "eps_max/")
        want = [(int(p), float(v)) for p, v in zip(metrics["pass"], metrics[column]) if not math.isnan(v)]
        got = logged[tag]
        assert [s for s, _ in got] == [s for s, _ in want], column  # one event per pass, step = pass number
        assert [v for _, v in got] == pytest.approx([v for _, v in want], rel=1e-6), column  # float32 in the file


def fake_run(folder, passes, config=None, label="train"):
    """A finished run folder with `passes` rows of metrics (every column a real run writes)."""
    folder.mkdir(parents=True, exist_ok=True)
    history = [{"pass": p, "eta": 5e-4, "train_error": 10.0 / p, "train_loss": 1.5 / p, "test_error": 3.0 / p,
                "wall_time_s": 60.0 + p, "eps_min_C1": 1e-4 * p, "eps_max_C1": 0.02 / p} for p in range(1, passes + 1)]
    (folder / "metrics.csv").write_text(metrics_csv(history))
    (folder / "config.json").write_text(json.dumps({"label": label, **(config or LeNetConfig()).to_dict()}))
    (folder / "done").write_text("ok\n")
    return folder


def test_train_logs_every_pass_as_metrics_csv_says(tmp_path, data_dir):
    from experiments.train import main

    args = ["--seed", "3", "--epochs", "2", "--set", "train_size=150", "--set", "val_size=100", "--set",
            "sdlm_samples=30", "--out", str(tmp_path / "runs"), "--label", "tiny", "--tensorboard", str(tmp_path / "tb"),
            "--data-dir", str(data_dir)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    [run] = [p.parent for p in (tmp_path / "runs").glob("*/done")]
    assert "val_error" in read_metrics(run).columns
    assert_log_equals_metrics(tmp_path / "tb" / "tiny" / "seed3", run)
    assert "error/val" in events(tmp_path / "tb" / "tiny" / "seed3")
    again = CliRunner().invoke(main, args)  # the run is done: nothing trains, nothing is logged twice
    assert again.exit_code == 0, again.output
    assert_log_equals_metrics(tmp_path / "tb" / "tiny" / "seed3", run)


def test_the_ablate_worker_logs_its_runs(tmp_path, data_dir):
    from experiments.grid import jobs_of, run_job

    config = LeNetConfig(train_size=120, epochs=2, sdlm_samples=30)
    runs = [("paper", config), ("mle", config.replace(loss="mle", seed=1))]
    [job] = jobs_of([("tiny", runs)], tmp_path / "runs", data_dir, tensorboard=str(tmp_path / "tb"))
    run_job(job)
    for label, c in runs:
        assert_log_equals_metrics(tmp_path / "tb" / label / f"seed{c.seed}", tmp_path / "runs" / c.digest())


def test_a_resumed_run_adds_only_its_new_passes(tmp_path):
    run = fake_run(tmp_path / "run", 2)
    with TensorBoardLog(tmp_path / "tb") as log:
        assert log.log(run, "x/seed0") == 2
        assert log.log(run, "x/seed0") == 0
    fake_run(tmp_path / "run", 5)  # three more passes, then a new process
    with TensorBoardLog(tmp_path / "tb") as log:
        assert log.log(run, "x/seed0") == 3
    assert_log_equals_metrics(tmp_path / "tb" / "x" / "seed0", run)


def test_report_exports_the_finished_runs_by_variant(tmp_path):
    from experiments.report import main

    paper = fake_run(tmp_path / "runs" / "a", 3)  # trained by `train`: logged as the variant it is
    odd = fake_run(tmp_path / "runs" / "b", 2, LeNetConfig(train_size=100, seed=4), label="small")
    unfinished = fake_run(tmp_path / "runs" / "c", 1, LeNetConfig(seed=7))
    (unfinished / "done").unlink()
    result = CliRunner().invoke(main, ["--out", str(tmp_path), "--tensorboard", str(tmp_path / "tb")])
    assert result.exit_code == 0, result.output
    assert "logged 2 runs" in result.output
    assert sorted(p.parent.name + "/" + p.name for p in (tmp_path / "tb").glob("*/*")) == ["paper/seed0", "small/seed4"]
    assert_log_equals_metrics(tmp_path / "tb" / "paper" / "seed0", paper)
    assert_log_equals_metrics(tmp_path / "tb" / "small" / "seed4", odd)
    assert not (tmp_path / "ablation.md").exists()  # exporting rebuilds no table


def test_without_tensorboard_the_option_says_how_to_install_it(tmp_path, monkeypatch):
    from experiments.report import main

    fake_run(tmp_path / "runs" / "a", 1)
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # import tensorboard now fails
    result = CliRunner().invoke(main, ["--out", str(tmp_path), "--tensorboard", str(tmp_path / "tb")])
    assert result.exit_code == 1
    assert 'not installed: pip install -e ".[tensorboard]"' in result.output
    assert "Traceback" not in result.output


def test_a_run_of_train_is_named_by_the_variant_it_is():
    from experiments.tensorboard import run_label

    assert run_label("train", LeNetConfig(seed=3)) == "paper"
    assert run_label("train", LeNetConfig(loss="mle", epochs=2, train_size=100)) == "mle"
    assert run_label("train", LeNetConfig(train_size=100, val_size=10)) == "train"  # no variant holds patterns out
    assert run_label("paper@15000", LeNetConfig(train_size=15000)) == "paper@15000"  # a label of its own stays
