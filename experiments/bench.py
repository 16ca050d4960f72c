"""Training throughput: the lockstep engine against plain PyTorch loops, measured in one run.

    python -m experiments.bench                 # about 5 minutes on a 2-core CPU
    python -m experiments.bench --patterns 500  # a quick look

Cases, each on the same machine in the same run, one torch thread unless said:
  (a) reference: a plain per-pattern loop (model, loss, backward, per-parameter SDLM step)
      over version 0.1's one-replica network, pinned as the denominator of every ratio, on one
      torch thread and on torch's default thread count (the faster is the reference); and the
      same loop over model.py's readable LeNet5, the reference trainer's network, beside it;
  (b) `fit` with K = 1, 3, 8, 16, 32, 64 replicas, each replica updated after every pattern,
      with the eager, the compiled and (where it builds) the C kernel path; the kernel at the
      width each group takes (`kernel.width_for`) and at every width it builds, forced, so
      that no group is slower than the 8-lane build in the same run; each kernel row with
      its GFLOP/s (1.7 MFLOP per update) and its share of the core's FMA peak, measured
      here (`kernel.fma_peak`);
  (c) minibatch Adam (batch 64): `fit` against a DataLoader + ToTensor loop, one run alone
      (the reference trainer) and K runs in lockstep (lenet1998/engine/minibatch.py: the
      kernel's gradient sums, and vmap);
  (d) both cores: two processes side by side (what `ablate --jobs 2` does), each training
      its own K replicas with the fastest path; then both running the grid's largest
      lockstep group (6 variants of the paper's layer shapes x 3 seeds, each replica with its
      own init, coding, criterion, step rule, S2/S4 reading and distortion pool); and, for
      comparison, two plain loops side by side. Timed from a common start (a barrier after a warm-up chunk) to the last
      process's end, so the total counts only time when both share the machine.
Per case it reports patterns per second per replica and in total, and the ratio of the total
to the reference of its kind. Writes results/bench.csv and results/bench.md, with an estimate
of the wall time of the default ablation grid. `--device cuda` (default where present) runs
cases (a)-(c) there too, recorded beside the CPU rows.

    python -m experiments.bench --networks      # the other networks of Fig. 9, about 2 minutes

`--networks` measures, for each network of lenet1998/networks.py, the plain per-pattern loop
over its module (the reference, one torch thread) against `fit` with K replicas on the vmap
group and on its C kernel (engine/dense.py, engine/convnet.py), and writes
results/bench_networks.csv/.md.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import re
import time
from pathlib import Path

import click
import pandas as pd
import torch

from lenet1998.config import LeNetConfig
from lenet1998.data import encode, load_mnist, resolve_data_dir
from lenet1998.loss import map_loss
from lenet1998.model import LeNet5
from lenet1998.results import atomic_write_text, check_writable, cpu_model, vector_extensions
from lenet1998.engine import CHUNK, kernel, kernel_fits
from lenet1998.engine.replicas import GroupNet
from lenet1998.train import fit

from .common import command, data_dir_option, one_line_errors
from .variants import VARIANTS

GRID_CASE = "2 processes side by side: fit, the grid's mixed group"
FLOP_PER_PATTERN = 1.7e6  # forward + backward + update of one pattern on the paper's network (perf/NOTES.md)
KERNEL_CASE = "fit, per-pattern SDLM, lockstep, kernel"
MINIBATCH_CASE = "fit, Adam b=64, lockstep"


@contextlib.contextmanager
def kernel_width(width):
    """The kernel's block width forced to `width` lanes (None: each group's own, width_for)."""
    old = os.environ.get("LENET1998_KERNEL_WIDTH")
    if width:
        os.environ["LENET1998_KERNEL_WIDTH"] = str(width)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("LENET1998_KERNEL_WIDTH", None)
        else:
            os.environ["LENET1998_KERNEL_WIDTH"] = old


def plain_per_pattern(data, patterns, device, ready=None, network="pinned"):
    """(a) The reference: the loop a PyTorch user writes for batch size 1.

    network "pinned": the one-replica network of version 0.1 (its convolutions as one matrix
    product per pattern; lenet1998/engine/replicas.py GroupNet with K = 1), the denominator of
    every ratio since the first bench, kept so that ratios stay comparable; "reference": the
    readable LeNet5 of lenet1998/model.py (F.conv2d), measured beside it in the same run.
    ready(): called just before the clock starts (the side-by-side case waits there)."""
    config = LeNetConfig()
    if network == "pinned":
        model = GroupNet([config]).to(device)
        model.load_state_dict({k: v.reshape(model.state_dict()[k].shape) for k, v in LeNet5(config).initialize().state_dict().items()})
    else:
        model = LeNet5(config).initialize().to(device)
    def criterion(out, y):  # out (1, 1, 10) pinned, (1, 10) reference
        return map_loss(out, y.view(out.shape[:-1]), config.map_j)

    return plain_loop(model, criterion, data, patterns, 1e-3, device, ready)


def plain_loop(model, criterion, data, patterns, step, device="cpu", ready=None):
    """Seconds for `patterns` per-pattern steps of the loop a PyTorch user writes: forward,
    criterion(out, label), backward, w -= step * g for every parameter. ready(): called just
    before the clock starts."""
    eps = [torch.full_like(p, step) for p in model.parameters()]
    x = encode(data.train_images[:patterns], "paper").to(device)
    y = data.train_labels[:patterns].to(device)
    if ready is not None:
        ready()
    start = time.perf_counter()
    for i in range(patterns):
        loss = criterion(model(x[i:i + 1].unsqueeze(1)), y[i:i + 1]).sum()
        loss.backward()
        with torch.no_grad():
            for p, e in zip(model.parameters(), eps):
                p.sub_(e * p.grad)
                p.grad = None
    return time.perf_counter() - start


def plain_network(data, network, patterns):
    """The plain per-pattern loop over one network of lenet1998/networks.py (its module, the +-1
    targets' criterion, w -= eps g): the reference of `--networks`, one torch thread."""
    from lenet1998.loss import mle_loss
    from lenet1998.networks import build_model

    model = build_model(LeNetConfig(network=network, output="targets", loss="mle"))
    return plain_loop(model, mle_loss, data, patterns, 1e-4)


NETWORK_CASES = ("plain per-pattern loop over the module (reference)", "fit, per-pattern SDLM, lockstep, vmap",
                 "fit, per-pattern SDLM, lockstep, C kernel")


def bench_networks(data, patterns, replicas) -> pd.DataFrame:
    """--networks: per network, the plain loop against `fit` on the vmap group and on its C kernel."""
    from lenet1998.networks import NETWORKS

    rows = []
    for network in [n for n in NETWORKS if n != "lenet5"]:
        targets = dict(network=network, output="targets", loss="mle")
        for case, k, seconds in [(NETWORK_CASES[0], 1, plain_network(data, network, patterns)),
                                 (NETWORK_CASES[1], replicas, engine(data, patterns, replicas, "cpu", "eager", **targets)),
                                 (NETWORK_CASES[2], replicas, engine(data, patterns, replicas, "cpu", "kernel", **targets))]:
            rows.append({"network": network, "case": case, "replicas": k, "patterns_per_s_total": k * patterns / seconds})
            click.echo(f"{network:10s} {case:52s} K={k:2d} {rows[-1]['patterns_per_s_total']:9.0f} patterns/s")
    table = pd.DataFrame(rows)
    reference = table[table.case == NETWORK_CASES[0]].set_index("network").patterns_per_s_total
    table["ratio_to_reference"] = table.patterns_per_s_total / table.network.map(reference)
    return table


def render_networks(table, patterns, replicas, machine=None) -> str:
    lines = ["# Training throughput of the other networks of Fig. 9", "",
             f"Measured by `python -m experiments.bench --networks --patterns {patterns} --replicas {replicas}` in one "
             f"run: {machine or this_machine()}, one torch thread. Per-pattern SDLM steps (each replica updated after "
             "every pattern), patterns per second in total; ratio = that / the plain per-pattern loop over the same "
             "network's module (lenet1998/networks.py). vmap: lenet1998/engine/vmap.py; C kernel: engine/dense.py "
             "(the fully connected nets: one replica at a time in the last-level cache, the first layer's update "
             "fused with the next forward) or engine/convnet.py (LeNet-1, LeNet-4). `fit` is timed over its pass alone "
             "(without the h_kk estimate and the evaluation).", "",
             "| network | case | K | patterns/s | ratio |", "|---|---|---:|---:|---:|"]
    for r in table.itertuples():
        lines.append(f"| {r.network} | {r.case} | {r.replicas} | {r.patterns_per_s_total:.0f} | {r.ratio_to_reference:.2f}x |")
    return "\n".join(lines) + "\n"


def engine(data, patterns, replicas, device, kind="eager", **changes):
    """(b, c) `fit` for one pass over `patterns` patterns; returns the training time alone
    (without the h_kk estimate, the evaluation, or compiling, which happens before the pass)."""
    config = LeNetConfig(epochs=1, train_size=patterns, **changes)
    results = fit([config.replace(seed=s) for s in range(replicas)], data, device=device, engine=kind)
    record = results[0].history[0]
    return record["train_time_s"] - record.get("hessian_time_s", 0.0)


def grid_group(rank=0, patterns=None):
    """The default grid's largest lockstep group (`ablate --all`: 6 of the variants that share
    the paper's layer shapes, 3 seeds each), as configs; rank shifts the seeds, patterns
    shortens it."""
    from .grid import GRID as GRID_BUDGET, plan
    from .variants import GRID as VARIANTS

    name, runs = plan(list(VARIANTS), GRID_BUDGET)[0]
    configs = [c.replace(seed=c.seed + 100 * rank, epochs=1, train_size=patterns or c.train_size) for _, c in runs]
    return name, configs


def fastest() -> str:
    """The fastest per-pattern path that runs here (the kernel where it builds)."""
    return "kernel" if kernel_fits([LeNetConfig()])[0] else "compiled"


def side_by_side_worker(rank, case, data_dir, patterns, replicas, barrier, queue):
    """(d) One of two processes: train, wait at the barrier after a warm-up, report
    (patterns timed, start, end) in wall-clock time shared by both processes."""
    try:
        torch.set_num_threads(1)
        data = load_mnist(data_dir)
        if case == "plain":
            def ready():
                barrier.wait(timeout=900)
            seconds = plain_per_pattern(data, patterns, "cpu", ready)
            end = time.time()
            queue.put((rank, patterns, end - seconds, end))
            return
        marks = {}

        def on_progress(done, total):  # after each chunk of patterns
            if "start" not in marks:  # the first chunk is the warm-up
                barrier.wait(timeout=900)
                marks.update(start=time.time(), first=done)
            marks.update(end=time.time(), done=done)

        if case == "grid":
            group = grid_group(rank, patterns)[1]
        else:
            group = [LeNetConfig(epochs=1, train_size=patterns, seed=s) for s in range(rank * replicas, (rank + 1) * replicas)]
        fit(group, data, engine=fastest(), on_progress=on_progress)
        queue.put((rank, (marks["done"] - marks["first"]) * replicas, marks["start"], marks["end"]))
    except Exception as e:  # reported by the parent as one line
        barrier.abort()
        queue.put((rank, None, repr(e), None))


def side_by_side(case, data_dir, patterns, replicas, processes=2):
    """Total patterns per second of `processes` processes sharing the machine."""
    context = multiprocessing.get_context("spawn")
    barrier, queue = context.Barrier(processes), context.Queue()
    workers = [context.Process(target=side_by_side_worker, args=(r, case, str(resolve_data_dir(data_dir)), patterns,
                                                                  replicas, barrier, queue)) for r in range(processes)]
    for w in workers:
        w.start()
    reports = [queue.get(timeout=1800) for _ in workers]
    for w in workers:
        w.join()
    failed = [r for r in reports if r[1] is None]
    if failed:
        raise RuntimeError(f"side-by-side {case} worker failed: {failed[0][2]}")
    total = sum(r[1] for r in reports)
    return total, max(r[3] for r in reports) - min(r[2] for r in reports)


def plain_minibatch(data_dir, patterns, batch, device):
    """(c) reference: torchvision's dataset with ToTensor through a DataLoader, Adam."""
    import torchvision
    from torchvision import transforms

    dataset = torchvision.datasets.MNIST(str(resolve_data_dir(data_dir)), train=True, download=False,
                                         transform=transforms.Compose([transforms.ToTensor(), transforms.Pad(2)]))
    subset = torch.utils.data.Subset(dataset, range(patterns))
    loader = torch.utils.data.DataLoader(subset, batch_size=batch, shuffle=True)
    model = LeNet5(LeNetConfig(output="linear", loss="cross_entropy")).initialize(0).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


@command()
@click.option("--patterns", type=click.IntRange(min=100, max=60000), default=3000, show_default=True,
              help="Patterns per replica in each per-pattern case.")
@click.option("--replicas", "replica_counts", type=click.IntRange(min=1), multiple=True,
              default=(1, 3, 8, 16, 32, 64), show_default=True)
@click.option("--minibatch-patterns", type=click.IntRange(min=64, max=60000), default=12800, show_default=True,
              help="Patterns per replica in each minibatch case.")
@click.option("--side-by-side", "side_counts", type=click.IntRange(min=1), multiple=True, default=(3, 16, 32),
              show_default=True, help="K per process in the two-process case (d); repeatable.")
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True)
@click.option("--device", "devices", type=click.Choice(["cpu", "cuda"]), multiple=True, default=None,
              help="Devices to measure (repeatable; default: cpu, and cuda where present). CUDA rows are "
                   "recorded beside the CPU ones.")
@click.option("--render-only", is_flag=True, help="Measure nothing: rewrite bench.md from the bench.csv in --out.")
@click.option("--networks", is_flag=True,
              help="Measure only the other networks of Fig. 9 (plain loop, vmap, C kernel at the first --replicas, default 5) "
                   "and write bench_networks.csv / bench_networks.md.")
@data_dir_option
@one_line_errors
def main(patterns, replica_counts, minibatch_patterns, side_counts, out, devices, render_only, networks, data_dir):
    """Measure training throughput and write bench.csv / bench.md."""
    out = check_writable(out)
    if networks:
        if render_only or devices:
            raise click.UsageError("--networks measures on the CPU and writes its own table: no --render-only or --device")
        data = load_mnist(data_dir)
        torch.set_num_threads(1)
        given = click.get_current_context().get_parameter_source("replica_counts") != click.core.ParameterSource.DEFAULT
        replicas = replica_counts[0] if given else 5  # a fig9 variant's seeds
        table = bench_networks(data, patterns, replicas)
        atomic_write_text(Path(out) / "bench_networks.csv", table.to_csv(index=False, float_format="%.6g"))
        atomic_write_text(Path(out) / "bench_networks.md", render_networks(table, patterns, replicas))
        click.echo(f"wrote {Path(out) / 'bench_networks.md'}")
        return
    if "cuda" not in (devices or ["cpu"]) and not render_only:
        kernel.available()  # build (and measure the widths) before any clock starts
    if render_only:
        path = Path(out) / "bench.csv"
        if not path.is_file():
            raise click.UsageError(f"--render-only: no {path} to render")
        old = (Path(out) / "bench.md").read_text() if (Path(out) / "bench.md").is_file() else ""
        measured = re.search(r"--patterns (\d+)", old)  # the command line the table was measured with
        machine = re.search(r"in one run: (.+?), one torch thread per process", old)  # where it was measured
        atomic_write_text(Path(out) / "bench.md", render(pd.read_csv(path), int(measured[1]) if measured else patterns,
                                                          machine[1] if machine else "machine not recorded"))
        click.echo(f"wrote {Path(out) / 'bench.md'}")
        return
    if "cuda" in (devices or ()) and not torch.cuda.is_available():
        raise click.UsageError("--device cuda: no CUDA device here")
    data = load_mnist(data_dir)
    devices = list(devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else []))
    rows = []

    def add(device, case, kind, replicas, n, seconds, processes=1, width=None):
        """n patterns per replica in `seconds`; `replicas` per process; width: the kernel's lanes per block."""
        total = n * replicas * processes / seconds
        rows.append({"device": device, "case": case, "kind": kind, "processes": processes, "replicas": replicas,
                     "patterns_per_s_per_replica": n / seconds, "patterns_per_s_total": total,
                     "width": width, "gflops": total * FLOP_PER_PATTERN / 1e9 if width else None})
        click.echo(f"{device:4s} {case:38s} {processes}x K={replicas:3d}  {total:9.0f} patterns/s total"
                   + (f"  ({width} lanes)" if width else ""))

    default_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    for device in devices:
        plain_1 = plain_per_pattern(data, patterns, device)
        torch.set_num_threads(default_threads)
        plain_default = plain_per_pattern(data, patterns, device)
        torch.set_num_threads(1)
        faster = min(plain_1, plain_default)
        add(device, "plain per-pattern loop (reference)", "per_pattern", 1, patterns, faster)
        slower_threads = default_threads if faster == plain_1 else 1
        add(device, f"plain per-pattern loop, {slower_threads} torch thread(s)", "per_pattern", 1, patterns,
            max(plain_1, plain_default))
        add(device, "plain per-pattern loop over model.py's LeNet5 (F.conv2d)", "per_pattern", 1, patterns,
            plain_per_pattern(data, patterns, device, network="reference"))
        has_kernel = device == "cpu" and fastest() == "kernel"
        for kind in ["eager", "compiled"] + (["kernel"] if has_kernel else []):
            for k in replica_counts:
                add(device, f"fit, per-pattern SDLM, lockstep, {kind}", "per_pattern", k, patterns,
                    engine(data, patterns, k, device, kind), width=kernel.width_for(k) if kind == "kernel" else None)
        if has_kernel:
            for width in kernel.WIDTHS:  # every build, forced: the chosen width must never lose to 8 lanes
                for k in replica_counts:
                    with kernel_width(width):
                        seconds = engine(data, patterns, k, device, "kernel")
                    add(device, f"{KERNEL_CASE}, {width}-lane blocks forced", "per_pattern", k, patterns, seconds,
                        width=width)
        mb = minibatch_patterns
        modern = dict(VARIANTS["modern"].changes)
        add(device, "plain DataLoader+ToTensor, Adam b=64 (reference)", "minibatch", 1, mb,
            plain_minibatch(data_dir, mb, 64, device))
        add(device, "fit, Adam b=64, in-memory tensors (the reference trainer)", "minibatch", 1, mb,
            engine(data, mb, 1, device, **modern))
        for path_kind, engine_kind in (("kernel", "kernel"), ("vmap", "eager")):
            if path_kind == "kernel" and not has_kernel:
                continue
            for k in (3, 6, 9):
                add(device, f"{MINIBATCH_CASE} ({path_kind})", "minibatch", k, mb,
                    engine(data, mb, k, device, engine_kind, **modern),
                    width=kernel.width_for(k) if path_kind == "kernel" else None)
    if "cpu" not in devices:
        return write(table_of(rows), out, patterns)
    # (d) both cores, two processes of one torch thread each; `fit` times after a warm-up chunk
    side_patterns = patterns + CHUNK
    peak = max(kernel.fma_peak(w) for w in kernel.WIDTHS) if fastest() == "kernel" else None
    total, seconds = side_by_side("plain", data_dir, patterns, 1)
    add("cpu", "2 processes side by side: plain loops", "per_pattern", 1, total / 2, seconds, processes=2)
    for k in side_counts:
        total, seconds = side_by_side("fit", data_dir, side_patterns, k)
        add("cpu", f"2 processes side by side: fit, {fastest()}", "per_pattern", k, total / (2 * k), seconds, processes=2,
            width=kernel.width_for(k) if fastest() == "kernel" else None)
    name, group = grid_group()
    total, seconds = side_by_side("grid", data_dir, side_patterns, len(group))
    add("cpu", f"{GRID_CASE}: {name}", "per_pattern", len(group), total / (2 * len(group)), seconds, processes=2,
        width=kernel.width_for(len(group)) if fastest() == "kernel" else None)
    write(table_of(rows, peak), out, patterns)


def table_of(rows, peak=None) -> pd.DataFrame:
    """The rows with each one's ratio to the reference of its kind, and (peak: one core's FMA
    GFLOP/s, measured here) each kernel row's share of the peak of the cores it ran on."""
    table = pd.DataFrame(rows)
    reference = table[table.case.str.endswith("(reference)")].set_index(["device", "kind"]).patterns_per_s_total
    table["ratio_to_reference"] = [r.patterns_per_s_total / reference[(r.device, r.kind)] for r in table.itertuples()]
    table["peak_gflops_per_core"] = peak
    if "gflops" in table and peak:
        table["share_of_peak"] = table.gflops / (peak * table.processes)
    return table


def write(table, out, patterns):
    atomic_write_text(Path(out) / "bench.csv", table.to_csv(index=False))  # full precision: bench.md renders from it
    atomic_write_text(Path(out) / "bench.md", render(table, patterns))
    click.echo(f"wrote {Path(out) / 'bench.csv'} and {Path(out) / 'bench.md'}")


def width_check(table) -> list:
    """Lines comparing each K's kernel row (the width it takes) with the 8-lane build forced, in
    the same run: the chosen width must not be slower (5% is the run-to-run noise of one case)."""
    if "width" not in table:
        return []
    chosen = table[table.case == KERNEL_CASE].set_index("replicas").patterns_per_s_total
    eight = table[table.case == f"{KERNEL_CASE}, 8-lane blocks forced"].set_index("replicas").patterns_per_s_total
    common = [k for k in chosen.index if k in eight.index]
    if not common:
        return []
    ratios = {k: chosen[k] / eight[k] for k in common}
    slower = [k for k, v in ratios.items() if v < 0.95]
    verdict = ("no kernel group is slower than the 8-lane build" if not slower else
               f"K = {', '.join(map(str, slower))} ran more than 5% slower than the 8-lane build")
    return ["", "Width check (same run): the kernel at each group's width against the 8-lane build forced, "
            + ", ".join(f"K = {k}: {v:.2f}x" for k, v in ratios.items()) + f"; {verdict}."]


def grid_estimate(table, device="cpu", lockstep="architecture", core_only=False):
    """Hours of `ablate --all --jobs 2` (3 seeds, 20 passes) on `device`: ablate's own plan of
    lockstep groups, each group's time from the measured throughput of a process at its size,
    and the two workers' schedule (each group to the first free one, largest first).

    Rates per process: groups of mixed variants from the grid's mixed-group row; other per-pattern
    groups from the side-by-side row of the nearest K (else one process alone, at K=3);
    minibatch groups from the single-process lockstep Adam row of the nearest K (the reference
    trainer's row where there is none). Returns (hours, groups, variants, engine kind)."""
    from .grid import GRID as GRID_BUDGET, plan, schedule
    from .variants import GRID as VARIANTS

    cpu = table[table.device == device]
    kind = "kernel" if (cpu.case == KERNEL_CASE).any() else "compiled"
    alone = cpu[cpu.case == f"fit, per-pattern SDLM, lockstep, {kind}"].set_index("replicas").patterns_per_s_total
    minibatch = cpu[cpu.case.str.startswith(MINIBATCH_CASE)]
    minibatch = (minibatch[minibatch.case == minibatch.case.iloc[0]] if len(minibatch)  # the fastest path measured first
                 else cpu[cpu.case.str.startswith("fit, Adam")]).set_index("replicas").patterns_per_s_total
    side = cpu[cpu.case == f"2 processes side by side: fit, {kind}"].set_index("replicas").patterns_per_s_total / 2
    mixed = cpu[cpu.case.str.startswith(GRID_CASE)]
    names = [v.name for v in VARIANTS.values() if v.core or not core_only]
    groups = plan(names, GRID_BUDGET, lockstep=lockstep)
    seconds = []
    for name, runs in groups:
        k = len(runs)
        if runs[0][1].batch_size > 1:
            rate = minibatch[min(minibatch.index, key=lambda m: abs(m - k))]
        elif len({label for label, _ in runs}) > 1 and len(mixed):  # a mixed group, like the measured one
            rate = mixed.patterns_per_s_total.iloc[-1] / 2
        elif len(side):
            rate = side[min(side.index, key=lambda m: abs(m - k))]
        else:
            rate = alone[min(alone.index, key=lambda m: abs(m - k))]
        seconds.append(sum(c.epochs * c.train_size for _, c in runs) / rate)
    return schedule(seconds, 2) / 3600, len(groups), len(names), kind


def this_machine():
    """The line that says where a table was measured: CPU, its vector extensions, cores, torch."""
    return (f"{cpu_model()} ({vector_extensions() or 'vector extensions unknown'}), {multiprocessing.cpu_count()} "
            f"cores, torch {torch.__version__}")


def render(table, patterns, machine=None):
    """bench.md from bench.csv's rows; `machine` is where they were measured (default: here)."""
    lines = [
        "# Training throughput", "",
        f"Measured by `python -m experiments.bench --patterns {patterns}` in one run: "
        f"{machine or this_machine()}, one torch thread per "
        "process unless the case says otherwise. Patterns per second; ratio = total throughput / the reference "
        "(the faster single-process plain loop) of the same kind on the same device.", "",
        "K: replicas per process (processes x replicas where two run side by side). Lanes: the C kernel's "
        "SIMD lanes per block (8: 256-bit registers, 16: 512-bit), the width each group takes "
        "(`kernel.width_for`) unless the case forces one.",
    ]
    peak = table.peak_gflops_per_core.dropna() if "peak_gflops_per_core" in table else []
    if len(peak):
        lines += ["", f"GFLOP/s at {FLOP_PER_PATTERN / 1e6:.1f} MFLOP per pattern-update; share of peak: of "
                  f"{peak.iloc[0]:.0f} GFLOP/s per core, the fused multiply-adds one core sustains here with no memory "
                  "traffic (`kernel.fma_peak`, measured in the same run), times the processes of the row."]
    lines += ["", "| device | case | K | lanes | per replica | total | ratio | GFLOP/s | share of peak |",
              "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in table.itertuples():
        k = f"{r.processes}x{r.replicas}" if r.processes > 1 else f"{r.replicas}"
        width = getattr(r, "width", None)
        gflops, share = getattr(r, "gflops", None), getattr(r, "share_of_peak", None)
        lines.append(f"| {r.device} | {r.case} | {k} | {'' if pd.isna(width) else int(width)} | "
                     f"{r.patterns_per_s_per_replica:.0f} | {r.patterns_per_s_total:.0f} | {r.ratio_to_reference:.2f}x | "
                     f"{'' if pd.isna(gflops) else f'{gflops:.1f}'} | {'' if pd.isna(share) else f'{share:.0%}'} |")
    lines += width_check(table)
    side = table[table.case.str.startswith("2 processes")].set_index("case")
    if len(side):
        plain2 = side.loc["2 processes side by side: plain loops", "patterns_per_s_total"]
        fits = table[table.case.str.startswith("2 processes side by side: fit, ") & ~table.case.str.startswith(GRID_CASE)]
        best = fits.loc[fits.patterns_per_s_total.idxmax()]
        lines += ["", f"Both cores: the fastest two-process engine case runs **{best.patterns_per_s_total / plain2:.2f}x** "
                  f"two plain loops side by side (per core), and {best.ratio_to_reference:.2f}x the single plain loop."]
    try:
        hours, groups, n, kind = grid_estimate(table)
        variant_hours, variant_groups, _, _ = grid_estimate(table, lockstep="variant")
        core_hours, core_groups, n_core, _ = grid_estimate(table, core_only=True)
        lines += ["", f"Estimated wall time of `python -m experiments.ablate --all` ({n} variants x 3 seeds x 20 "
                  f"passes, {kind} engine, `--jobs 2`): **{hours:.1f} h** on this machine, in {groups} lockstep "
                  f"groups (`--lockstep architecture`, the default: the variants that share the paper's layer "
                  f"shapes train together, in groups that fill the kernel's lanes); {variant_hours:.1f} h with one group per variant "
                  f"(`--lockstep variant`, {variant_groups} groups); the {n_core} core variants alone (`paper`, one "
                  f"switch per paper piece, `modern`): {core_hours:.1f} h. Each group's time comes from the measured "
                  "throughput of one of two processes side by side (the mixed-group row for groups of mixed "
                  "variants; the nearest K otherwise; Adam: the single-process lockstep minibatch row of the nearest K), and the "
                  "groups are scheduled on two workers as `ablate` does; h_kk estimates, evaluation and compiling "
                  "are not counted, and distortions only in the mixed-group row."]
    except Exception as e:  # the estimate is a convenience; the table stands alone
        lines += ["", f"(no grid estimate: {e})"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
