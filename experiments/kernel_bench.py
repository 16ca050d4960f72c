"""Per-pattern training speed of the compiled C kernel against the torch engines, in one run.

    python -m experiments.kernel_bench                  # ~2000 patterns per case, a few minutes
    python -m experiments.kernel_bench --patterns 500   # a quick look

Cases, all on one torch thread, one pattern per replica per update:
  plain     the reference: experiments.bench.plain_per_pattern, a plain per-pattern PyTorch loop
            over one K = 1 model (forward, MAP loss, backward, w -= eps g);
  compiled  the torch engine: lenet1998.train.compiled_pattern_step on a K = 16 group, fed one
            pattern per replica per call as `fit` does (compiling happens before the clock);
  kernel    lenet1998.engine.kernel at K = 8, 16, 24, 32: `steps` on chunks of patterns (as `fit`
            would feed it) and, for comparison, `step` one pattern at a time.
Each case reports pattern-updates per second (patterns x replicas / s), in wall-clock time and
in the process's own CPU time (the machine may be shared: CPU time is what one core gives when
it is not), the ratio to the plain loop in the same measure, and the GFLOP/s this implies at
~1.7 MFLOP per pattern and replica (forward and backward, perf/NOTES.md). Not a test.

    python -m experiments.kernel_bench --profile        # CPU time per stage of the kernel, K = 8
    python -m experiments.kernel_bench --out results/kernel_bench.md   # also write the table

Layer shapes (--variants): for each named variant of experiments/variants.py (its config, seeds
0..K-1), the compiled torch group and the kernel (`steps` on chunks) at the same K, and the
kernel's speed-up over the compiled group in the same run and measure:

    python -m experiments.kernel_bench --variants paper,avg_pool,max_pool,linear_softmax,modern+sdlm \
        --patterns 500 --out results/kernel_bench_variants.md
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch

from lenet1998.config import LeNetConfig
from lenet1998.data import encode, load_mnist
from lenet1998.engine import kernel
from lenet1998.engine.replicas import TorchGroup, stack
from lenet1998.model import LeNet5
from lenet1998.results import atomic_write_text, cpu_model

from .bench import plain_per_pattern
from .common import command, data_dir_option, one_line_errors
from .variants import VARIANTS

FLOP_PER_PATTERN = 1.7e6


class Clock:
    """Wall and CPU seconds between start() and stop()."""

    def start(self):
        self.wall, self.cpu = time.perf_counter(), time.process_time()

    def stop(self):
        self.wall, self.cpu = time.perf_counter() - self.wall, time.process_time() - self.cpu
        return self


def group(K, base=LeNetConfig()):
    """K configs (`base` with seeds 0..K-1) and their initial parameters in the stacked layout."""
    configs = [base.replace(seed=s) for s in range(K)]
    return configs, stack([LeNet5(c).initialize() for c in configs])


def inputs(data, n, K, coding="paper"):
    """Replica k's patterns in its own random order: x (n, K, 32, 32), y (n, K)."""
    coded = encode(data.train_images[:n], coding)
    g = torch.Generator().manual_seed(K)
    order = torch.stack([torch.randperm(n, generator=g) for _ in range(K)], 1)  # (n, K)
    return coded[order].contiguous(), data.train_labels[order].long().contiguous()


def plain(data, n):
    clock = Clock()
    plain_per_pattern(data, n, "cpu", ready=clock.start)
    return clock.stop()


def compiled(data, n, K=16, base=LeNetConfig()):
    configs, params = group(K, base)
    g = TorchGroup(configs, compiled=True)
    g.load(params)
    x, y = inputs(data, n, K, base.input_coding)
    g.step(x[0], y[0])  # compile (steps are zero)
    g.set_steps({name: torch.full_like(p, 1e-4) for name, p in params.items()})
    clock = Clock()
    clock.start()
    for t in range(n):
        g.step(x[t], y[t])
    return clock.stop()


def kernel_case(data, n, K, chunked=True, chunk=2000, base=LeNetConfig()):
    configs, params = group(K, base)
    g = kernel.for_configs(configs)
    g.load(params)
    g.set_steps({name: torch.full_like(p, 1e-4) for name, p in params.items()})
    x, y = inputs(data, n, K, base.input_coding)
    g.steps(x[:5], y[:5])  # warm: pages touched, library loaded
    clock = Clock()
    clock.start()
    if chunked:
        for s in range(0, n, chunk):
            g.steps(x[s:s + chunk], y[s:s + chunk])
    else:
        for t in range(n):
            g.step(x[t], y[t])
    return clock.stop()


def stages(data, n, K=8, repeats=5):
    """CPU time per step of each stage for one block of 8 replicas: the least of `repeats` runs
    over n patterns (the least is the one least disturbed by other processes)."""
    configs, params = group(K)
    g = kernel.for_configs(configs, profile=True)
    g.load(params)
    g.set_steps({name: torch.full_like(p, 1e-4) for name, p in params.items()})
    x, y = inputs(data, n, K)
    g.steps(x[:5], y[:5])
    g.stage_times()
    best = None
    for _ in range(repeats):
        clock = Clock()
        clock.start()
        g.steps(x, y)
        times = {"whole step": clock.stop().cpu, **g.stage_times()}
        best = times if best is None else {s: min(best[s], t) for s, t in times.items()}
    click.echo(f"CPU time per step of {K} replicas (least of {repeats} runs of {n} patterns):")
    for s, t in best.items():
        click.echo(f"  {s:<26} {t / n * 1e6:7.1f} us")


@command()
@click.option("--patterns", type=click.IntRange(min=10), default=2000, show_default=True,
              help="Patterns per replica in each case.")
@click.option("--replicas", default="8,16,24,32", show_default=True, help="Kernel group sizes K.")
@click.option("--skip-compiled", is_flag=True, help="Leave out the torch.compile case (slow to compile).")
@click.option("--profile", is_flag=True, help="Only the kernel's CPU time per stage (a -DLK_PROFILE build), K = 8.")
@click.option("--out", type=click.Path(dir_okay=False), default=None, help="Also write the table (markdown) here.")
@click.option("--variants", default="", help="Comma-separated variants (experiments/variants.py): the compiled "
              "group against the kernel at the same K for each one's layer shapes, in place of the K sweep.")
@data_dir_option
@one_line_errors
def main(patterns, replicas, skip_compiled, profile, out, variants, data_dir):
    """Measure pattern-updates/s of the plain loop, the compiled torch group and the C kernel."""
    torch.set_num_threads(1)
    if not kernel.available():
        raise click.ClickException(f"the kernel is not available here: {kernel.reason()}")
    data = load_mnist(data_dir, download=False)
    n = patterns
    if profile:
        stages(data, n)
        return
    if variants:
        by_variant(data, n, [v for v in variants.split(",") if v], int(replicas.split(",")[0]), out)
        return
    rows = []

    def add(case, K, clock):
        rows.append((case, K, n * K / clock.wall, n * K / clock.cpu))
        case_, K_, wall, cpu = rows[-1]
        click.echo(f"  {case_:<28} K={K_:>2}: {wall:8.0f} /s wall  {cpu:8.0f} /s cpu", err=True)

    add("plain per-pattern loop", 1, plain(data, n))
    if not skip_compiled:
        add("compiled torch group", 16, compiled(data, n))
    for K in (int(k) for k in replicas.split(",")):
        add("kernel, steps (chunks)", K, kernel_case(data, n, K, chunked=True))
        add("kernel, step (one pattern)", K, kernel_case(data, n, K, chunked=False))

    _, _, ref_wall, ref_cpu = rows[0]
    lines = [f"{n} patterns per replica and case on one torch thread ({cpu_model()}); pattern-updates/s = "
             f"patterns x replicas / s, in wall-clock and process-CPU time; ratios to the plain loop in the "
             f"same measure; GFLOP/s at {FLOP_PER_PATTERN / 1e6:.1f} MFLOP per pattern and replica. Where "
             f"the machine is shared with other jobs, wall and CPU time part and CPU time is the fairer "
             f"measure of one core.",
             "", "| case | K | updates/s (wall) | x plain | updates/s (cpu) | x plain | GFLOP/s (cpu) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for case, K, wall, cpu in rows:
        lines.append(f"| {case} | {K} | {wall:.0f} | {wall / ref_wall:.1f} | {cpu:.0f} | {cpu / ref_cpu:.1f} | "
                     f"{cpu * FLOP_PER_PATTERN / 1e9:.1f} |")
    click.echo("\n" + "\n".join(lines))
    if out:
        command = f"python -m experiments.kernel_bench --patterns {n} --replicas {replicas}" + (
            " --skip-compiled" if skip_compiled else "")
        atomic_write_text(Path(out), f"# The compiled kernel against the torch engines\n\n`{command}`\n\n"
                          + "\n".join(lines) + "\n")
        click.echo(f"wrote {out}", err=True)


def by_variant(data, n, names, K, out):
    """The compiled torch group and the kernel at the same K for each variant's layer shapes."""
    unknown = [v for v in names if v not in VARIANTS]
    if unknown:
        raise click.ClickException(f"unknown variant(s) {unknown}; valid: {list(VARIANTS)}")
    rows = []
    for name in names:
        base = VARIANTS[name].config
        why = kernel.unsupported([base])
        if why:
            raise click.ClickException(f"{name}: {why}")
        comp = compiled(data, n, K, base)
        kern = kernel_case(data, n, K, chunked=True, base=base)
        rows.append((name, *(n * K / getattr(c, m) for c in (comp, kern) for m in ("wall", "cpu"))))
        click.echo(f"  {name:<16} K={K}: compiled {rows[-1][1]:7.0f} /s wall {rows[-1][2]:7.0f} /s cpu; "
                   f"kernel {rows[-1][3]:7.0f} /s wall {rows[-1][4]:7.0f} /s cpu", err=True)
    lines = [f"{n} patterns per replica and case, K = {K} replicas of each variant's config (seeds 0..{K - 1}), "
             f"one torch thread ({cpu_model()}); pattern-updates/s = patterns x replicas / s, in wall-clock and "
             f"process-CPU time; the kernel's speed-up over the compiled torch group (torch.compile, compiled "
             f"before the clock) in the same measure, both measured in this run.",
             "", "| variant | compiled (wall) | kernel (wall) | x compiled | compiled (cpu) | kernel (cpu) | x compiled |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for name, cw, cc, kw, kc in rows:
        lines.append(f"| {name} | {cw:.0f} | {kw:.0f} | {kw / cw:.1f} | {cc:.0f} | {kc:.0f} | {kc / cc:.1f} |")
    click.echo("\n" + "\n".join(lines))
    if out:
        command = f"python -m experiments.kernel_bench --variants {','.join(names)} --replicas {K} --patterns {n}"
        atomic_write_text(Path(out), f"# The compiled kernel against the compiled torch group, per variant\n\n"
                          f"`{command}`\n\n" + "\n".join(lines) + "\n")
        click.echo(f"wrote {out}", err=True)


if __name__ == "__main__":
    main()
