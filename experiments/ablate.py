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
"""

from __future__ import annotations

import concurrent.futures as cf
import math
import multiprocessing
import time
from pathlib import Path

import click
import torch

from lenet1998.data import load_mnist
from lenet1998.engine import handles, lockstep_key
from lenet1998.results import RunFolder, check_writable, train_group

from .common import (
    data_dir_option, device_option, engine_option, exit_if_all_failed, one_line_errors, resolve_device,
)
from .report import MAX_SEEDS, build_report, repository_docs
from .variants import FAMILY_SEEDS, GRID, VARIANTS, budget, family

QUICK = {"epochs": 1, "train_size": 2000, "seeds": 2}


def run_job(name, runs, root, data_dir, device, threads, engine, tensorboard=None):
    """Train one lockstep group, runs [(label, config with its seed), ...], into run folders;
    runs in a worker process. tensorboard: a folder to log each run to as its passes finish."""
    torch.set_num_threads(threads)
    tb = None
    if tensorboard:
        from .tensorboard import TensorBoardLog, run_name

        tb = TensorBoardLog(tensorboard)
        logged = {(label, c.seed): (RunFolder(root, c).path, run_name(label, c.seed)) for label, c in runs}
    data = load_mnist(data_dir, download=False)
    epochs = runs[0][1].epochs
    t0 = time.perf_counter()

    def report(pass_number, labelled):
        elapsed = time.perf_counter() - t0
        done = pass_number - labelled[0][1].history[0]["pass"] + 1
        left = elapsed / done * (epochs - pass_number)
        by_label = {}
        for label, r in labelled:
            by_label.setdefault(label, []).append(f"{r.history[-1]['test_error']:.2f}{' (failed)' if r.failed else ''}")
        tests = "; ".join(f"{label} {' '.join(t)}" for label, t in by_label.items())
        click.echo(f"[{name}] pass {pass_number}/{epochs} test % by seed: {tests}"
                   f"  ({elapsed / 60:.1f} min, ~{left / 60:.1f} min left)")
        if tb is not None:  # the rows of each metrics.csv (written before this call) not yet logged
            for label, r in labelled:
                tb.log(*logged[label, r.seed])

    train_group(runs, root, data, device, on_pass=report, engine=engine)
    if tb is not None:
        tb.close()
    return name


MAX_GROUP = 18  # replicas per lockstep group: throughput per process levels off from about 16


def plan(names, seeds: int, epochs: int, train_size: int, root: Path, lockstep: str = "architecture",
         max_group: int = MAX_GROUP) -> list:
    """The lockstep groups that train the runs not yet done: [(group name, [(variant, config), ...])].

    seeds: the seeds of every variant, or {variant: seeds}. A run whose config an earlier variant
    of `names` already has is planned once, under that variant's name.

    lockstep "variant": one group per variant (its seeds). "architecture": the runs whose configs
    share a lockstep key (lenet1998.engine.lockstep_key) train together (e.g. the 11 variants of the paper's layer
    shapes: paper, full_c3, relu, tanh, mle, sgd, the inits, sum_subsampling, unit_input and
    paper+distortions), split into about equal groups of at most `max_group` replicas, a
    variant's seeds kept together. Each replica still follows its own config
    (tests/test_mixed_groups.py). Largest groups first, so that `--jobs 2` starts them at once.
    """
    by_key, planned = {}, set()
    for name in names:
        config = budget(VARIANTS[name].config, epochs, train_size)
        for seed in range(seeds if isinstance(seeds, int) else seeds[name]):
            run = config.replace(seed=seed)
            if run in planned:  # another variant of the same config (a road step, say): one run
                continue
            planned.add(run)
            if not RunFolder(root, run).done:
                key = (lockstep_key(run) if handles(run) else name) if lockstep == "architecture" else name
                by_key.setdefault(key, {}).setdefault(name, []).append((name, run))
    groups = []
    for variants in by_key.values():
        total = sum(len(runs) for runs in variants.values())
        count = math.ceil(total / max_group)  # about equal groups of at most max_group (whole variants)
        chunks, done = [[] for _ in range(count)], 0
        for runs in variants.values():
            chunks[min(count - 1, int((done + len(runs) / 2) * count / total))] += runs  # by its middle
            done += len(runs)
        groups += [chunk for chunk in chunks if chunk]
    jobs = [(" + ".join(dict.fromkeys(label for label, _ in runs)), runs) for runs in groups]
    return sorted(jobs, key=lambda job: -group_cost(job[1]))


def schedule(durations, jobs: int) -> float:
    """Makespan of running `durations` in order, each on the first free of `jobs` workers
    (how `--jobs` hands the groups out)."""
    workers = [0.0] * jobs
    for d in durations:
        workers[workers.index(min(workers))] += d
    return max(workers)


def group_cost(runs) -> float:
    """A rough relative cost, for ordering: per-pattern runs cost 1, minibatch runs 0.7
    (results/bench.md: Adam K=3 runs at about 1.4x the per-pattern K=3 rate)."""
    return sum(1.0 if config.batch_size == 1 else 0.7 for _, config in runs)


def selection(run_all: bool, names, families, seeds, quick: bool):
    """(variant names, seeds: an int or {name: seeds}) of a command line. --all: today's
    single-factor grid (also --quick alone); --only and --family add to it. Seeds: --seeds for
    every variant; else a --family's variants get FAMILY_SEEDS of their family and the others 3
    (--quick: 2 for all)."""
    chosen = list(GRID) if run_all or (quick and not names and not families) else []
    selected = list(dict.fromkeys(chosen + list(names) + [n for f in families for n in family(f)]))
    default = QUICK["seeds"] if quick else 3
    if seeds is None and families and not quick:
        from_family = {n: FAMILY_SEEDS[f] for f in families for n in family(f)}
        return selected, {n: from_family.get(n, default) for n in selected}
    return selected, seeds or default


def planned_seeds(out: Path, selected, seeds, epochs: int, train_size: int) -> dict:
    """{variant: seeds}: the seed plan's count for the planned variants, `seeds` for the rest."""
    from .report import collect_runs, seed_plan

    plan = seed_plan(collect_runs(out, MAX_SEEDS, epochs, train_size))
    planned = dict(zip(plan.variant, plan.seeds)) if len(plan) else {}
    if not planned:
        raise click.UsageError("--seed-plan: no seed plan yet (it needs seeds 0-9 of `paper`; see results/seed_plan.md)")
    return {n: int(planned[n]) if n in planned else (seeds if isinstance(seeds, int) else seeds[n]) for n in selected}


def validate_names(ctx, param, names):
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise click.BadParameter(f"unknown variant(s) {unknown}; valid: {list(VARIANTS)}")
    return names


@click.command()
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
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Passes per run (default 20).")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True, help="Groups trained side by side.")
@click.option("--lockstep", type=click.Choice(["architecture", "variant"]), default="architecture", show_default=True,
              help="Train in one lockstep group every run that shares an architecture, or each variant's seeds alone.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Results folder (default results/, or results/quick with --quick).")
@click.option("--quick", is_flag=True, help="1 pass on 2,000 patterns, 2 seeds: a smoke check of the pipeline.")
@click.option("--tensorboard", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Also log each run to TensorBoard as it trains, under DIR/<variant>/seed<N> (needs the "
                   "tensorboard extra; runs already done: python -m experiments.report --tensorboard DIR).")
@data_dir_option
@device_option
@engine_option
@one_line_errors
def main(run_all, names, families, list_only, seeds, seed_plan, epochs, jobs, lockstep, out, quick, tensorboard, data_dir,
         device, engine):
    """Train the ablation grid and rebuild results/ from the run folders."""
    if list_only:
        for v in VARIANTS.values():
            click.echo(f"{v.name:30s} {v.family:14s} {v.what}")
        return
    if not (run_all or names or families or quick):
        raise click.UsageError("say which variants: --all, --only NAME, --family NAME, or --quick (or --list)")
    selected, seeds = selection(run_all, names, families, seeds, quick)
    epochs = epochs or (QUICK["epochs"] if quick else 20)
    train_size = QUICK["train_size"] if quick else 60000
    out = Path(out or ("results/quick" if quick else "results"))
    device = resolve_device(device)
    root = check_writable(out / "runs")
    if seed_plan:
        seeds = planned_seeds(out, selected, seeds, epochs, train_size)
    load_mnist(data_dir)  # fail early, with one line, if the data is missing or corrupt
    if tensorboard:
        from .tensorboard import summary_writer

        summary_writer()  # fail early, with one line, if the extra is missing

    groups = plan(selected, seeds, epochs, train_size, root, lockstep)
    todo = sum(len(runs) for _, runs in groups)
    counts = {n: seeds if isinstance(seeds, int) else seeds[n] for n in selected}
    distinct = len({budget(VARIANTS[n].config, epochs, train_size).replace(seed=s) for n in selected for s in range(counts[n])})
    per = f"{seeds} seeds" if isinstance(seeds, int) else f"{min(counts.values())}-{max(counts.values())} seeds"
    click.echo(f"{len(selected)} variants x {per} x {epochs} passes: {distinct} distinct runs, {distinct - todo} "
               f"already done, {todo} to train in {len(groups)} lockstep groups, {jobs} at a time")
    for name, runs in groups:
        click.echo(f"  group of {len(runs)}: {name}")
    t0 = time.perf_counter()
    args = [(name, runs, root, data_dir, device, 1, engine, tensorboard) for name, runs in groups]
    if jobs == 1 or len(args) <= 1:
        for i, a in enumerate(args, 1):
            run_job(*a)
            click.echo(f"== {a[0]} done ({i}/{len(args)} groups, {(time.perf_counter() - t0) / 60:.1f} min)")
    else:
        context = multiprocessing.get_context("spawn")
        with cf.ProcessPoolExecutor(max_workers=jobs, mp_context=context) as pool:
            futures = [pool.submit(run_job, *a) for a in args]
            for i, future in enumerate(cf.as_completed(futures), 1):
                name = future.result()
                elapsed = time.perf_counter() - t0
                left = elapsed / i * (len(args) - i)
                click.echo(f"== {name} done ({i}/{len(args)} groups, {elapsed / 60:.1f} min, ~{left / 60:.1f} min left)")
    report_seeds = QUICK["seeds"] if quick else MAX_SEEDS  # the report reads every seed it finds
    paths = build_report(out, seeds=report_seeds, epochs=epochs, train_size=train_size, data_dir=data_dir,
                         readme=repository_docs(out, quick, report_seeds, epochs))
    click.echo("wrote " + ", ".join(str(p) for p in paths))
    exit_if_all_failed([f for name in selected for seed in range(counts[name])
                        if (f := RunFolder(root, budget(VARIANTS[name].config, epochs, train_size).replace(seed=seed))).done])


if __name__ == "__main__":
    main()
