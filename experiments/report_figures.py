"""The report's figures: the seeds of each family against the paper's line, the per-pass curves,
the distortion examples and the misclassified test digits (PNG and PDF, experiments.figures.save).
"""

from __future__ import annotations

import math
from pathlib import Path

import click
import pandas as pd

from lenet1998.paper import FIG9_LENET, LINEAR_CLASSIFIER_ERROR
from lenet1998.results import check_writable

from .figures import by_variant, loss_curves, save, test_error_curves
from .stats import mean_interval


MAX_SHOWN = 120  # digits in the misclassified grid


PAPER_LINE = (FIG9_LENET["LeNet-5"], f"paper: {FIG9_LENET['LeNet-5']}%")  # the dashed line of the seed figures


def seeds_figure(runs: pd.DataFrame, table: pd.DataFrame, path: Path, title: str, reference_line=None):
    """One row per variant, top to bottom in table order: every seed a dot, the mean of the runs
    that train with its 95% t interval (a bar), the runs that do not train in red."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = runs[runs.status == "ok"]
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(table) + 1.6))
    for i, name in enumerate(table.variant):
        e = ok[ok.variant == name].test_error.to_numpy()
        good = e[e < LINEAR_CLASSIFIER_ERROR]
        ax.scatter(good, [i] * len(good), s=14, color="0.55", zorder=1, label="one seed" if i == 0 else None)
        bad = e[e >= LINEAR_CLASSIFIER_ERROR]
        ax.scatter(bad, [i] * len(bad), s=14, color="tab:red", marker="x", zorder=1)
        if len(bad):  # crosses near 90% print over each other: say how many there are
            ax.annotate(f"{len(bad)} of {len(e)} do not train", (bad.max(), i), xytext=(0, 6),
                        textcoords="offset points", ha="right", va="bottom", fontsize=7, color="tab:red")
        m = mean_interval(good)
        if m is not None:
            ax.errorbar(m.mean, i, xerr=m.high - m.mean, fmt="o", color="tab:blue", capsize=3, zorder=2,
                        label="mean, 95% t interval (runs that train)" if i == 0 else None)
    if reference_line:
        ax.axvline(reference_line[0], color="k", ls="--", lw=1, label=reference_line[1])
    scale = "linear"
    if len(ok):
        low, high = 0.9 * min(ok.test_error.min(), reference_line[0] if reference_line else 1e9), 1.1 * ok.test_error.max()
        ax.set_xlim(low, high)
        if high / low > 4:  # runs that do not train next to runs near 1%: a log scale shows both
            scale = "log"
            ax.set_xscale("log")
            nice = [0.5, 0.6, 0.8, 1, 1.2, 1.5, 2, 3, 5, 10, 20, 50, 100]
            if high / low > 20:  # 1% to 90% on one axis: the fine ticks would print over each other
                nice = [0.5, 1, 2, 5, 10, 20, 50, 100]
            ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([t for t in nice if low <= t <= high]))
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yticks(range(len(table)), table.variant)
    ax.set(xlabel=f"final test error (%){', log scale' if scale == 'log' else ''}; x: a run that does not train",
           title=title)
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path)


def figures(out: Path, runs: pd.DataFrame, table: pd.DataFrame, data_dir) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    folder = check_writable(out / "figures")  # a read-only figures/: one line naming it
    written = []

    # Per pass, small multiples by variant (experiments/figures.py): every seed a line.
    grouped = by_variant(out, runs[runs.status == "ok"] if len(runs) else runs)
    if grouped:
        written += test_error_curves(grouped, folder / "test_error_curves")[:1]
        written += loss_curves(grouped, folder / "loss_curves")[:1]

    if len(table) and len(runs[runs.status == "ok"]):  # every run failed: no error to plot
        # The families' figure: a mean of the runs that train, never a mean +- sd over runs that
        # stalled at 90% next to runs near 1%, which would describe no seed.
        written.append(seeds_figure(runs, table, folder / "ablation.png", "Ablation: final test error over seeds",
                                    PAPER_LINE))

    # The figures that show digits need MNIST; without it the rest is still built.
    from lenet1998.data import DataError

    skipped, why = [], None
    try:
        written.append(distortion_examples(folder, data_dir, plt))
    except DataError as e:
        skipped, why = ["distortions.png"], e
    paper_runs = runs[(runs.variant == "paper") & (runs.status == "ok")] if len(runs) else runs
    if len(paper_runs):
        if why is None:
            written.append(misclassified(out, paper_runs.sort_values("seed").iloc[0], folder, data_dir, plt))
        else:
            skipped.append("misclassified.png")
    if skipped:
        click.echo(f"skipped the figures that show digits ({', '.join(skipped)}): {str(why).splitlines()[0]}", err=True)
    return written


def distortion_examples(folder, data_dir, plt):
    """Distorted versions of a few training digits, as drawn for seed 0 (the paper's Fig. 7)."""
    from lenet1998.data import ink, load_mnist
    from lenet1998.distortions import distort, sample_parameters
    from lenet1998.patterns import STREAM_DISTORTIONS, generator

    data = load_mnist(data_dir, download=False)
    digits = ink(data.train_images[:6])  # (6, 32, 32)
    copies = 9
    params = sample_parameters(6 * copies, generator(0, STREAM_DISTORTIONS))
    out = distort(digits.repeat_interleave(copies, 0), params).view(6, copies, 32, 32)
    fig, axes = plt.subplots(6, copies + 1, figsize=(copies + 1, 6.3))
    for i in range(6):
        axes[i, 0].imshow(digits[i].numpy(), cmap="gray_r", vmin=0, vmax=1)
        for c in range(copies):
            axes[i, c + 1].imshow(out[i, c].numpy(), cmap="gray_r", vmin=0, vmax=1)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("original", fontsize=8)
    fig.suptitle("Random affine distortions on the 32x32 field (translation, scale, squeeze, shear)")
    return save_figure(fig, folder / "distortions.png")


def misclassified(out, run, folder, data_dir, plt):
    """The test digits the first paper run gets wrong, true -> predicted (the paper's Fig. 8)."""
    import torch

    from lenet1998.data import encode, load_mnist
    from lenet1998.results import load_trained

    model = load_trained(out / "runs" / run.run / "checkpoint.pt")
    data = load_mnist(data_dir, download=False)
    with torch.no_grad():
        x = encode(data.test_images, model.config.input_coding).unsqueeze(1)
        pred = torch.cat([model.predict(model(x[s:s + 1000])) for s in range(0, len(x), 1000)])
    wrong = (pred != data.test_labels).nonzero().flatten().tolist()
    shown = wrong[:MAX_SHOWN]
    cols = 12
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 1.1))
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, shown):
        ax.imshow(data.test_images[i].numpy(), cmap="gray_r")
        ax.set_title(f"{int(data.test_labels[i])}->{int(pred[i])}", fontsize=8)
    more = f" (first {len(shown)} shown)" if len(shown) < len(wrong) else ""
    fig.suptitle(f"The {len(wrong)}{more} test patterns misclassified by the paper variant (seed {run.seed}), true->predicted")
    return save_figure(fig, folder / "misclassified.png")


def save_figure(fig, path):
    """Write `fig` to `path` (PNG) and beside it as PDF, each atomically, and close it
    (experiments.figures.save); returns the PNG's path."""
    fig.tight_layout()
    return save(fig, path.with_suffix(""))[0]
