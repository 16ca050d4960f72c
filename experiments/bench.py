"""Training throughput: the lockstep engine against plain PyTorch loops, measured in one run.

    python -m experiments.bench                 # about 5 minutes on a 2-core CPU
    python -m experiments.bench --patterns 500  # a quick look

Cases, each on the same machine in the same run, one torch thread unless said:
  (a) reference: a plain per-pattern loop (model, loss, backward, per-parameter SDLM step),
      on one torch thread and on torch's default thread count; the faster is the reference;
  (b) `fit` with K = 1, 3, 8, 16, 32, 64 replicas, each replica updated after every pattern,
      with the eager and the compiled engine;
  (c) minibatch Adam (batch 64): `fit` against a DataLoader + ToTensor loop;
  (d) both cores: two processes side by side (what `ablate --jobs 2` does), each training
      its own K replicas with the compiled engine, and, for comparison, two plain loops side
      by side. Timed from a common start (a barrier after a warm-up chunk) to the last
      process's end, so the total counts only time when both share the machine.
Per case it reports patterns per second per replica and in total, and the ratio of the total
to the reference of its kind. Writes results/bench.csv and results/bench.md, with an estimate
of the wall time of the default ablation grid. On CUDA, where present, cases (a)-(c) run there too.
"""

from __future__ import annotations

import multiprocessing
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
from lenet1998.results import atomic_write_text, check_writable, cpu_model
from lenet1998.train import CHUNK, fit

from .common import data_dir_option, one_line_errors


def plain_per_pattern(data, patterns, device, ready=None):
    """(a) The reference: the loop a PyTorch user writes for batch size 1.
    ready(): called just before the clock starts (the side-by-side case waits there)."""
    config = LeNetConfig()
    model = LeNet5(config).initialize([0]).to(device)
    eps = [torch.full_like(p, 1e-3) for p in model.parameters()]
    x = encode(data.train_images[:patterns], "paper").to(device)
    y = data.train_labels[:patterns].to(device)
    if ready is not None:
        ready()
    start = time.perf_counter()
    for i in range(patterns):
        out = model(x[i:i + 1].unsqueeze(1))  # (1, 1, 10)
        loss = map_loss(out, y[i:i + 1].unsqueeze(1), config.map_j).sum()
        loss.backward()
        with torch.no_grad():
            for p, e in zip(model.parameters(), eps):
                p.sub_(e * p.grad)
                p.grad = None
    return time.perf_counter() - start


def engine(data, patterns, replicas, device, kind="eager", **changes):
    """(b, c) `fit` for one pass over `patterns` patterns; returns the training time alone
    (without the h_kk estimate, the evaluation, or compiling, which happens before the pass)."""
    config = LeNetConfig(epochs=1, train_size=patterns, **changes)
    results = fit(config, data, seeds=list(range(replicas)), device=device, engine=kind)
    record = results[0].history[0]
    return record["train_time_s"] - record.get("hessian_time_s", 0.0)


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

        seeds = list(range(rank * replicas, (rank + 1) * replicas))
        fit(LeNetConfig(epochs=1, train_size=patterns), data, seeds=seeds, engine="compiled", on_progress=on_progress)
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
    model = LeNet5(LeNetConfig(output="linear", loss="cross_entropy")).initialize([0]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    start = time.perf_counter()
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        loss = torch.nn.functional.cross_entropy(model(x).squeeze(1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return time.perf_counter() - start


@click.command()
@click.option("--patterns", type=click.IntRange(min=100, max=60000), default=3000, show_default=True,
              help="Patterns per replica in each per-pattern case.")
@click.option("--replicas", "replica_counts", type=click.IntRange(min=1), multiple=True,
              default=(1, 3, 8, 16, 32, 64), show_default=True)
@click.option("--minibatch-patterns", type=click.IntRange(min=64, max=60000), default=12800, show_default=True,
              help="Patterns per replica in each minibatch case.")
@click.option("--side-by-side", "side_counts", type=click.IntRange(min=1), multiple=True, default=(3, 16, 32),
              show_default=True, help="K per process in the two-process case (d); repeatable.")
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True)
@click.option("--render-only", is_flag=True, help="Measure nothing: rewrite bench.md from the bench.csv in --out.")
@data_dir_option
@one_line_errors
def main(patterns, replica_counts, minibatch_patterns, side_counts, out, render_only, data_dir):
    """Measure training throughput and write bench.csv / bench.md."""
    out = check_writable(out)
    if render_only:
        path = Path(out) / "bench.csv"
        if not path.is_file():
            raise click.UsageError(f"--render-only: no {path} to render")
        old = (Path(out) / "bench.md").read_text() if (Path(out) / "bench.md").is_file() else ""
        measured = re.search(r"--patterns (\d+)", old)  # the command line the table was measured with
        atomic_write_text(Path(out) / "bench.md", render(pd.read_csv(path), int(measured[1]) if measured else patterns))
        click.echo(f"wrote {Path(out) / 'bench.md'}")
        return
    data = load_mnist(data_dir)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []

    def add(device, case, kind, replicas, n, seconds, processes=1):
        """n patterns per replica in `seconds`; `replicas` per process."""
        total = n * replicas * processes / seconds
        rows.append({"device": device, "case": case, "kind": kind, "processes": processes, "replicas": replicas,
                     "patterns_per_s_per_replica": n / seconds, "patterns_per_s_total": total})
        click.echo(f"{device:4s} {case:38s} {processes}x K={replicas:3d}  {total:9.0f} patterns/s total")

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
        for kind in ("eager", "compiled"):
            for k in replica_counts:
                add(device, f"fit, per-pattern SDLM, lockstep, {kind}", "per_pattern", k, patterns,
                    engine(data, patterns, k, device, kind))
        mb = minibatch_patterns
        add(device, "plain DataLoader+ToTensor, Adam b=64 (reference)", "minibatch", 1, mb,
            plain_minibatch(data_dir, mb, 64, device))
        for k in (1, 3):
            add(device, "fit, Adam b=64, in-memory tensors", "minibatch", k, mb,
                engine(data, mb, k, device, optimizer="adam", output="linear", loss="cross_entropy", batch_size=64))
    # (d) both cores, two processes of one torch thread each; `fit` times after a warm-up chunk
    side_patterns = patterns + CHUNK
    total, seconds = side_by_side("plain", data_dir, patterns, 1)
    add("cpu", "2 processes side by side: plain loops", "per_pattern", 1, total / 2, seconds, processes=2)
    for k in side_counts:
        total, seconds = side_by_side("fit", data_dir, side_patterns, k)
        add("cpu", "2 processes side by side: fit, compiled", "per_pattern", k, total / (2 * k), seconds, processes=2)
    table = pd.DataFrame(rows)
    reference = table[table.case.str.contains("reference")].set_index(["device", "kind"]).patterns_per_s_total
    table["ratio_to_reference"] = [r.patterns_per_s_total / reference[(r.device, r.kind)] for r in table.itertuples()]
    atomic_write_text(Path(out) / "bench.csv", table.to_csv(index=False))  # full precision: bench.md renders from it
    atomic_write_text(Path(out) / "bench.md", render(table, patterns))
    click.echo(f"wrote {Path(out) / 'bench.csv'} and {Path(out) / 'bench.md'}")


def grid_estimate(table, device="cpu"):
    """(hours, variants, measured side by side?, hours of the core variants, core variants) for
    the default ablation grid (3 seeds, 20 passes, 2 processes) on `device`."""
    from .variants import VARIANTS

    cpu = table[table.device == device]
    per_pattern = cpu[cpu.case == "fit, per-pattern SDLM, lockstep, compiled"].set_index("replicas").patterns_per_s_total
    minibatch = cpu[cpu.case.str.startswith("fit, Adam")].set_index("replicas").patterns_per_s_total
    side = cpu[cpu.case == "2 processes side by side: fit, compiled"].set_index("replicas").patterns_per_s_total
    # Three seeds in lockstep (the compiled engine), one variant per process: the measured two
    # processes of K=3 (per process: half the total), else one process alone at K=3 or K=1.
    k3 = side[3] / 2 if 3 in side.index else per_pattern.get(3, per_pattern.get(1))
    seconds = {"all": 0.0, "core": 0.0}
    for variant in VARIANTS.values():
        config = variant.config
        total = 3 * config.epochs * config.train_size
        t = total / (minibatch.get(3) if config.optimizer == "adam" else k3)
        seconds["all"] += t
        seconds["core"] += t if variant.core else 0.0
    n_core = sum(v.core for v in VARIANTS.values())
    return seconds["all"] / 2 / 3600, len(VARIANTS), 3 in side.index, seconds["core"] / 2 / 3600, n_core


def render(table, patterns):
    lines = [
        "# Training throughput", "",
        f"Measured by `python -m experiments.bench --patterns {patterns}` in one run: "
        f"{cpu_model()}, {multiprocessing.cpu_count()} cores, torch {torch.__version__}, one torch thread per "
        "process unless the case says otherwise. Patterns per second; ratio = total throughput / the reference "
        "(the faster single-process plain loop) of the same kind on the same device.", "",
        "K: replicas per process (processes x replicas where two run side by side).", "",
        "| device | case | K | per replica | total | ratio |", "|---|---|---:|---:|---:|---:|",
    ]
    for r in table.itertuples():
        k = f"{r.processes}x{r.replicas}" if r.processes > 1 else f"{r.replicas}"
        lines.append(f"| {r.device} | {r.case} | {k} | {r.patterns_per_s_per_replica:.0f} | "
                     f"{r.patterns_per_s_total:.0f} | {r.ratio_to_reference:.2f}x |")
    side = table[table.case.str.startswith("2 processes")].set_index("case")
    if len(side):
        plain2 = side.loc["2 processes side by side: plain loops", "patterns_per_s_total"]
        fits = table[table.case == "2 processes side by side: fit, compiled"]
        best = fits.loc[fits.patterns_per_s_total.idxmax()]
        lines += ["", f"Both cores: the fastest two-process engine case runs **{best.patterns_per_s_total / plain2:.2f}x** "
                  f"two plain loops side by side (per core), and {best.ratio_to_reference:.2f}x the single plain loop."]
    try:
        hours, n, shared, core_hours, n_core = grid_estimate(table)
        source = ("the 2x3 side-by-side row for per-pattern variants, the minibatch K=3 row for Adam" if shared else
                  "the single-process K=3 and minibatch rows, assuming the two jobs do not slow each other")
        lines += ["", f"Estimated wall time of `python -m experiments.ablate --all` ({n} variants x 3 seeds x "
                  f"20 passes, 3 seeds in lockstep per variant, compiled engine, `--jobs 2`; from {source}; "
                  f"h_kk estimates, evaluation and distortions not counted): **{hours:.1f} h** on this machine; "
                  f"the {n_core} core variants alone (`paper`, one switch per paper piece, `modern`; "
                  f"`--only` each): **{core_hours:.1f} h**."]
    except Exception as e:  # the estimate is a convenience; the table stands alone
        lines += ["", f"(no grid estimate: {e})"]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
