"""Single-factor ablations of LeNet-5 over seeds, then the tables and figures in results/.

    python -m experiments.ablate --all                  # the grid: 3 seeds x 20 passes each
    python -m experiments.ablate --only paper --only mle --seeds 5
    python -m experiments.ablate --quick                # whole pipeline in minutes, into results/quick
    python -m experiments.ablate --list

Each variant's seeds train in lockstep in one process; `--jobs 2` runs two variants side by
side. Every run has a folder named by the hash of its config under <out>/runs: finished runs
are skipped, a killed command resumes where it stopped, a failed run (e.g. a diverging loss)
is recorded with its reason and the others go on. At the end `experiments.report` rebuilds
the tables and figures from the run folders.
"""

from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import time
from pathlib import Path

import click
import torch

from lenet1998.data import load_mnist
from lenet1998.results import RunFolder, check_writable, train_runs

from .common import data_dir_option, device_option, engine_option, one_line_errors, resolve_device
from .report import build_report
from .variants import VARIANTS, budget

QUICK = {"epochs": 1, "train_size": 2000, "seeds": 2}


def run_job(name, config, seeds, root, data_dir, device, threads, engine):
    """Train one variant's seeds (in lockstep) into run folders; runs in a worker process."""
    torch.set_num_threads(threads)
    data = load_mnist(data_dir, download=False)
    t0 = time.perf_counter()

    def report(pass_number, results):
        elapsed = time.perf_counter() - t0
        done = pass_number - results[0].history[0]["pass"] + 1
        left = elapsed / done * (config.epochs - pass_number)
        tests = " ".join(f"{r.history[-1]['test_error']:.2f}" for r in results)
        failed = [r.seed for r in results if r.failed]
        click.echo(f"[{name}] pass {pass_number}/{config.epochs} test % by seed: {tests}"
                   f"{f'  failed seeds {failed}' if failed else ''}  ({elapsed / 60:.1f} min, ~{left / 60:.1f} min left)")

    train_runs(config, seeds, root, data, name, device, on_pass=report, engine=engine)
    return name


def validate_names(ctx, param, names):
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise click.BadParameter(f"unknown variant(s) {unknown}; valid: {list(VARIANTS)}")
    return names


@click.command()
@click.option("--all", "run_all", is_flag=True, help="Run every variant.")
@click.option("--only", "names", multiple=True, callback=validate_names, help="Run this variant (repeatable).")
@click.option("--list", "list_only", is_flag=True, help="List the variants and exit.")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Seeds per variant (default 3).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Passes per run (default 20).")
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True, help="Variants trained side by side.")
@click.option("--out", type=click.Path(file_okay=False), default=None,
              help="Results folder (default results/, or results/quick with --quick).")
@click.option("--quick", is_flag=True, help="1 pass on 2,000 patterns, 2 seeds: a smoke check of the pipeline.")
@data_dir_option
@device_option
@engine_option
@one_line_errors
def main(run_all, names, list_only, seeds, epochs, jobs, out, quick, data_dir, device, engine):
    """Train the ablation grid and rebuild results/ from the run folders."""
    if list_only:
        for v in VARIANTS.values():
            click.echo(f"{v.name:16s} {v.what}")
        return
    if not (run_all or names or quick):
        raise click.UsageError("say which variants: --all, --only NAME, or --quick (or --list)")
    selected = list(VARIANTS) if run_all or (quick and not names) else list(dict.fromkeys(names))
    seeds = seeds or (QUICK["seeds"] if quick else 3)
    epochs = epochs or (QUICK["epochs"] if quick else 20)
    train_size = QUICK["train_size"] if quick else 60000
    out = Path(out or ("results/quick" if quick else "results"))
    device = resolve_device(device)
    root = check_writable(out / "runs")
    load_mnist(data_dir)  # fail early, with one line, if the data is missing or corrupt

    jobs_todo = []
    for name in selected:
        config = budget(VARIANTS[name].config, epochs, train_size)
        missing = [s for s in range(seeds) if not RunFolder(root, config.replace(seed=s)).done]
        if missing:
            jobs_todo.append((name, config, missing))
    skipped = len(selected) * seeds - sum(len(m) for _, _, m in jobs_todo)
    click.echo(f"{len(selected)} variants x {seeds} seeds x {epochs} passes: {skipped} runs already done, "
               f"{sum(len(m) for _, _, m in jobs_todo)} to train in {len(jobs_todo)} groups, {jobs} at a time")
    t0 = time.perf_counter()
    args = [(name, config, missing, root, data_dir, device, 1, engine) for name, config, missing in jobs_todo]
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
    readme = None if quick else Path(__file__).resolve().parent.parent / "README.md"
    paths = build_report(out, seeds=seeds, epochs=epochs, train_size=train_size, data_dir=data_dir, readme=readme)
    click.echo("wrote " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
