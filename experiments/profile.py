"""Where the time of one compiled per-pattern step goes: a kernel-level profile.

    python -m experiments.profile                   # K = 16 replicas, writes results/profile.md
    python -m experiments.profile --replicas 32 --steps 300

Compiles the per-pattern SDLM step of `fit` (lenet1998/train.py) for K paper replicas with
inductor's per-kernel profiling on, runs it on random patterns with fixed small step sizes,
and tabulates torch.profiler's self time per kernel: the generated fused kernels (named by
the operations they fuse), the batched matrix products (aten::bmm / baddbmm), and the
dispatch overhead around them (guard checks, the compiled graph's Python wrapper).
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import pandas as pd
import torch

from lenet1998.config import LeNetConfig
from lenet1998.model import LeNet5
from lenet1998.results import atomic_write_text, check_writable, cpu_model
from lenet1998.engine.replicas import TorchGroup, stack

from .common import command, one_line_errors

GROUPS = [  # (label, test on the profiler's event name), first match wins
    ("fused kernels: forward (conv as im2col, subsampling, squashing)", lambda n: n.startswith("graph_") and "backward" not in n and "foreach" not in n),
    ("fused kernels: backward and the w -= eps g update", lambda n: n.startswith("graph_")),
    ("batched matrix products (aten::bmm, baddbmm)", lambda n: n in ("aten::bmm", "aten::baddbmm")),
    ("dynamo guards and the compiled graph's Python wrapper", lambda n: "Dynamo" in n or "CompiledFxGraph" in n
     or "Compiled Region" in n or "AOTDispatcher" in n or "Pregraph" in n),
]


def profile_step(replicas: int, steps: int) -> tuple[pd.DataFrame, float]:
    import torch._inductor.config as inductor_config
    from torch.profiler import ProfilerActivity, profile

    torch.set_num_threads(1)
    inductor_config.cpp.enable_kernel_profile = True
    configs = [LeNetConfig(seed=s) for s in range(replicas)]
    group = TorchGroup(configs, compiled=True)
    params = stack([LeNet5(c).initialize() for c in configs])
    group.load(params)
    group.set_steps({name: torch.full_like(p, 1e-5) for name, p in params.items()})
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(replicas, 32, 32, generator=generator)
    y = torch.randint(0, 10, (replicas,), generator=generator)
    for _ in range(20):  # compile and warm up
        group.step(x, y)
    start = time.perf_counter()
    for _ in range(steps):
        group.step(x, y)
    ms_per_step = (time.perf_counter() - start) / steps * 1e3
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            group.step(x, y)
    rows = [{"event": e.key, "calls_per_step": e.count / steps, "self_ms_per_step": e.self_cpu_time_total / 1e3 / steps}
            for e in prof.key_averages() if e.self_cpu_time_total > 0]
    table = pd.DataFrame(rows).sort_values("self_ms_per_step", ascending=False)
    table["share"] = table.self_ms_per_step / table.self_ms_per_step.sum()
    table["group"] = [next((g for g, test in GROUPS if test(n)), "other") for n in table.event]
    return table, ms_per_step


def render(table: pd.DataFrame, replicas: int, steps: int, ms_per_step: float) -> str:
    groups = table.groupby("group").share.sum().sort_values(ascending=False)
    lines = ["# Where one compiled per-pattern step spends its time", "",
             f"Measured by `python -m experiments.profile --replicas {replicas} --steps {steps}`: {cpu_model()}, "
             f"one torch thread, torch {torch.__version__}. One step = forward, MAP loss, gradient and SDLM update "
             f"of {replicas} replicas on one pattern each: {ms_per_step:.2f} ms without the profiler "
             f"({replicas / ms_per_step * 1e3:.0f} patterns/s). Shares of the profiler's self time.", "",
             "| where | share |", "|---|---:|"]
    lines += [f"| {g} | {s:.0%} |" for g, s in groups.items()]
    lines += ["", "| event | calls per step | self ms per step | share |", "|---|---:|---:|---:|"]
    for r in table.head(15).itertuples():
        name = r.event if len(r.event) <= 70 else r.event[:67] + "..."
        lines.append(f"| `{name}` | {r.calls_per_step:.0f} | {r.self_ms_per_step:.3f} | {r.share:.1%} |")
    return "\n".join(lines) + "\n"


@command()
@click.option("--replicas", type=click.IntRange(min=1), default=16, show_default=True)
@click.option("--steps", type=click.IntRange(min=10), default=200, show_default=True)
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True)
@one_line_errors
def main(replicas, steps, out):
    """Profile one compiled per-pattern step and write profile.md."""
    out = check_writable(out)
    table, ms = profile_step(replicas, steps)
    text = render(table, replicas, steps, ms)
    atomic_write_text(Path(out) / "profile.md", text)
    click.echo(text)
    click.echo(f"wrote {Path(out) / 'profile.md'}")


if __name__ == "__main__":
    main()
