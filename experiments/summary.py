"""The layer table of LeNet-5 as the paper gives it in Sec. II-B, with the paper's counts beside ours.

    python -m experiments.summary                    # the paper's LeNet-5
    python -m experiments.summary --variant modern   # any variant of the ablation grid
"""

from __future__ import annotations

import click
import torch

from lenet1998.model import PAPER_COUNTS
from lenet1998.networks import build

from .common import command, one_line_errors
from .variants import VARIANTS


def layer_rows(config):
    """(layer, kind, output shape, params, connections, paper params, paper connections) per layer
    of the config's network (lenet1998/networks.py; the paper gives per-layer counts for LeNet-5 only)."""
    model = build(config)
    paper = PAPER_COUNTS if config.network == "lenet5" else {}
    trace = []
    with torch.no_grad():
        out = model(torch.zeros(1, 1, 32, 32), trace)
    counts = model.counts()
    rows = [("INPUT", "32x32 image", "1x32x32", "", "", "", "")]
    for (layer, _, _, a), name in zip(trace, model.stage_names):
        shape = "x".join(str(d) for d in a.shape[1:])
        rows.append((name, type(layer).__name__, shape, *counts[name], *paper.get(name, ("", ""))))
    rows.append(("OUTPUT", type(model.head).__name__, "x".join(str(d) for d in out.shape[1:]),
                 *counts["OUTPUT"], *paper.get("OUTPUT", ("", ""))))
    rows.append(("total", "", "", *counts["total"], *((60000, 340908) if paper else ("", ""))))
    return rows


@command()
@click.option("--variant", default="paper", show_default=True, help="A variant of the ablation grid.")
@one_line_errors
def main(variant):
    """Print the layer table: maps and sizes, trainable parameters and connections, paper's numbers."""
    if variant not in VARIANTS:
        raise click.BadParameter(f"unknown variant {variant!r}; valid: {list(VARIANTS)}", param_hint="--variant")
    head = ("layer", "module", "output", "params", "connections", "paper params", "paper connections")
    rows = [head] + [tuple(str(c) if not isinstance(c, int) else f"{c:,}" for c in r) for r in layer_rows(VARIANTS[variant].config)]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    network = VARIANTS[variant].config.network
    click.echo(f"{'LeNet-5' if network == 'lenet5' else network}, variant {variant!r}: {VARIANTS[variant].what}")
    for i, r in enumerate(rows):
        click.echo("  ".join(c.rjust(w) if j >= 3 else c.ljust(w) for j, (c, w) in enumerate(zip(r, widths))))
        if i == 0:
            click.echo("  ".join("-" * w for w in widths))


if __name__ == "__main__":
    main()
