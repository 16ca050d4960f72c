"""The ablation grid: the variant table, --quick end to end, resuming, and the report."""

import dataclasses
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from experiments.ablate import main as ablate
from experiments.report import build_report
from experiments.variants import GRID, PAPER, VARIANTS
from lenet1998.config import LeNetConfig

REPO = Path(__file__).resolve().parent.parent
MODERN_FIELDS = {"subsampling", "c3_table", "squashing", "output", "loss", "optimizer", "batch_size",
                 "init", "input_coding"}


def changed_fields(config):
    return {f.name for f in dataclasses.fields(LeNetConfig) if getattr(config, f.name) != getattr(PAPER, f.name)}


def test_paper_variant_is_the_default_config():
    assert VARIANTS["paper"].config == LeNetConfig()
    assert VARIANTS["paper"].paper_test_error == 0.95


@pytest.mark.parametrize("name", [n for n in GRID if n not in ("paper", "modern", "modern+distortions")])
def test_single_factor_variants_change_only_what_they_name(name):
    variant = VARIANTS[name]
    assert changed_fields(variant.config) == set(variant.changes)
    # One paper piece each; a second field only with a stated coupling.
    if len(variant.changes) > 1:
        assert variant.coupled


def test_modern_switches_every_piece():
    assert changed_fields(VARIANTS["modern"].config) == MODERN_FIELDS
    assert changed_fields(VARIANTS["modern+distortions"].config) == MODERN_FIELDS | {"distortions"}
    singles = set().union(*(changed_fields(v.config) for n, v in GRID.items() if "modern" not in n))
    assert MODERN_FIELDS <= singles  # each switch of `modern` is also measured alone


def test_bad_input_is_a_usage_error_without_traceback(tmp_path):
    runner = CliRunner()
    for args, fragment in [
        (["--only", "lenet7"], "valid:"),
        (["--all", "--seeds", "0"], "--seeds"),
        (["--all", "--epochs", "-3"], "--epochs"),
        (["--all", "--out", "/proc/nope"], "cannot write"),
        (["--all", "--seed-plan", "--out", str(tmp_path)], "no seed plan yet"),  # seeds 0-9 of paper not there
        ([], "--all"),
    ]:
        result = runner.invoke(ablate, args)
        assert result.exit_code == 2, (args, result.output)
        assert fragment in result.output
        assert "Traceback" not in result.output
    assert runner.invoke(ablate, ["--list"]).exit_code == 0


def test_quick_runs_the_whole_pipeline(tmp_path, data_dir):
    result = CliRunner().invoke(ablate, ["--quick", "--jobs", "2", "--engine", "eager", "--out", str(tmp_path),
                                         "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    for name in ("runs.csv", "ablation.csv", "ablation.md", "paper.csv", "figures/test_error_curves.png",
                 "figures/loss_curves.png", "figures/ablation.png", "figures/misclassified.png"):
        assert (tmp_path / name).is_file(), name
    table = (tmp_path / "ablation.csv").read_text()
    assert all(name in table for name in GRID)  # --quick: today's single-factor grid
    before = {p: p.read_bytes() for p in sorted(tmp_path.glob("*.csv")) + sorted(tmp_path.glob("*.md"))}
    build_report(tmp_path, seeds=2, epochs=1, train_size=2000, data_dir=data_dir)
    after = {p: p.read_bytes() for p in before}
    assert before == after  # the report is a function of the run folders
    from experiments.grid import schedule
    from experiments.timing import groups, main as timing

    table = groups(tmp_path / "runs")  # every group recorded its members: 17 variants in all
    assert sum(len(g.split(" + ")) for g in table.group) == len(GRID)
    assert schedule([3.0, 2.0, 2.0, 1.0], 2) == 4.0 and schedule([1.0, 1.0], 1) == 2.0
    result = CliRunner().invoke(timing, ["--out", str(tmp_path), "--epochs", "3"])
    assert result.exit_code == 0, result.output
    assert "Projected to 3 passes" in (tmp_path / "timing.md").read_text()


def test_a_killed_ablation_loses_no_finished_run(tmp_path, data_dir):
    args = [sys.executable, "-m", "experiments.ablate", "--quick", "--only", "paper", "--only", "mle",
            "--jobs", "1", "--epochs", "2", "--out", str(tmp_path), "--data-dir", str(data_dir), "--engine", "eager",
            "--lockstep", "variant"]  # two groups, one after the other: a kill can fall between them
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    runs = tmp_path / "runs"
    deadline = time.time() + 300
    while time.time() < deadline and not list(runs.glob("*/done")) and proc.poll() is None:
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    finished = {p.parent.name: (p.parent / "manifest.json").read_bytes() for p in runs.glob("*/done")}
    assert finished, "no run finished before the kill"
    assert len(finished) < 4  # killed part-way through the grid
    result = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    done = {p.parent.name for p in runs.glob("*/done")}
    assert len(done) == 4
    for name, manifest in finished.items():  # untouched: not retrained, not rewritten
        assert (runs / name / "manifest.json").read_bytes() == manifest
    assert not list(runs.glob("*/state.pt")) and not list(runs.glob("*/.*.tmp"))


def test_bench_measures_the_other_networks(tmp_path, data_dir):
    import pandas as pd

    from experiments.bench import main as bench
    from lenet1998.networks import NETWORKS

    result = CliRunner().invoke(bench, ["--networks", "--patterns", "100", "--replicas", "2", "--out", str(tmp_path),
                                        "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(tmp_path / "bench_networks.csv")
    others = sorted(n for n in NETWORKS if n != "lenet5")
    assert sorted(set(table.network)) == others and len(table) == 3 * len(others)
    assert (table[table.case.str.startswith("plain")].ratio_to_reference == 1).all()
    assert "| fc1000 | fit, per-pattern SDLM, lockstep, C kernel | 2 |" in (tmp_path / "bench_networks.md").read_text()


def test_bench_runs_and_writes_its_tables(tmp_path, data_dir):
    from experiments.bench import main as bench
    from lenet1998.engine import kernel_fits

    result = CliRunner().invoke(bench, ["--patterns", "100", "--replicas", "1", "--replicas", "2",
                                        "--minibatch-patterns", "128", "--side-by-side", "1", "--out", str(tmp_path), "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    csv = (tmp_path / "bench.csv").read_text()
    assert "plain per-pattern loop (reference)" in csv and "ratio_to_reference" in csv
    assert "lockstep, kernel" in csv or not kernel_fits([LeNetConfig()])[0]  # the kernel measured where it builds
    assert "2 processes side by side: fit, " in csv and "2 processes side by side: plain loops" in csv
    md = (tmp_path / "bench.md").read_text()
    assert "Estimated wall time" in md
    again = CliRunner().invoke(bench, ["--render-only", "--out", str(tmp_path)])
    assert again.exit_code == 0, again.output
    assert (tmp_path / "bench.md").read_text() == md  # the table renders from bench.csv alone
    # measured elsewhere: a re-render here keeps the machine the numbers were measured on
    from experiments.bench import this_machine

    (tmp_path / "bench.md").write_text(md.replace(this_machine(), "Another CPU, 64 cores, torch 0.0"))
    assert CliRunner().invoke(bench, ["--render-only", "--out", str(tmp_path)]).exit_code == 0
    assert "in one run: Another CPU, 64 cores, torch 0.0, one torch thread" in (tmp_path / "bench.md").read_text()


def test_profile_accounts_for_the_whole_step(tmp_path):
    from experiments.profile import main as profile

    result = CliRunner().invoke(profile, ["--replicas", "2", "--steps", "10", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "profile.md").read_text()
    shares = [int(line.rsplit("|", 2)[1].strip().rstrip("%")) for line in text.split("| where | share |")[1]
              .split("\n\n")[0].splitlines()[2:]]
    assert 97 <= sum(shares) <= 103  # rounded percentages of one whole
    assert "batched matrix products" in text


def test_trainsize_quick_writes_its_table_and_figure(tmp_path, data_dir):
    from experiments.trainsize import main as trainsize

    result = CliRunner().invoke(trainsize, ["--quick", "--jobs", "1", "--engine", "eager", "--out", str(tmp_path),
                                            "--data-dir", str(data_dir)])
    assert result.exit_code == 0, result.output
    table = (tmp_path / "trainsize.md").read_text()
    assert "| 500 | 2 |" in table and "| 2,000 | 2 |" in table
    assert (tmp_path / "figures" / "trainsize.png").is_file()


def test_the_grid_trains_the_variants_of_one_architecture_together(tmp_path):
    from experiments.grid import GRID as GRID_BUDGET, plan

    groups = plan(list(GRID), GRID_BUDGET, tmp_path)
    assert sum(len(runs) for _, runs in groups) == 3 * len(GRID)
    shared = {"paper", "full_c3", "relu", "tanh", "mle", "sgd", "pytorch_init", "literal_init",
              "sum_subsampling", "unit_input", "paper+distortions"}  # the paper's layer shapes
    first = {label for label, _ in groups[0][1]}  # the largest goes first
    assert first <= shared and {label for _, runs in groups for label, _ in runs if label in shared} == shared
    from experiments.grid import max_group_default

    size = max_group_default()  # two blocks of the kernel's lanes: 16 (8 lanes) or 32 (16 lanes)
    sizes = sorted((len(runs) for _, runs in groups if {label for label, _ in runs} <= shared), reverse=True)
    assert sizes == [size] * (33 // size) + [33 % size]  # 33 runs: full groups and one of the rest
    # Adam runs of one lockstep key train stacked (lenet1998/engine/minibatch.py): `modern` with
    # `modern+distortions` (the same shapes), `adam` (the paper's shapes, another key) alone.
    labels = [{label for label, _ in runs} for _, runs in groups]
    assert {"modern", "modern+distortions"} in labels and {"adam"} in labels
    seeds = {}
    for _, runs in groups:  # every run keeps its variant's own config and seed
        for label, config in runs:
            assert config.replace(seed=0) == VARIANTS[label].config
            seeds.setdefault(label, []).append(config.seed)
    assert all(sorted(s) == [0, 1, 2] for s in seeds.values())  # each seed planned once
    per_variant = plan(list(GRID), GRID_BUDGET, lockstep="variant")  # root None: no done-check
    assert len(per_variant) == len(GRID) and all(len(runs) == 3 for _, runs in per_variant)


def test_only_the_committed_grid_rewrites_readme_and_reproducing(tmp_path):
    from experiments.docs import repository_docs

    assert repository_docs(REPO / "results", False, 3, 20) == REPO / "README.md"
    assert repository_docs(tmp_path, False, 3, 20) is None  # another --out: a timing run, say
    assert repository_docs(REPO / "results", False, 3, 2) is None  # another budget
    assert repository_docs(REPO / "results", True, 3, 20) is None


@pytest.mark.parametrize("family", ["single", "add_one_in", "open_question", "road"])
def test_a_clone_has_every_run_of_the_finished_families(family):
    """`ablate --all` (3 seeds), `--all --seeds 10` and a finished `--family NAME` on a clone of
    this repository train nothing: every run folder they plan is committed, finished."""
    from experiments.grid import BUDGETS, plan
    from experiments.variants import family as members

    names = members(family)
    seeds = [3, BUDGETS[family].seeds] if family == "single" else [BUDGETS[family].seeds]
    for n in seeds:
        missing = plan(names, dataclasses.replace(BUDGETS[family], seeds=n), REPO / "results" / "runs")
        assert missing == [], [(label, c.seed) for _, runs in missing for label, c in runs]
