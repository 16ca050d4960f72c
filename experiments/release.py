"""Copy a variant's seed-0 run to results/released/<variant>/, for `load_pretrained`.

    python -m experiments.release --variant paper --variant modern
"""

from __future__ import annotations

import click

from lenet1998.results import ResultsError, RunFolder, release

from .common import one_line_errors
from .variants import VARIANTS


@click.command()
@click.option("--variant", "variants", multiple=True, required=True, help="Variant to release (repeatable).")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--runs", type=click.Path(file_okay=False), default="results/runs", show_default=True)
@one_line_errors
def main(variants, seed, runs):
    """Release finished runs as the variants' pretrained checkpoints."""
    for name in variants:
        if name not in VARIANTS:
            raise click.BadParameter(f"unknown variant {name!r}; valid: {list(VARIANTS)}", param_hint="--variant")
        folder = RunFolder(runs, VARIANTS[name].config.replace(seed=seed))
        if not folder.done:
            raise ResultsError(f"variant {name!r} seed {seed} has no finished run in {runs}")
        click.echo(f"{name}: {folder.path} -> {release(folder.path, name)}")


if __name__ == "__main__":
    main()
