"""Train LeNet-5 as the paper does (20 passes of per-pattern SDLM) and write a run folder.

    python -m experiments.train --seed 0
    python -m experiments.train --seed 0 --seed 1 --set loss=mle   # two seeds in lockstep
    python -m experiments.train --seed 0 --set val_size=10000      # val_error per pass, on the last 10,000
    python -m experiments.train --seed 0 --tensorboard runs-tb     # then: tensorboard --logdir runs-tb

Expected (paper config, seed 0, one core): a pass takes about 20 s with the C kernel (about 20
minutes for 20 passes through the plain PyTorch engines); final test error near 1% (the paper:
0.95%). A killed run resumes from its last finished pass when the same command is run again.
"""

from __future__ import annotations

import sys
import time

import click
import torch

from lenet1998.config import LeNetConfig
from lenet1998.data import load_mnist
from lenet1998.results import RunFolder, check_writable

from .common import (
    command,
    SET_HELP, data_dir_option, device_option, engine_option, exit_if_all_failed, one_line_errors, parse_overrides,
    resolve_device, threads_option,
)
from .grid import train_runs
from .variants import label_of

EXIT_BUSY = 75  # EX_TEMPFAIL: a run is being trained by another process; try again later


@command()
@click.option("--seed", "seeds", type=click.IntRange(min=0), multiple=True, default=(0,), show_default=True,
              help="Seed; repeat to train several seeds in lockstep.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Passes (default: the paper's 20).")
@click.option("--set", "overrides", multiple=True, metavar="FIELD=VALUE",
              help=SET_HELP)
@click.option("--out", type=click.Path(file_okay=False), default="results/runs", show_default=True,
              help="Folder of run folders.")
@click.option("--label", default=None, help="Name stored with the run (default: the variant of "
              "experiments/variants.py whose config it has, else `train`).")
@click.option("--tensorboard", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Also log each run to TensorBoard as it trains, under DIR/<label>/seed<N> (the default label: "
                   "the variant whose config the run has, if any; needs the tensorboard extra).")
@data_dir_option
@device_option
@threads_option
@engine_option
@one_line_errors
def main(seeds, epochs, overrides, out, label, tensorboard, data_dir, device, threads, engine):
    """Train the paper's LeNet-5 (or a variant of it via --set) on MNIST."""
    torch.set_num_threads(threads)
    changes = parse_overrides(overrides)
    if epochs is not None:
        changes["epochs"] = epochs
    config = LeNetConfig(**changes)
    label = label or label_of(config)
    device = resolve_device(device)
    root = check_writable(out)
    data = load_mnist(data_dir)
    tb = None
    if tensorboard:  # before training: a missing extra fails at once
        from .tensorboard import TensorBoardLog, run_label, run_name

        tb = TensorBoardLog(tensorboard)
        runs = {s: config.replace(seed=s) for s in seeds}
        logged = {s: (RunFolder(root, c).path, run_name(run_label(label, c), s)) for s, c in runs.items()}
    t0 = time.perf_counter()
    bar = {"last": 0.0}

    def progress(done, total):
        now = time.perf_counter()
        if now - bar["last"] > 2 or done == total:
            bar["last"] = now
            click.echo(f"\r  {done:6d}/{total} patterns [{(now - t0) / 60:5.1f} min]", nl=False, err=True)

    def report(pass_number, results):
        click.echo("", err=True)
        for r in results:
            h = r.history[-1]
            click.echo(f"seed {r.seed} pass {pass_number:2d}/{config.epochs}: eta {h['eta']:.0e} "
                       f"train {h['train_error']:.2f}% (on the fly) test {h['test_error']:.2f}% "
                       + (f"val {h['val_error']:.2f}% " if "val_error" in h else "") +
                       f"loss {h['train_loss']:.4f} [{h['wall_time_s']:.0f} s]"
                       + (f"  FAILED: {r.failed}" if r.failed else ""))
            if tb is not None:  # the rows of metrics.csv (written before this call) not yet logged
                tb.log(*logged[r.seed])

    for seed in seeds:
        if RunFolder(root, config.replace(seed=seed)).done:
            click.echo(f"already done: {RunFolder(root, config.replace(seed=seed)).path} (seed {seed})", err=True)
    folders = train_runs(config, seeds, root, data, label, device, on_pass=report, on_progress=progress, engine=engine)
    if tb is not None:  # runs finished before this command: log them too
        for seed in seeds:
            tb.log(*logged[seed])
        tb.close()
    for f in folders:
        click.echo(f"run folder: {f.path}")
    busy = [f for f in folders if not f.done]
    if busy:  # another process holds their lock: their results are not there yet (`train && predict` must stop)
        click.echo(f"error: {len(busy)} run(s) not finished: another process is training {busy[0].path}; run this "
                   "command again when it ends", err=True)
        sys.exit(EXIT_BUSY)
    exit_if_all_failed(folders)


if __name__ == "__main__":
    main()
