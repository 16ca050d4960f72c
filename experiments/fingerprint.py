"""The paper's own fingerprints: which reading of the paper reproduces the numbers it prints from
inside its training, chosen without the test set.

Paper: Sec. III-B, "the effective learning rates eps_k ... in the first pass ... were between
approximately 7x10^-5 and 0.016" (eta 5e-4, mu 0.02: h_kk in about [0.011, 7.1]); Fig. 6
(training error about 0.05% at 15,000 patterns).

    python -m experiments.fingerprint pass1     # every reading, alone and in pairs, then greedily:
                                                # results/fingerprints/pass1.csv (minutes, no training)
    python -m experiments.fingerprint train     # the validation, Fig. 6, final and lab2009 runs (hours)
    python -m experiments.report                # results/fingerprints.md/.csv, the figure, the paper gap

The primary fingerprint is free of the test set and of training: for each reading and seed, one
network drawn at initialisation, h_kk estimated on its pass-1 sample exactly as the trainer does
(lenet1998/sdlm.py SDLM.begin_pass), and the step eps_k = eta / (mu + h_kk) of every free
parameter (Table I's connections only). Its distance to the paper's range is

    distance = max(|log10(eps_min / 7e-5)|, |log10(eps_max / 0.016)|)

on the medians over seeds of eps_min and eps_max (0: both ends on the paper's values; log10(1.5)
= 0.18: both within a factor 1.5). Every reading is computed with val_size = 10,000 (the h_kk
sample comes from the first 50,000 training patterns), as the runs that check it.

The procedure (REPRODUCING.md, "Choosing a reading by the fingerprint", written before it ran):
every reading alone and every pair of readings that change different fields; readings whose
pass-1 steps equal `paper`'s for every seed (they act only after pass 1: the order, h_kk once,
j under the constant seed) are listed but never combined, since the fingerprint cannot see
them; from the pair of smallest distance, add the reading that lowers it most while it falls by
more than 0.05. The result is `paper_fingerprint` (experiments/variants.py; a test checks it
equals the committed file's choice).
"""

from __future__ import annotations

import json
import math
from itertools import combinations
from pathlib import Path

import click
import pandas as pd
import torch

from lenet1998.config import LeNetConfig
from lenet1998.data import load_mnist
from lenet1998.model import LeNet5
from lenet1998.paper import FIG6
from lenet1998.patterns import TrainingPatterns
from lenet1998.results import RunFolder, atomic_write_text, check_writable, read_metrics
from lenet1998.sdlm import SDLM

from .common import data_dir_option, device_option, engine_option, group, one_line_errors, resolve_device
from .grid import fill_lanes, jobs_of, launch_from_options, launcher_options
from .stats import prediction_interval
from .tables import fmt, load_runs
from .variants import VARIANTS

PAPER_EPS = (7e-5, 0.016)  # Sec. III-B: pass 1's eps_k "between approximately 7x10^-5 and 0.016"
GOAL = math.log10(1.5)  # the issue's goal: both ends within a factor 1.5
GREEDY_STEP = 0.05  # a reading joins while it lowers the distance by more than this
VAL_SIZE = 10000  # every fingerprint and validation run holds out the last 10,000 patterns
SEEDS = 10
PERCENTILES = (1, 5, 50, 95, 99)
CAP_SHARE = 0.95  # a step "at the cap" is at least 95% of eta / mu (h_kk below 0.00105)
LAYERS = ("C1", "S2", "C3", "S4", "C5", "F6", "all")

# Every reading measured: one field off `paper`. The open questions of results/open_questions.md
# that can act on training without distortions, Appendix A read literally, Sec. II-B's sum, and the
# authors' code (SPEC.md section 15; each entry's docstring cites its file).
READINGS = {
    "map_j1": {"map_j": 1.0},
    "map_j100": {"map_j": 100.0},
    "curvature1": {"sdlm_output_curvature": 1.0},
    "curvature4": {"sdlm_output_curvature": 4.0},
    "hessian_samples5000": {"sdlm_samples": 5000},
    "reshuffle": {"order": "reshuffle"},
    "zero_bias": {"bias_init": "zero"},
    "shared_sum_h": {"sdlm_subsampling_h": "shared_sum"},
    "literal_init": {"init": "paper"},
    "sum_subsampling": {"subsampling": "trainable_sum"},
    "lab_s_coef": {"subsampling_init": "constant"},  # gb-modules-nn.lsh: coefficient 0.5 on the sum, bias 0
    "lab_init": {"init": "lab"},  # demos/lenet5.lsh `forget 1 2`: U(+-1/sqrt(F_i)), Table I fan-ins
    "lab_input": {"input_coding": "lab"},  # pixel x 0.01: background 0, ink 2.55
    "hessian_samples100": {"sdlm_samples": 100},  # both demos: h_kk on 100 patterns
    "hessian_once": {"sdlm_reestimate": "once"},  # the Lush demo: h_kk once, before training
    "file_order": {"order": "file"},  # both demos: the file's order, never shuffled
    "map_curvature": {"sdlm_output_seed": "map_exact"},  # Eq. (9)'s exact second derivative at F6
}


def base_config() -> LeNetConfig:
    """`paper` with the validation split every fingerprint and validation run uses."""
    return LeNetConfig(val_size=VAL_SIZE, train_size=60000 - VAL_SIZE)


def combine(names) -> dict:
    """The changes of several readings at once; ValueError if two change the same field."""
    out = {}
    for name in names:
        for field, value in READINGS[name].items():
            if field in out:
                raise ValueError(f"readings {list(names)} both change {field}")
            out[field] = value
    return out


def label(names) -> str:
    """One name for a combination: its readings in READINGS order, joined by '+' ('paper': none)."""
    return "+".join(n for n in READINGS if n in names) or "paper"


def pass1_steps(model, rule, sample) -> dict:
    """{layer: eps of every free parameter (Table I's connections only), float64} after the
    pass-1 estimate of h_kk on `sample` (m, 1, 32, 32), and "all": every layer's together."""
    rule.begin_pass(1, sample)
    eps = {id(p): e for p, e in zip(rule.params, rule.eps)}
    out = {name: torch.cat([eps[id(p)][layer.free_entries(p)].double().flatten() for p in layer.parameters()])
           for name, layer in model.trainable_layers()}
    out["all"] = torch.cat(list(out.values()))
    return out


def step_stats(eps: torch.Tensor, cap: float) -> dict:
    """min, the PERCENTILES, max and the share at the cap of one set of steps."""
    q = torch.quantile(eps, torch.tensor([p / 100 for p in PERCENTILES], dtype=torch.float64)).tolist()
    return {"n": len(eps), "min": float(eps.min()), **{f"p{p}": v for p, v in zip(PERCENTILES, q)},
            "max": float(eps.max()), "at_cap": float((eps >= CAP_SHARE * cap).double().mean())}


def distance(eps_min: float, eps_max: float) -> float:
    """max(|log10(eps_min / 7e-5)|, |log10(eps_max / 0.016)|): 0 on the paper's range."""
    return max(abs(math.log10(eps_min / PAPER_EPS[0])), abs(math.log10(eps_max / PAPER_EPS[1])))


def fingerprint_rows(names, data, seeds=SEEDS) -> list:
    """One row per (seed, layer) of a combination of readings: its pass-1 step statistics."""
    config = base_config().replace(**combine(names))
    rows = []
    for seed in range(seeds):
        c = config.replace(seed=seed)
        model = LeNet5(c).initialize()
        sample = TrainingPatterns(c, data).hessian_sample(1).unsqueeze(1)
        cap = c.step_size(1) / c.sdlm_mu
        steps = pass1_steps(model, SDLM(model, c), sample)
        for layer in LAYERS:
            rows.append({"reading": label(names), "seed": seed, "layer": layer, **step_stats(steps[layer], cap)})
    return rows


def summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Per reading and layer, the median over seeds of every statistic, and the distance of
    the overall row (from the medians of eps_min and eps_max)."""
    stats = [c for c in rows.columns if c not in ("reading", "seed", "layer")]
    table = rows.groupby(["reading", "layer"], sort=False)[stats].median().reset_index()
    table["seeds"] = rows.groupby(["reading", "layer"], sort=False).seed.nunique().values
    table["distance"] = [distance(r["min"], r["max"]) for _, r in table.iterrows()]
    return table


def invisible(rows: pd.DataFrame) -> list:
    """The readings whose pass-1 statistics equal `paper`'s for every seed and layer."""
    stats = [c for c in rows.columns if c not in ("reading",)]
    paper = rows[rows.reading == "paper"][stats].reset_index(drop=True)
    return [n for n in READINGS if n in set(rows.reading)
            and rows[rows.reading == n][stats].reset_index(drop=True).equals(paper)]


def overall(table: pd.DataFrame) -> dict:
    """{reading: distance} of the overall rows."""
    all_rows = table[table.layer == "all"]
    return dict(zip(all_rows.reading, all_rows.distance))


def select(rows: pd.DataFrame, measure=None) -> tuple[list, list, pd.DataFrame]:
    """The procedure of the module docstring on the rows measured so far: (chosen readings,
    [(step, combination label, distance)], the rows with those measured on the way). With `measure(names) -> rows`, a combination not yet
    in `rows` is measured and added (the pass1 command); without it, every combination the
    procedure reaches must be in `rows` (the report rebuilds the choice from the committed file)."""
    def dist(names):
        nonlocal rows
        name = label(names)
        if name not in set(rows.reading):
            if measure is None:
                raise KeyError(f"results/fingerprints/pass1.csv lacks {name}: rerun `python -m experiments.fingerprint pass1`")
            rows = pd.concat([rows, pd.DataFrame(measure(names))], ignore_index=True)
        return overall(summary(rows[rows.reading == name]))[name]

    hidden = set(invisible(rows))
    visible = [n for n in READINGS if n not in hidden]
    pairs = [p for p in combinations(visible, 2) if _compatible(p)]
    scored = sorted(((dist(p), i, p) for i, p in enumerate(pairs)))
    if not scored:
        return [], [], rows
    best, _, chosen = scored[0]
    chosen, steps = list(chosen), [("best pair", label(chosen), best)]
    while True:
        options = [(dist(chosen + [n]), i, n) for i, n in enumerate(visible)
                   if n not in chosen and _compatible(chosen + [n])]
        if not options:
            break
        d, _, n = min(options)
        if best - d <= GREEDY_STEP:
            steps.append((f"stop: + {n} lowers it by {best - d:.3f}", label(chosen + [n]), d))
            break
        chosen, best = chosen + [n], d
        steps.append((f"+ {n}", label(chosen), d))
    return chosen, steps, rows


def _compatible(names) -> bool:
    try:
        combine(names)
        return True
    except ValueError:
        return False


# ----------------------------------------------------------------------------------------------
# The training runs of the procedure: validation (10 seeds), Fig. 6 (5 seeds), then the final runs.

FIG6_SIZE = 15000

# The lab's own recipe, end to end: EBLearn's 2009 MNIST demo at commit 7ed01749
# (demos/mnist/src/main.cpp with the libeblearn sources of that commit; SPEC.md section 15).
# main.cpp: "create 1-of-n targets with target 1.0 for shown class, -1.0 for the rest",
# `lenet5 l5(theparam, 32, 32, 5, 5, 2, 2, 5, 5, 2, 2, 120, targets.dim(0))`, a
# `supervised_euclidean_machine`, `forget_param_linear fgp(1, 0.5)`, `gd_param gdp(0.0001, ...)`,
# `compute_diaghessian(train_ds, 100, 0.02)` before training and after each of `i < 100` passes;
# ebl_machines.cpp: Table I's 60 connections, C5 full, then `nn_layer_full(prm, thick2, outthick)`:
# C5 -> 10 tanh units trained to +-1 targets by 0.5 ||out - t||^2, arg-max; plain tanh on every
# layer; U(+-1/sqrt(F_i)) with Table I fan-ins, biases 0; S2/S4 summing, coefficient 0.5 and bias
# 0; input pixel x 0.01 (0 / 2.55, padding 0); per-pattern SDLM with constant eta 1e-4 and mu 0.02,
# h_kk on the first 100 training patterns before every pass, the file's order; 100 passes.
# Our MLE on the +-1 centres is y_D = ||out - t_D||^2, twice the demo's cost: its gradient is
# twice the demo's and, seeded with 2 (sdlm_output_curvature), so is h_kk; with mu 0.04 the step
# eta 2 g / (0.04 + 2 h) is the demo's eta g / (0.02 + h) exactly (tests/test_fingerprint.py).
LAB2009 = LeNetConfig(
    output="targets", loss="mle", squashing="tanh", subsampling="trainable_sum", subsampling_init="constant",
    init="lab", bias_init="zero", input_coding="lab", order="file", sdlm_samples=100, sdlm_sample="first",
    eta_schedule=((1, 1e-4),), sdlm_mu=0.04, sdlm_output_curvature=2.0, epochs=100)
LAB2009_SEEDS = 10
LAB2009_REPORTED = 0.9  # the demo's documentation page: "after training down to 0.9% error rate" (one run)


def candidates(rows: pd.DataFrame) -> list:
    """The readings in the order the procedure takes them: the greedy choice, then every
    measured pair by distance (step 5: if a candidate's validation runs do not train, the next)."""
    chosen, _, rows = select(rows)
    dist = overall(summary(rows))
    pairs = sorted((d, name) for name, d in dist.items() if name.count("+") == 1 and name != label(chosen))
    return [chosen] + [name.split("+") for _, name in pairs]


TRAINS_BELOW = 12.0  # step 5: a candidate trains when every validation run ends below 12% (the linear classifier)


def run_configs(tried: list | None = None) -> dict:
    """{stage: {name: (config, seeds)}} of every run the procedure trains (20 passes each):
    validation runs of `paper` and of each candidate tried (default: the chosen one), the Fig. 6
    runs of `paper` and the chosen reading, and the final runs (experiments/variants.py)."""
    chosen = VARIANTS["paper_fingerprint"].changes
    tried = [chosen] if tried is None else tried
    paper = LeNetConfig()
    val = {"val_size": VAL_SIZE, "train_size": 60000 - VAL_SIZE}
    fig6 = {"val_size": VAL_SIZE, "train_size": FIG6_SIZE}
    name = {label([n for n in READINGS if READINGS[n].items() <= c.items()]): c for c in tried}
    return {
        "val": {"paper@val": (paper.replace(**val), SEEDS),
                **{f"{n}@val": (paper.replace(**c, **val), SEEDS) for n, c in name.items()}},
        "fig6": {"paper@15000": (paper.replace(**fig6), 5),
                 "paper_fingerprint@15000": (paper.replace(**chosen, **fig6), 5)},
        "final": {"paper_fingerprint": (VARIANTS["paper_fingerprint"].config, 20),
                  "paper_fingerprint+distortions": (VARIANTS["paper_fingerprint+distortions"].config, 10)},
        "lab2009": {"lab2009": (LAB2009, LAB2009_SEEDS)},
    }


def tried_changes(rows: pd.DataFrame) -> list:
    """The changes of every candidate up to the chosen one (FINGERPRINT_RANK in experiments/variants.py)."""
    from .variants import FINGERPRINT_RANK

    return [combine(names) for names in candidates(rows)[:FINGERPRINT_RANK + 1]]


def training_runs(out: Path, tried: list | None = None) -> pd.DataFrame:
    """Every finished run of run_configs(tried) under `out`, one row each (experiments.tables.load_runs)."""
    frames = []
    for stage, named in run_configs(tried).items():
        for name, (config, seeds) in named.items():
            runs = load_runs(out, {name: config}, seeds)
            if len(runs):
                frames.append(runs.assign(stage=stage, train_size=config.train_size,
                                          val_error=[final_val_error(out, run) for run in runs.run]))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def final_val_error(out: Path, run: str) -> float:
    """The last pass's validation error of a run folder (nan for a run without a validation split)."""
    metrics = read_metrics(Path(out) / "runs" / run)
    return float(metrics.val_error.iloc[-1]) if "val_error" in metrics else math.nan


# ----------------------------------------------------------------------------------------------
# Tables


def pass1_file(out: Path) -> Path:
    return Path(out) / "fingerprints" / "pass1.csv"


def fingerprint_markdown(rows: pd.DataFrame, runs: pd.DataFrame) -> tuple[str, pd.DataFrame]:
    """results/fingerprints.md and its CSV table from the committed pass-1 file and the runs."""
    table = summary(rows)
    dist = overall(table)
    hidden = invisible(rows)
    chosen, steps, _ = select(rows)
    singles = ["paper"] + list(READINGS)
    ok = table[table.layer == "all"].set_index("reading")
    lines = ["# The paper's fingerprints", "",
             "Generated by `python -m experiments.report` from `results/fingerprints/pass1.csv` (made by "
             "`python -m experiments.fingerprint pass1`) and the run folders. No number here is a test error.", "",
             f"## Pass-1 steps eps_k = eta / (mu + h_kk) against Sec. III-B's [{PAPER_EPS[0]:g}, {PAPER_EPS[1]:g}]", "",
             f"One network per seed at initialisation, h_kk on its pass-1 sample (val_size {VAL_SIZE:,}), every free "
             f"parameter; median over {SEEDS} seeds. *distance*: max(|log10(eps_min / 7e-5)|, |log10(eps_max / 0.016)|) "
             f"(goal: at most log10 1.5 = {GOAL:.3f}); *at cap*: share of steps at 95% or more of eta/mu = 0.025.", "",
             "| reading | changes | eps_min | p1 | p5 | p50 | p95 | p99 | eps_max | at cap | distance |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]

    def row(name):
        r = ok.loc[name]
        changes = ", ".join(f"{k}={v}" for k, v in combine([n for n in READINGS if n in name.split("+")]).items()) or "-"
        note = " (acts after pass 1 only)" if name in hidden else ""
        return (f"| {name}{note} | {changes} | {r['min']:.2e} | {r.p1:.2e} | {r.p5:.2e} | {r.p50:.2e} | {r.p95:.2e} | "
                f"{r.p99:.2e} | {r['max']:.2e} | {r.at_cap:.3f} | {r.distance:.3f} |")

    lines += [row(n) for n in singles if n in ok.index]
    lines += ["", "### The choice", "",
              f"Pairs measured: {sum(1 for n in ok.index if n.count('+') == 1)}; readings that act after pass 1 only "
              f"(never combined): {', '.join(hidden) or 'none'}.", "",
              "| step | readings | distance |", "|---|---|---:|",
              f"| start | paper | {dist['paper']:.3f} |"]
    lines += [f"| {step} | {name} | {d:.3f} |" for step, name, d in steps]
    ranked = sorted((d, n) for n, d in dist.items() if n.count("+") == 1)[:10]
    lines += ["", "The ten closest pairs:", "", "| pair | distance |", "|---|---:|"]
    lines += [f"| {n} | {d:.3f} |" for d, n in ranked]
    from .variants import FINGERPRINT_RANK

    ranked = candidates(rows)
    taken = label(ranked[FINGERPRINT_RANK])
    lines += ["", f"Greedy choice: **{label(chosen)}**, distance {dist.get(label(chosen), math.nan):.3f}."]
    if FINGERPRINT_RANK:
        tried = ", ".join(f"{label(c)} ({dist[label(c)]:.3f})" for c in ranked[:FINGERPRINT_RANK])
        lines += ["", f"Step 5: {tried} did not train on the validation split (below); taken: candidate "
                      f"{FINGERPRINT_RANK} of the ranking, **{taken}**, distance {dist[taken]:.3f}."]
    lines += ["", f"`paper_fingerprint` = {taken}.", "",
              "### Per layer: paper, the greedy choice and the reading taken", "",
              "| reading | layer | eps_min | p50 | eps_max | at cap |", "|---|---|---:|---:|---:|---:|"]
    for name in dict.fromkeys(("paper", label(chosen), taken)):
        for _, r in table[table.reading == name].iterrows():
            lines.append(f"| {name} | {r.layer} | {r['min']:.2e} | {r.p50:.2e} | {r['max']:.2e} | {r.at_cap:.3f} |")
    lines += training_markdown(runs)
    return "\n".join(lines) + "\n", table


def training_markdown(runs: pd.DataFrame) -> list:
    """The validation and Fig. 6 runs: validation error and training error, never test error."""
    lines = ["", "## Validation runs (val_size 10,000; 20 passes; final pass)", "",
             f"A candidate trains when every one of its validation runs ends below {TRAINS_BELOW:g}% validation error "
             "(step 5 of the procedure); the Fig. 6 runs train on the first 15,000 patterns and report the training "
             "error evaluated on them after the last pass, against Fig. 6's."]
    ok = runs[(runs.status == "ok") & runs.stage.isin(["val", "fig6"])] if len(runs) else runs
    if not len(ok):
        return lines + ["", "No validation run has finished yet: `python -m experiments.fingerprint train`."]
    lines += ["", "| runs | training patterns | seeds | validation error % by seed | mean ± std | runs below 12% | "
              "training error % after the last pass | Fig. 6 training error |", "|---|---:|---:|---|---:|---:|---:|---:|"]
    for name in dict.fromkeys(ok.variant):
        r = ok[ok.variant == name].sort_values("seed")
        size = int(r.train_size.iloc[0])
        spread = f"{r.val_error.mean():.2f} ± {r.val_error.std():.2f}" if len(r) > 1 else f"{r.val_error.mean():.2f}"
        lines.append(f"| {name} | {size:,} | {len(r)} | {' '.join(f'{v:.2f}' for v in r.val_error)} | {spread} | "
                     f"{int((r.val_error < TRAINS_BELOW).sum())} of {len(r)} | {r.train_error_eval.mean():.3f} ± "
                     f"{r.train_error_eval.std():.3f} | {fmt(FIG6.get(size, (None, None))[1]) if size in FIG6 else '–'} |")
    return lines


def figure(table: pd.DataFrame, greedy: str, chosen: str, path: Path, save_figure) -> Path:
    """The pass-1 step ranges (median over seeds) of paper, each reading and the choice, on a log
    axis against the paper's range: a bar from p1 to p99, ticks at eps_min and eps_max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = table[table.layer == "all"]
    extra = [n for n in dict.fromkeys([greedy, chosen]) if n in set(rows.reading)]
    names = ["paper"] + [n for n in READINGS if n in set(rows.reading)] + extra
    rows = rows.set_index("reading").loc[names]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(names) + 1.2))
    ax.axvspan(*PAPER_EPS, color="tab:green", alpha=0.15, label="paper, pass 1 (Sec. III-B)")
    for i, (name, r) in enumerate(rows.iterrows()):
        colour = "tab:red" if name == chosen else "tab:orange" if name == greedy else "tab:blue"
        ax.plot([r.p1, r.p99], [i, i], color=colour, lw=4, alpha=0.6)
        ax.plot([r["min"], r["max"]], [i, i], "|", color=colour, ms=10)
    ax.axvline(0.025, color="grey", ls=":", label="cap eta/mu")
    ax.set_xscale("log")
    ax.set_yticks(range(len(names)), names, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("pass-1 step eps_k (median over seeds; bar p1-p99, ticks min and max)")
    ax.legend(fontsize=7, loc="lower left")
    return save_figure(fig, path)


def build(out: Path, save_figure) -> list:
    """results/fingerprints.md/.csv and figures/fingerprints.png under `out`, when the pass-1 file exists."""
    source = pass1_file(out)
    if not source.is_file():
        return []
    rows = pd.read_csv(source)
    text, table = fingerprint_markdown(rows, training_runs(out, tried_changes(rows)))
    from .variants import FINGERPRINT_RANK

    ranked = candidates(rows)
    greedy, chosen = label(ranked[0]), label(ranked[FINGERPRINT_RANK])
    atomic_write_text(out / "fingerprints.md", text)
    atomic_write_text(out / "fingerprints.csv", table.to_csv(index=False, float_format="%.6g"))
    (out / "figures").mkdir(exist_ok=True)
    return [out / "fingerprints.md", out / "fingerprints.csv", figure(table, greedy, chosen, out / "figures" / "fingerprints.png", save_figure)]


LAB2009_PASSES = (1, 2, 5, 10, 20, 30, 50, 75, 100)


def lab2009_markdown(out: Path) -> str:
    """The lab's 2009 recipe per pass: test error over seeds (every finished run, final pass last)."""
    lines = ["", "### The lab's 2009 recipe (`lab2009`), per pass", "",
             "EBLearn's 2009 MNIST demo as its code defines it (experiments/fingerprint.py LAB2009; REPRODUCING.md, "
             "\"The paper gap\"), trained by the same SDLM machinery: 100 passes, every pass's test error recorded. Its "
             f"documentation reports one run trained \"down to {LAB2009_REPORTED}% error rate\"."]
    runs = load_runs(out, {"lab2009": LAB2009}, LAB2009_SEEDS)
    ok = runs[runs.status == "ok"] if len(runs) else runs
    if not len(ok):
        return "\n".join(lines + ["", "No lab2009 run has finished yet: `python -m experiments.fingerprint train --stage lab2009`."]) + "\n"
    metrics = pd.concat([read_metrics(Path(out) / "runs" / run).assign(seed=seed) for run, seed in zip(ok.run, ok.seed)])
    lines += ["", "| pass | seeds | test error % mean ± std | min | max | training error % (on the fly) |",
              "|---:|---:|---:|---:|---:|---:|"]
    for p in LAB2009_PASSES:
        m = metrics[metrics["pass"] == p]
        if len(m):
            lines.append(f"| {p} | {len(m)} | {m.test_error.mean():.2f} ± {m.test_error.std():.2f} | "
                         f"{m.test_error.min():.2f} | {m.test_error.max():.2f} | {m.train_error.mean():.2f} |")
    final = ok.test_error
    d = prediction_interval(final, LAB2009_REPORTED)
    if d is not None:
        lines += ["", f"Final pass: {final.mean():.3f} ± {final.std():.3f} over {len(final)} seeds; the demo's "
                      f"{LAB2009_REPORTED}% as one run: {d.below:.2f} of our seeds at or below it, 95% prediction "
                      f"interval of one run [{d.low:.2f}, {d.high:.2f}]."]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------------------------
# Command line


@group()
def main():
    """The paper's fingerprints: pass-1 steps of every reading, and the runs that check the choice."""


@main.command()
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True)
@click.option("--seeds", type=click.IntRange(min=1), default=SEEDS, show_default=True)
@data_dir_option
@one_line_errors
def pass1(out, seeds, data_dir):
    """Measure every reading alone, every pair, and the greedy steps; write fingerprints/pass1.csv."""
    out = check_writable(Path(out))
    data = load_mnist(data_dir)
    torch.set_num_threads(1)

    def measure(names):
        click.echo(f"  {label(names)}", err=True)
        return fingerprint_rows(names, data, seeds)

    rows = [r for names in [[]] + [[n] for n in READINGS] for r in measure(names)]
    frame = pd.DataFrame(rows)
    hidden = set(invisible(frame))
    visible = [n for n in READINGS if n not in hidden]
    for pair in combinations(visible, 2):
        if _compatible(pair):
            frame = pd.concat([frame, pd.DataFrame(measure(list(pair)))], ignore_index=True)
    chosen, steps, frame = select(frame, measure)
    path = pass1_file(out)
    path.parent.mkdir(exist_ok=True)
    atomic_write_text(path, frame.to_csv(index=False, float_format="%.6g"))
    for step, name, d in steps:
        click.echo(f"{step:45s} {name:60s} {d:.3f}")
    click.echo(f"chosen: {label(chosen)}; wrote {path}")
    click.echo("changes: " + json.dumps(combine(chosen)))


@main.command()
@click.option("--stage", "stages", multiple=True, type=click.Choice(["val", "fig6", "final", "lab2009"]),
              help="Train only these stages (default: all, in order).")
@click.option("--rank", type=click.IntRange(min=0), default=None,
              help="Validation runs of the candidate of this rank (0: the greedy choice; 1, 2, ...: the pairs by "
                   "distance), for step 5 when the ones before it do not train (default: every candidate up to "
                   "the chosen one, FINGERPRINT_RANK).")
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True)
@click.option("--jobs", type=click.IntRange(min=1), default=2, show_default=True)
@launcher_options
@data_dir_option
@device_option
@engine_option
@one_line_errors
def train(stages, rank, out, jobs, launcher, partition, timeout_min, cpus_per_task, gpus_per_task, array_parallelism,
          log_dir, data_dir, device, engine):
    """Train the validation, Fig. 6 and final runs of the chosen reading and of `paper` (20 passes),
    and the lab's 2009 recipe (100 passes)."""
    from lenet1998.engine import lockstep_key

    out = Path(out)
    if not pass1_file(out).is_file():  # the candidates come from it
        raise click.UsageError(f"{pass1_file(out)} is missing: run `python -m experiments.fingerprint pass1 --out {out}` first")
    if launcher == "local":
        device = resolve_device(device)
    root = check_writable(out / "runs")
    load_mnist(data_dir)
    rows = pd.read_csv(pass1_file(out))
    tried = tried_changes(rows) if rank is None else [combine(candidates(rows)[rank])]
    groups = {}
    for stage, named in run_configs(tried).items():
        if stages and stage not in stages:
            continue
        for name, (config, seeds) in named.items():
            for s in range(seeds):
                run = config.replace(seed=s)
                if not RunFolder(root, run).done:
                    groups.setdefault((stage, lockstep_key(run)), []).append((name, run))
    planned = [(" + ".join(dict.fromkeys(n for n, _ in chunk)), chunk)
               for runs in groups.values() for chunk in fill_lanes(runs)]
    planned.sort(key=lambda group: -sum(c.train_size for _, c in group[1]))  # largest first
    click.echo(f"{sum(len(r) for _, r in planned)} runs to train in {len(planned)} lockstep groups")
    for name, runs in planned:
        click.echo(f"  group of {len(runs)}: {name}")
    launch_from_options(jobs_of(planned, root, data_dir, device, engine, workers=jobs), launcher, jobs, partition,
                        timeout_min, cpus_per_task, gpus_per_task, array_parallelism, log_dir)


if __name__ == "__main__":
    main()
