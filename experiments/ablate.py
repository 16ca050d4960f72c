"""Single-factor ablations of LeNet-5 over seeds, then the tables and figures in results/.

    python -m experiments.ablate --all                  # the grid: 3 seeds x 20 passes each
    python -m experiments.ablate --only paper --only mle --seeds 5
    python -m experiments.ablate --family road --family add_one_in   # each family's own seed count
    python -m experiments.ablate --quick                # whole pipeline in minutes, into results/quick
    python -m experiments.ablate --list

The runs train in lockstep groups, one process each: by default the runs that share the paper's
layer shapes (11 variants, 33 runs) in two groups of 18 and 15 replicas, and each other
variant's seeds in a group (`--lockstep variant`: one group per variant); `--jobs 2` runs two
groups side by side. Every run has a folder named by the hash of its config under <out>/runs: finished runs
are skipped, a killed command resumes where it stopped, a failed run (e.g. a diverging loss)
is recorded with its reason and the others go on. At the end `experiments.report` rebuilds
the tables and figures from the run folders (of today's single-factor grid).

`--all` is today's single-factor grid (family "single", 3 seeds unless --seeds). `--family NAME`
adds every variant of a family (experiments/variants.py) with that family's default seed count
(FAMILY_SEEDS) unless --seeds is given. Variants with the same config share their runs.

On a cluster (README, "Running on a cluster"): the same command with `--launcher submitit`
submits the groups as one SLURM job array (experiments/grid.py), e.g.

    python -m experiments.ablate --all --launcher submitit --partition cpu --log-dir results/slurm
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import click

from lenet1998.data import load_mnist
from lenet1998.results import RunFolder, check_writable

from .common import (
    command,
    data_dir_option, device_option, engine_option, exit_if_all_failed, one_line_errors, resolve_device,
)
from .grid import (
    GRID as GRID_BUDGET, QUICK, blocks, jobs_of, launch_from_options, launcher_options, plan, width_for,
)
from .docs import repository_docs
from .report import MAX_SEEDS, build_report
from .variants import FAMILY_SEEDS, GRID, VARIANTS, family


def selection(run_all: bool, names, families, seeds, quick: bool):
    """(variant names, seeds: an int or {name: seeds}) of a command line. --all: today's
    single-factor grid (also --quick alone); --only and --family add to it. Seeds: --seeds for
    every variant; else a --family's variants get their own seed count (Variant.seeds) or else
    FAMILY_SEEDS of their family, and the others 3
    (--quick: 2 for all)."""
    chosen = list(GRID) if run_all or (quick and not names and not families) else []
    selected = list(dict.fromkeys(chosen + list(names) + [n for f in families for n in family(f)]))
    default = QUICK.seeds if quick else GRID_BUDGET.seeds
    if seeds is None and families and not quick:
        from_family = {n: VARIANTS[n].seeds or FAMILY_SEEDS[f] for f in families for n in family(f)}
        return selected, {n: from_family.get(n, default) for n in selected}
    return selected, seeds or default


def planned_seeds(out: Path, selected, seeds, budget) -> dict:
    """{variant: seeds}: the seed plan's count for the planned variants, `seeds` for the rest."""
    from .ablation_tables import collect_runs, seed_plan

    plan_ = seed_plan(collect_runs(out, MAX_SEEDS, budget.epochs, budget.train_size))
    planned = dict(zip(plan_.variant, plan_.seeds)) if len(plan_) else {}
    if not planned:
        raise click.UsageError("--seed-plan: no seed plan yet (it needs seeds 0-9 of `paper`; see results/seed_plan.md)")
    return {n: int(planned[n]) if n in planned else (seeds if isinstance(seeds, int) else seeds[n]) for n in selected}


def validate_names(ctx, param, names):
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise click.BadParameter(f"unknown variant(s) {unknown}; valid: {list(VARIANTS)}")
    return names


@command()
@click.option("--all", "run_all", is_flag=True, help="Run every variant.")
@click.option("--only", "names", multiple=True, callback=validate_names, help="Run this variant (repeatable).")
@click.option("--family", "families", multiple=True, type=click.Choice(list(FAMILY_SEEDS)),
              help="Run every variant of this family, with its default seed count unless --seeds (repeatable).")
@click.option("--list", "list_only", is_flag=True, help="List the variants and their families, and exit.")
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help="Seeds per variant (default 3; with --family, the family's own count).")
@click.option("--seed-plan", is_flag=True,
              help="Train each single-factor variant to the seed count of results/seed_plan.md (chosen from the "
                   "spreads of its seeds 0-9; experiments.report.seed_plan); variants not planned yet keep --seeds.")
@click.option("--epochs", type=click.IntRange(min=1), default=None,
              help=f"Passes per run (default {GRID_BUDGET.epochs}).")
@click.option("--train-size", type=click.IntRange(min=100, max=GRID_BUDGET.train_size), default=None,
              help=f"Training patterns per pass, the first N (default {GRID_BUDGET.train_size:,}; --quick {QUICK.train_size:,}).")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True, help="Groups trained side by side.")
@click.option("--lockstep", type=click.Choice(["architecture", "variant"]), default="architecture", show_default=True,
              help="Train in one lockstep group every run that shares an architecture, or each variant's seeds alone.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Results folder (default results/, or results/quick with --quick).")
@click.option("--quick", is_flag=True, help=f"{QUICK.epochs} pass on {QUICK.train_size:,} patterns, {QUICK.seeds} seeds: "
              "a smoke check of the pipeline.")
@click.option("--max-group", type=click.IntRange(min=1), default=None,
              help="Replicas per lockstep group at most (default: two blocks of the kernel's lanes, 16 or 32; "
                   "a GPU job can hold more: --device cuda --max-group 64).")
@click.option("--tensorboard", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Also log each run to TensorBoard as it trains, under DIR/<variant>/seed<N> (needs the "
                   "tensorboard extra; runs already done: python -m experiments.report --tensorboard DIR).")
@launcher_options
@data_dir_option
@device_option
@engine_option
@one_line_errors
def main(run_all, names, families, list_only, seeds, seed_plan, epochs, train_size, jobs, lockstep, out, quick, max_group,
         tensorboard, launcher, partition, timeout_min, cpus_per_task, gpus_per_task, array_parallelism, log_dir, data_dir,
         device, engine):
    """Train the ablation grid and rebuild results/ from the run folders."""
    if list_only:
        for v in VARIANTS.values():
            click.echo(f"{v.name:30s} {v.family:14s} {v.what}")
        return
    if not (run_all or names or families or quick):
        raise click.UsageError("say which variants: --all, --only NAME, --family NAME, or --quick (or --list)")
    if run_all and (names or families):
        raise click.UsageError("--all is the whole single-factor grid: give it alone, or name the variants with "
                               "--only / --family instead")
    selected, seeds = selection(run_all, names, families, seeds, quick)
    budget = QUICK if quick else GRID_BUDGET
    budget = replace(budget, epochs=epochs or budget.epochs, train_size=train_size or budget.train_size)
    out = Path(out or ("results/quick" if quick else "results"))
    if launcher == "local":  # a cluster job finds its device on its node
        device = resolve_device(device)
    root = out / "runs"  # made only once there is something to train (a failed data check leaves nothing behind)
    if seed_plan:
        seeds = planned_seeds(out, selected, seeds, budget)
    if tensorboard:
        from .tensorboard import summary_writer

        summary_writer()  # fail early, with one line, if the extra is missing
        tensorboard = str(Path(tensorboard).resolve())  # the same folder from a worker or a cluster job

    groups = plan(selected, budget, root, seeds, lockstep, max_group)
    if groups:  # fail early, with one line, if the data is missing or corrupt; nothing to train: no data needed
        load_mnist(data_dir)
        root = check_writable(root)
    todo = sum(len(runs) for _, runs in groups)
    counts = {n: seeds if isinstance(seeds, int) else seeds[n] for n in selected}
    distinct = len({budget.apply(VARIANTS[n].config).replace(seed=s) for n in selected for s in range(counts[n])})
    per = f"{seeds} seeds" if isinstance(seeds, int) else f"{min(counts.values())}-{max(counts.values())} seeds"
    at_once = f"{jobs} at a time" if launcher == "local" else f"as one {launcher} job array"
    click.echo(f"{len(selected)} variants x {per} x {budget.epochs} passes: {distinct} distinct runs, {distinct - todo} "
               f"already done, {todo} to train in {len(groups)} lockstep groups, {at_once}")
    for name, runs in groups:
        width = width_for(len(runs))
        click.echo(f"  group of {len(runs)} ({len(runs)} lanes of {blocks(len(runs), width) * width} in "
                   f"{blocks(len(runs), width)} kernel blocks of {width}): {name}")
    launch_from_options(jobs_of(groups, root, data_dir, device, engine, workers=jobs, tensorboard=tensorboard),
                        launcher, jobs, partition,
                        timeout_min, cpus_per_task, gpus_per_task, array_parallelism, log_dir)
    epochs, train_size = budget.epochs, budget.train_size
    report_seeds = QUICK.seeds if quick else MAX_SEEDS  # the report reads every seed it finds
    paths = build_report(out, seeds=report_seeds, epochs=epochs, train_size=train_size, data_dir=data_dir,
                         readme=repository_docs(out, quick, report_seeds, epochs))
    click.echo("wrote " + ", ".join(str(p) for p in paths))
    exit_if_all_failed([f for name in selected for seed in range(counts[name])
                        if (f := RunFolder(root, budget.apply(VARIANTS[name].config).replace(seed=seed))).done])


if __name__ == "__main__":
    main()
