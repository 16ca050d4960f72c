"""The wall time of the grid, projected from a short timing run of the same grid.

    python -m experiments.ablate --all --epochs 2 --out results/timing-2pass --jobs 2
    python -m experiments.timing --out results/timing-2pass --epochs 20

Reads every lockstep group's run folders (manifest: the group's wall time from start-up to the
end; metrics.csv: the wall time of each pass, training, h_kk estimate and evaluation), projects
each group to `--epochs` passes (its measured time plus the mean pass time for each further
pass) and schedules the groups on `--jobs` workers in the order `ablate --all` starts them
(each group to the first free worker). Writes <out>/timing.md.
"""

from __future__ import annotations

from pathlib import Path

import click
import pandas as pd

from lenet1998.results import atomic_write_text, read_manifest

from .grid import GRID as GRID_BUDGET, plan, schedule
from .common import one_line_errors
from .variants import GRID as VARIANTS  # `ablate --all`: today's single-factor grid


def groups(runs_root: Path) -> pd.DataFrame:
    """One row per lockstep group: its variants, replicas, passes, wall time, mean pass time."""
    rows = []
    for done in sorted(Path(runs_root).glob("*/done")):
        m = read_manifest(done.parent)
        segment = m["segments"][-1]
        if len(m["segments"]) != 1 or "variants_in_group" not in segment:
            continue  # resumed, or trained before groups were recorded: no clean group time
        passes = pd.read_csv(done.parent / "metrics.csv").wall_time_s
        rows.append({"group": " + ".join(segment["variants_in_group"]), "replicas": segment["replicas_in_group"],
                     "passes": len(passes), "wall_time_s": m["wall_time_s"], "pass_time_s": float(passes.mean())})
    if not rows:
        raise click.UsageError(f"no finished run with a recorded lockstep group under {runs_root}")
    return pd.DataFrame(rows).groupby("group", sort=False).agg(
        replicas=("replicas", "first"), passes=("passes", "max"), wall_time_s=("wall_time_s", "max"),
        pass_time_s=("pass_time_s", "mean")).reset_index()


def ablate_order(groups) -> list:
    """The position of each group (its variants joined by " + ") in the order `ablate --all` starts them."""
    order = [frozenset(label for label, _ in runs) for _, runs in plan(list(VARIANTS), GRID_BUDGET)]
    return [order.index(v) if v in order else len(order) for v in (frozenset(g.split(" + ")) for g in groups)]


@click.command()
@click.option("--out", type=click.Path(file_okay=False, exists=True), required=True,
              help="The results folder of the timing run (holding runs/).")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True, help="Passes to project to.")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True)
@one_line_errors
def main(out, epochs, jobs):
    """Project the grid's wall time from a short timing run; write <out>/timing.md."""
    table = groups(Path(out) / "runs")
    table["projected_s"] = table.wall_time_s + (epochs - table.passes) * table.pass_time_s
    table["order"] = ablate_order(table.group)
    table = table.sort_values(["order", "projected_s"], ascending=[True, False], kind="stable")
    measured = schedule(table.wall_time_s, jobs)
    projected = schedule(table.projected_s, jobs)
    lines = [f"# Grid wall time, projected from `{out}`", "",
             f"Each lockstep group's measured wall time ({int(table.passes.max())} passes, start-up, h_kk "
             f"estimates and evaluation included) plus its mean pass time for each further pass up to {epochs}; "
             f"groups run on {jobs} workers in the order `ablate --all` starts them.", "",
             "| group | replicas | passes | measured s | s per pass | projected s |", "|---|---:|---:|---:|---:|---:|"]
    for r in table.itertuples():
        lines.append(f"| {r.group} | {r.replicas} | {r.passes} | {r.wall_time_s:.0f} | {r.pass_time_s:.0f} | "
                     f"{r.projected_s:.0f} |")
    lines += ["", f"Measured (the timing run, {jobs} workers): {measured / 60:.1f} min. "
              f"Projected to {epochs} passes: **{projected / 3600:.2f} h**."]
    atomic_write_text(Path(out) / "timing.md", "\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
