"""Per-pass curves (experiments/figures.py) drawn from real run folders: a tiny grid of two
variants x two seeds (200 patterns, 2 passes), trained through the library as `ablate` does."""

import pytest
from click.testing import CliRunner

from lenet1998.config import LeNetConfig
from lenet1998.paper import FIG5
from experiments.grid import train_group
from lenet1998.results import read_metrics

from experiments.figures import by_variant, curves, finished_runs, loss_curves, per_pass_figure, test_error_curves


@pytest.fixture(scope="module")
def tiny_grid(tmp_path_factory, mnist):
    """results-like folder: runs/ with paper and mle, seeds 0 and 1, in one lockstep group."""
    out = tmp_path_factory.mktemp("grid")
    config = LeNetConfig(train_size=200, epochs=2, sdlm_samples=50)
    runs = [(name, config.replace(seed=s, **changes)) for name, changes in (("paper", {}), ("mle", {"loss": "mle"}))
            for s in (0, 1)]
    folders = train_group(runs, out / "runs", mnist)
    return out, {name: [f.path for (label, _), f in zip(runs, folders) if label == name] for name in ("paper", "mle")}


def panels(fig):
    return {ax.get_title(): ax for ax in fig.axes if ax.get_title()}


def test_loss_curves_have_a_panel_per_variant_and_a_line_per_seed(tiny_grid):
    out, runs = tiny_grid
    fig = per_pass_figure(curves(runs), "train_loss", "loss", "t")
    assert set(panels(fig)) == {"paper", "mle"}
    for variant, folders in runs.items():
        lines = panels(fig)[variant].get_lines()
        assert len(lines) == 2  # one per seed
        for line, folder in zip(lines, folders):  # seeds in order, each line its metrics.csv
            metrics = read_metrics(folder)
            assert list(line.get_xdata()) == list(metrics["pass"]) == [1, 2]
            assert list(line.get_ydata()) == pytest.approx(list(metrics.train_loss))
    assert len(panels(fig)["paper"].get_lines()) == 2  # no paper points on a loss figure


def test_loss_and_test_error_figures_are_written_as_png_and_pdf(tiny_grid, tmp_path):
    out, runs = tiny_grid
    written = loss_curves(runs, tmp_path / "figs" / "loss_curves")
    assert [p.name for p in written] == ["loss_curves.png", "loss_curves.pdf"]
    assert written[0].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and written[1].read_bytes()[:5] == b"%PDF-"
    assert [p.name for p in test_error_curves(runs, tmp_path / "test_error_curves")] == \
        ["test_error_curves.png", "test_error_curves.pdf"]


def test_the_paper_panel_of_the_test_error_figure_holds_fig5(tiny_grid):
    out, runs = tiny_grid
    fig = per_pass_figure(curves(runs), "test_error", "%", "t", paper={p: t for p, (t, _) in FIG5.items()})
    paper_lines = panels(fig)["paper"].get_lines()
    assert len(paper_lines) == 3 and list(paper_lines[-1].get_xdata()) == list(FIG5)
    assert len(panels(fig)["mle"].get_lines()) == 2


def test_the_command_line_and_the_report_helper_find_the_same_runs(tiny_grid, tmp_path):
    import pandas as pd

    from experiments.figures import main

    out, runs = tiny_grid
    found = finished_runs(out / "runs")
    assert list(found) == ["paper", "mle"]  # the variants' table order
    assert {k: sorted(v) for k, v in found.items()} == {k: sorted(v) for k, v in runs.items()}
    table = pd.DataFrame([{"variant": v, "run": p.name} for v, paths in runs.items() for p in paths])
    assert by_variant(out, table) == runs
    result = CliRunner().invoke(main, ["--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "figures" / "loss_curves.pdf").is_file() and (out / "figures" / "test_error_curves.png").is_file()
    assert CliRunner().invoke(main, ["--out", str(tmp_path)]).exit_code == 1  # no runs: one line, not a traceback
