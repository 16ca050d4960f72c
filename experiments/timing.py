"""The wall time of the grid, projected from a short timing run of the same grid.

    python -m experiments.ablate --all --epochs 2 --out results/timing-2pass --jobs 2
    python -m experiments.timing --out results/timing-2pass --epochs 20

Reads every lockstep group's run folders (manifest: the group's wall time from start-up to the
end; metrics.csv: the wall time of each pass, training, h_kk estimate and evaluation), projects
each group to `--epochs` passes (its measured time plus the mean pass time for each further
pass) and schedules the groups on `--jobs` workers in the order `ablate --all` starts them
(each group to the first free worker). Writes <out>/timing.md.

A full-length run (`ablate --all --seeds 3 --out <scratch> --jobs 2`, timed end to end) is
read the same way, and `--bench results/bench.csv` adds each group's time split into the kernel
steps (training minus the h_kk estimate), the h_kk estimates, evaluation and the rest
(start-up, loading, the final training-set evaluation), with the throughput of its steps beside
the one the bench implies for a process at its K (`bench_rate`): a real pass more than 20%
slower than the bench implies is flagged. `--load` reads a log of /proc/loadavg lines taken
while the grid ran ("<unix time> <1-min> <5-min> <15-min> ...") and states the machine's load.
"""

from __future__ import annotations

import json
from pathlib import Path

import click
import pandas as pd

from lenet1998.results import atomic_write_text, read_manifest

from .grid import GRID as GRID_BUDGET, plan, schedule
from .common import command, one_line_errors
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


def split(runs_root: Path) -> pd.DataFrame:
    """One row per lockstep group, from the first run of each (every run of a group shares its
    passes): seconds in the steps, the h_kk estimates, evaluation and the rest of its wall time,
    and the steps' throughput (pattern-updates per second: replicas x patterns / step seconds)."""
    rows = {}
    for done in sorted(Path(runs_root).glob("*/done")):
        m = read_manifest(done.parent)
        segment = m["segments"][-1]
        group = " + ".join(segment.get("variants_in_group", [m["label"]]))
        if group in rows:
            continue
        metrics = pd.read_csv(done.parent / "metrics.csv")
        train, hessian, wall = metrics.train_time_s.sum(), metrics.hessian_time_s.fillna(0).sum(), metrics.wall_time_s.sum()
        replicas = segment.get("replicas_in_group", m.get("replicas_in_group", 1))
        config = json.loads((done.parent / "config.json").read_text())
        rows[group] = {"group": group, "replicas": replicas, "passes": len(metrics),
                       "minibatch": int(config["batch_size"]) > 1, "engine": segment.get("engine", ""),
                       "wall_time_s": m["wall_time_s"], "steps_s": train - hessian, "hessian_s": hessian,
                       "evaluation_s": wall - train, "rest_s": m["wall_time_s"] - wall,
                       "updates_per_s": replicas * int(config["train_size"]) * len(metrics) / (train - hessian)}
    return pd.DataFrame(list(rows.values()))


def bench_rate(bench: pd.DataFrame, replicas: int, minibatch: bool, mixed: bool) -> tuple:
    """(pattern-updates per second one process would reach at `replicas`, the bench case it
    comes from): per-pattern groups from the two-process kernel rows (the grid runs two groups
    side by side; a group of several variants from the mixed-group row), minibatch groups from
    the one-process lockstep Adam (kernel) rows. A step costs what its lanes cost, filled or
    not (blocks x width; the widths run at about the same rate per lane here), so a bench row of
    K_b replicas on L_b lanes implies rate x (K / K_b) x (L_b / L) for K replicas on L lanes
    (blocks at the width each takes here, `width_for`); the row whose lanes are nearest is used."""
    from . import grid
    from .bench import GRID_CASE, MINIBATCH_CASE

    cpu = bench[bench.device == "cpu"]
    if minibatch:
        rows, processes = cpu[cpu.case == f"{MINIBATCH_CASE} (kernel)"], 1
    elif mixed and cpu.case.str.startswith(GRID_CASE).any():
        rows, processes = cpu[cpu.case.str.startswith(GRID_CASE)], 2
    else:
        rows, processes = cpu[cpu.case == "2 processes side by side: fit, kernel"], 2
    if not len(rows):
        return float("nan"), "none"

    def lanes(k, width):
        width = int(width) if pd.notna(width) else grid.width_for(k)
        return grid.blocks(k, width) * width

    mine = lanes(replicas, grid.width_for(replicas))
    row_lanes = [lanes(int(k), w) for k, w in zip(rows.replicas, rows.width if "width" in rows else [None] * len(rows))]
    i = min(range(len(rows)), key=lambda j: (abs(row_lanes[j] - mine), abs(rows.replicas.iloc[j] - replicas)))
    rate = rows.patterns_per_s_total.iloc[i] / processes * replicas / rows.replicas.iloc[i] * row_lanes[i] / mine
    return float(rate), f"{rows.case.iloc[i].split(':')[0]}, K={rows.replicas.iloc[i]}"


def split_markdown(table: pd.DataFrame, bench: pd.DataFrame, wall_s: float | None, load: str) -> list:
    lines = ["", "## Where each group's time goes", "",
             "Seconds of each group (its first run's record; the runs of a group share every pass): the kernel "
             "steps (training time minus the h_kk estimate), the h_kk estimates, evaluation (test set after every "
             "pass), and the rest of its wall time (start-up, loading the data, the final evaluation on the "
             "training set). *steps/s*: pattern-updates per second of its steps; *bench*: what the bench's row of "
             "the nearest lane count implies for a process at this K (results/bench.csv; a step costs what its "
             "lanes cost, filled or not, so the rate scales with K / lanes: `experiments.timing.bench_rate`); "
             "*ratio*: steps/s over bench (below 0.8: more than 20% slower than the bench implies).", "",
             "| group | K | engine | wall s | steps s | h_kk s | evaluation s | rest s | steps/s | bench | ratio |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table.itertuples():
        rate, case = bench_rate(bench, r.replicas, r.minibatch, " + " in r.group)
        lines.append(f"| {r.group} | {r.replicas} | {r.engine} | {r.wall_time_s:.0f} | {r.steps_s:.0f} | "
                     f"{r.hessian_s:.0f} | {r.evaluation_s:.0f} | {r.rest_s:.0f} | {r.updates_per_s:,.0f} | "
                     f"{rate:,.0f} ({case}) | {r.updates_per_s / rate:.2f} |")
    if wall_s:
        lines += ["", f"Wall time of the whole command, measured end to end: **{wall_s / 60:.1f} min**."]
    if load:
        lines += ["", load]
    return lines


def load_line(path: Path) -> str:
    """The machine's load while the grid ran, from a log of /proc/loadavg lines."""
    import multiprocessing

    values = [float(line.split()[1]) for line in Path(path).read_text().splitlines() if len(line.split()) > 1]
    if not values:
        return ""
    return (f"Machine load while it ran (1-minute load average, sampled every 30 s, {len(values)} samples): median "
            f"{pd.Series(values).median():.2f}, range {min(values):.2f}-{max(values):.2f}, on "
            f"{multiprocessing.cpu_count()} cores.")


def ablate_order(groups) -> list:
    """The position of each group (its variants joined by " + ") in the order `ablate --all` starts them."""
    order = [frozenset(label for label, _ in runs) for _, runs in plan(list(VARIANTS), GRID_BUDGET)]
    return [order.index(v) if v in order else len(order) for v in (frozenset(g.split(" + ")) for g in groups)]


@command()
@click.option("--out", type=click.Path(file_okay=False, exists=True), required=True,
              help="The results folder of the timing run (holding runs/).")
@click.option("--epochs", type=click.IntRange(min=1), default=20, show_default=True, help="Passes to project to.")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--bench", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A bench.csv: add each group's time split and its steps' rate against the bench's.")
@click.option("--wall-s", type=click.FloatRange(min=0), default=None, help="The command's measured wall time (s).")
@click.option("--load", "load_log", type=click.Path(dir_okay=False, exists=True), default=None,
              help="A log of /proc/loadavg lines taken while the grid ran.")
@one_line_errors
def main(out, epochs, jobs, bench, wall_s, load_log):
    """Project the grid's wall time from a timing run (and split each group's time); write <out>/timing.md."""
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
    if bench:
        lines += split_markdown(split(Path(out) / "runs"), pd.read_csv(bench), wall_s,
                                load_line(load_log) if load_log else "")
    atomic_write_text(Path(out) / "timing.md", "\n".join(lines) + "\n")
    click.echo("\n".join(lines))


if __name__ == "__main__":
    main()
