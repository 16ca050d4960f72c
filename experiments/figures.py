"""Per-pass curves of run folders, small multiples by variant: training loss and test error.

    python -m experiments.figures --out results/quick    # from the --quick grid's run folders
    python -m experiments.figures                        # every finished run under results/runs

One panel per variant, every seed a line, from each run's metrics.csv (never retrained):
`loss_curves` draws the training loss per pattern, measured on the fly during each pass (the
criterion the run minimises: MAP, MLE or cross-entropy, so the panels have their own scales);
`test_error_curves` the test error after each pass, with the paper's Fig. 5 points in the
`paper` panel. Each is saved as PNG and PDF. experiments.report can call both with
`by_variant(out, runs)` (its runs table); the command line groups the finished run folders by
the label in their config.json (`ablate` labels a run by its variant).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click
import pandas as pd

from lenet1998.paper import FIG5
from lenet1998.results import atomic_write_bytes, check_writable, read_metrics

from .common import command, one_line_errors
from .tensorboard import run_label
from .variants import VARIANTS

PANEL_COLUMNS = 4  # panels per row


def by_variant(out: Path, runs: pd.DataFrame) -> dict:
    """{variant: [run folder, ...]} of experiments.report's runs table (its finished, readable runs)."""
    grouped = {}
    for r in runs.itertuples() if len(runs) else []:
        grouped.setdefault(r.variant, []).append(Path(out) / "runs" / r.run)
    return grouped


def finished_runs(runs_root: Path) -> dict:
    """{variant or label: [run folder, ...]} of every finished run under `runs_root`, named as
    experiments.tensorboard.run_label names them (a `train` run by the variant it is)."""
    from lenet1998.config import LeNetConfig

    grouped = {}
    for done in sorted(Path(runs_root).glob("*/done")):
        stored = json.loads((done.parent / "config.json").read_text())
        label = stored.pop("label", "run")
        grouped.setdefault(run_label(label, LeNetConfig.from_dict(stored)), []).append(done.parent)
    order = {name: i for i, name in enumerate(VARIANTS)}  # the variants in their table's order, then the rest
    return dict(sorted(grouped.items(), key=lambda item: (order.get(item[0], len(order)), item[0])))


def curves(runs_by_variant: dict) -> pd.DataFrame:
    """The metrics.csv rows of every run, with its variant and seed: one row per (run, pass)."""
    frames = []
    for variant, folders in runs_by_variant.items():
        for folder in folders:
            seed = json.loads((Path(folder) / "config.json").read_text())["seed"]
            frames.append(read_metrics(folder).assign(variant=variant, seed=seed))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def per_pass_figure(data: pd.DataFrame, column: str, ylabel: str, title: str, paper: dict | None = None):
    """Small multiples: one panel per variant (in order of first appearance), every seed a line of
    `column` against the pass; `paper` ({pass: value}) drawn as points in the `paper` panel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.lines
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    variants = list(dict.fromkeys(data.variant))
    cols = min(PANEL_COLUMNS, len(variants))
    rows = math.ceil(len(variants) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.6 * rows), squeeze=False, sharex=True)
    seeds = sorted(set(data.seed))
    colour = {s: f"C{i % 10}" for i, s in enumerate(seeds)}  # a seed keeps its colour in every panel
    for ax, variant in zip(axes.flat, variants):
        runs = data[data.variant == variant]
        for seed, run in runs.groupby("seed", sort=True):
            run = run.sort_values("pass")
            ax.plot(run["pass"], run[column], marker="o", markersize=2.5, lw=1, color=colour[seed], label=f"seed {seed}")
        if paper and variant == "paper":
            ax.plot(list(paper), list(paper.values()), "ks", markersize=3.5, label="paper, Fig. 5")
        values = runs[column].dropna()
        if len(values) and (values > 0).all():
            ax.set_yscale("log")
            ax.yaxis.set_major_locator(matplotlib.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
            ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v:g}"))
            ax.yaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.set_title(variant, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    last = int(data["pass"].max())
    for i, ax in enumerate(axes.flat):
        if i >= len(variants):
            ax.axis("off")
            continue
        ax.set_xlim(0.5, last + 0.5)
        ax.xaxis.set_major_locator(matplotlib.ticker.MultipleLocator(math.ceil(last / 7)))  # whole passes
        if i + cols >= len(variants):  # the lowest panel of its column: label the passes
            ax.xaxis.set_tick_params(labelbottom=True)
            ax.set_xlabel("pass", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel(ylabel, fontsize=8)
    handles = [matplotlib.lines.Line2D([], [], color=colour[s], marker="o", markersize=2.5, lw=1, label=f"seed {s}")
               for s in seeds]
    if paper and "paper" in variants:
        handles.append(matplotlib.lines.Line2D([], [], color="k", marker="s", markersize=3.5, lw=0, label="paper, Fig. 5"))
    fig.legend(handles=handles, loc="upper right", fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.92 if cols > 1 else 0.75, 0.96))
    return fig


def save(fig, path: Path) -> list:
    """`fig` as path.png and path.pdf, each written atomically; closes it. Returns both paths."""
    import io

    import matplotlib.pyplot as plt

    path = Path(path)
    check_writable(path.parent)
    written = []
    for suffix in (".png", ".pdf"):
        buffer = io.BytesIO()
        metadata = {"CreationDate": None} if suffix == ".pdf" else None  # no date: the same figure, the same bytes
        fig.savefig(buffer, format=suffix[1:], dpi=110, metadata=metadata)
        atomic_write_bytes(path.with_suffix(suffix), buffer.getvalue())
        written.append(path.with_suffix(suffix))
    plt.close(fig)
    return written


def loss_curves(runs_by_variant: dict, path: Path) -> list:
    """The training loss per pass ({variant: [run folder, ...]}), one panel per variant, every
    seed a line; written to path.png and path.pdf (returned)."""
    fig = per_pass_figure(curves(runs_by_variant), "train_loss", "training loss per pattern",
                          "Training loss per pass, measured on the fly (each variant its own criterion and scale)")
    return save(fig, path)


def test_error_curves(runs_by_variant: dict, path: Path) -> list:
    """The test error per pass, as loss_curves, with the paper's Fig. 5 in the `paper` panel."""
    fig = per_pass_figure(curves(runs_by_variant), "test_error", "test error (%)", "Test error after each pass",
                          paper={p: test for p, (test, _) in FIG5.items()})
    return save(fig, path)


test_error_curves.__test__ = False  # a figure, not a test (pytest collects test_* names it imports)


@command()
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True,
              help="Results folder: its runs/ are drawn, its figures/ written.")
@one_line_errors
def main(out):
    """Draw the training-loss and test-error curves of every finished run under OUT/runs."""
    out = Path(out)
    runs = finished_runs(out / "runs")
    if not runs:
        raise click.ClickException(f"no finished run folders in {out / 'runs'}")
    written = loss_curves(runs, out / "figures" / "loss_curves") + \
        test_error_curves(runs, out / "figures" / "test_error_curves")
    click.echo("wrote " + ", ".join(str(p) for p in written))


if __name__ == "__main__":
    main()
