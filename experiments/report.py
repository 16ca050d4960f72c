"""Tables and figures of the ablation, rebuilt from the run folders without training.

    python -m experiments.report                 # results/ from results/runs
    python -m experiments.report --quick         # results/quick from results/quick/runs

Writes runs.csv (one row per run), ablation.csv and ablation.md (per variant: how many runs
train, median and IQR, mean +- std over every run and over the runs that train; the difference
to `paper` over the runs that train with its Welch 95% interval and a Holm-adjusted Welch test,
the paper's value; the statistics are those of experiments.stats),
paper.csv (the paper's own numbers) and figures/*.png; for the full grid it also refreshes
the results section of README.md. Every number comes from a finished run folder; the final
pass is reported, never the best one.
"""

from __future__ import annotations

import math
from pathlib import Path

import click
import pandas as pd

from lenet1998.paper import FIG5, FIG9_LENET, LINEAR_CLASSIFIER_ERROR
from lenet1998.results import atomic_write_text, check_writable, read_metrics

from .common import data_dir_option, one_line_errors
from .figures import by_variant, loss_curves, save, test_error_curves
from .grid import GRID as GRID_BUDGET, QUICK
from .stats import holm, trains, variant_summary, welch_interval
from .tables import load_runs, trained_on_line
from .variants import GRID as VARIANTS, budget  # the report covers today's single-factor grid

MAX_SHOWN = 120  # digits in the misclassified grid
README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


def collect_runs(out: Path, seeds: int, epochs: int, train_size: int, broken: list | None = None,
                 variants: dict | None = None) -> pd.DataFrame:
    """One row per finished run of `variants` (default: today's single-factor grid), seeds
    0 .. seeds - 1 (experiments.tables.load_runs). Two variants with the same config (a road step
    and a single-factor variant) each get a row of the same run."""
    variants = VARIANTS if variants is None else variants
    return load_runs(out, {name: budget(v.config, epochs, train_size) for name, v in variants.items()}, seeds,
                     broken=broken)


def ablation_table(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per variant of today's single-factor grid that has runs: how many train (final
    test error below the paper's linear classifier), the spread over every run, and the
    comparison with `paper` over the runs that train on both sides: the difference of means, its
    Welch 95% interval and Welch's t-test, Holm-adjusted over every comparison in the table that
    has a test (comparison_table with every base `paper`)."""
    table = comparison_table(runs, VARIANTS, lambda name: None if name == "paper" else "paper")
    return table.rename(columns={"diff": "diff_to_paper"}).drop(columns="base") if len(table) else table


def comparison_table(runs: pd.DataFrame, variants: dict, base_of) -> pd.DataFrame:
    """One row per variant of `variants` that has runs, compared with its base (`base_of(name)`,
    a variant of `variants`; None: a reference row, not compared): the summary of
    experiments.stats over every run, and over the runs that train on both sides the difference
    of means, its Welch 95% interval and Welch's t-test, Holm-adjusted over the comparisons of
    this table that have a test."""
    nan = float("nan")
    if not len(runs):
        return pd.DataFrame()
    errors = {name: runs[runs.variant == name].test_error.where(runs.status == "ok").astype(float)
              for name in variants}  # a failed run: nan, in n, does not train
    used = {name: e[e.map(trains).astype(bool)] for name, e in errors.items()}
    rows = []
    for name, variant in variants.items():
        if not len(errors[name]):
            continue
        base = base_of(name)
        ok = runs[(runs.variant == name) & (runs.status == "ok")]
        summary = variant_summary(errors[name])
        compare = base is not None and len(used[name]) and len(used.get(base, ()))
        welch = welch_interval(used[name], used[base]) if compare else None
        rows.append({
            "variant": name, "what": variant.what, "base": base or "",
            "n_seeds": summary["n_runs"] - int(errors[name].isna().sum()),
            "failed_runs": int(errors[name].isna().sum()), **summary,
            "train_error_mean": ok.train_error.mean() if len(ok) else nan,
            "n_used": len(used[name]), "n_used_base": len(used[base]) if base in used else 0,
            "diff": used[name].mean() - used[base].mean() if compare else nan,
            "diff_ci95_low": welch.low if welch else nan, "diff_ci95_high": welch.high if welch else nan,
            "welch_df": welch.df if welch else nan, "p_welch": welch.p if welch else nan,
            "paper_test_error": variant.paper_test_error,
        })
    table = pd.DataFrame(rows)
    table["p_holm"] = holm(table.p_welch)
    table["resolved_holm"] = (table.p_holm < 0.05).where(table.p_holm.notna())  # empty: no test
    return table


def fmt(x, spec=".2f"):
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def fmt_p(p):
    return "–" if math.isnan(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def family(table: pd.DataFrame) -> list:
    """The variants compared with `paper` by a test: the family of the Holm adjustment."""
    return list(table.variant[table.p_welch.notna()]) if len(table) else []


def ablation_caption(table: pd.DataFrame, seeds: int, epochs: int, train_size: int) -> str:
    tested = family(table)
    paper_used = int(table.n_used[table.variant == "paper"].sum()) if len(table) else 0
    few = list(table.variant[(table.variant != "paper") & (table.n_used < 2)]) if len(table) else []
    flat = list(table.variant[table.diff_ci95_low.notna() & table.p_welch.isna()]) if len(table) else []
    return (
        f"Generated by `python -m experiments.report` from the run folders in `runs/` (every finished seed "
        f"0 .. {seeds - 1} of each variant, *n*: how many; {epochs} passes over {train_size:,} training patterns). "
        "Final pass, never the "
        "best. Training error is measured on the fly during the last pass, as in the paper's Fig. 5 (mean over "
        "every run).\n\n"
        f"A run *trains* when its final test error is below {LINEAR_CLASSIFIER_ERROR:.1f}%, the paper's linear "
        "classifier (Fig. 9). *trains*: k of n runs, with a 95% Wilson score interval for the proportion. "
        "*median [IQR]*: median and interquartile range (25th to 75th percentile, linear interpolation) over "
        "every run; *mean ± std* (ddof=1) over every run and over the runs that train.\n\n"
        "The comparison with `paper` uses only the runs that train, on both sides (*n used*: this variant's; "
        f"`paper`: {paper_used}). *difference [95% "
        "interval]*: mean test error of the variant minus that of `paper`, with the Welch t interval of the "
        "difference of means (95%, two-sided, degrees of freedom by Welch-Satterthwaite, not rounded). "
        "*Holm p*: the two-sided p-value of Welch's t-test, Holm-Bonferroni adjusted over the family of the "
        f"{len(tested)} comparisons with `paper` that have an interval in this table"
        + (" (none: `paper` has fewer than 2 runs that train)" if paper_used < 2 else
           f" (every variant but {', '.join(f'`{v}`' for v in few)}, which {'has' if len(few) == 1 else 'have'} "
           "fewer than 2 runs that train and so no interval)" if few else "")
        + (f"; {', '.join(f'`{v}`' for v in flat)}: no spread on either side, so no test" if flat else "")
        + ". *resolved*: Holm p < 0.05, so the difference is resolved at a family-wise error rate of 5%."
    )


def ablation_markdown(table: pd.DataFrame, seeds: int, epochs: int, train_size: int, runs=None) -> str:
    lines = [
        f"# Ablation: MNIST test error (%) after pass {epochs}",
        "",
        ablation_caption(table, seeds, epochs, train_size),
        "",
        "| variant | change | trains (Wilson 95%) | test error %, median [IQR] | mean ± std, all runs | "
        "mean ± std, runs that train | train error % | n used | vs paper: difference [Welch 95% interval] | "
        "Holm p | resolved | paper's value |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|:---:|---:|",
    ]
    for r in table.itertuples():
        k_of_n = f"{r.n_train} of {r.n_runs} [{fmt(r.train_ci95_low)}, {fmt(r.train_ci95_high)}]"
        if r.failed_runs:
            k_of_n += f" ({r.failed_runs} failed)"
        spread = f"{fmt(r.test_error_median)} [{fmt(r.test_error_q1)}, {fmt(r.test_error_q3)}]"
        every = f"{fmt(r.test_error_mean)} ± {fmt(r.test_error_std)}"
        good = f"{fmt(r.test_error_mean_trains)} ± {fmt(r.test_error_std_trains)}" if r.n_train > 1 else \
            f"{fmt(r.test_error_mean_trains)} (one run)" if r.n_train else "– (none trains)"
        if r.variant == "paper":
            diff, resolved = "–", "–"
        elif math.isnan(r.diff_ci95_low):
            diff = ("no interval: " if math.isnan(r.diff_to_paper) else f"{fmt(r.diff_to_paper, '+.2f')}, no interval: ") + \
                (f"{r.n_used} run{'' if r.n_used == 1 else 's'} train{'s' if r.n_used == 1 else ''}")
            resolved = "–"
        else:
            diff = f"{fmt(r.diff_to_paper, '+.2f')} [{fmt(r.diff_ci95_low, '+.2f')}, {fmt(r.diff_ci95_high, '+.2f')}]"
            resolved = "–" if pd.isna(r.resolved_holm) else ("yes" if r.resolved_holm else "no")
        lines.append(f"| {r.variant} | {r.what} | {k_of_n} | {spread} | {every} | {good} | {fmt(r.train_error_mean)} | "
                     f"{r.n_used} | {diff} | {fmt_p(r.p_holm)} | {resolved} | {fmt(r.paper_test_error)} |")
    runs = runs if runs is not None else pd.DataFrame()
    return "\n".join(lines + missing_line(table) + machine_time_line(runs) + trained_on_line(runs)) + "\n"


# --------------------------------------------------------------------------------------------
# The other families (experiments/variants.py): each variant against its base, one table each.

# file stem: (family, title, the reference rows shown above the family's variants, what the base is)
FAMILY_TABLES = {
    "add_one_in": ("add_one_in", "Add one paper piece to `modern`", ("modern",),
                   "`modern`: each row puts one paper piece back into the modern network"),
    "roadmap": ("road", "The road from 1998 to modern, one piece per step", ("paper",),
                "the previous step: each row switches one more piece, in the order fixed in "
                "experiments/variants.py (ROAD_ORDER) before any result"),
    "open_questions": ("open_question", "The paper's open questions, measured", ("paper", "paper+distortions"),
                       "`paper` (`paper+distortions` for the distortion ranges): each row changes one reading"),
}
PAPER_UNCERTAINTY = 0.1  # points: the paper quotes results to about 0.1% (Sec. III-C)


def family_variants(stem: str) -> dict:
    """The variants of one family table: its reference rows, then the family in table order."""
    from .variants import VARIANTS as ALL, family as members

    name, _, references, _ = FAMILY_TABLES[stem]
    return {n: ALL[n] for n in list(references) + members(name)}


def family_table(runs: pd.DataFrame, stem: str) -> pd.DataFrame:
    variants = family_variants(stem)
    references = FAMILY_TABLES[stem][2]
    table = comparison_table(runs, variants, lambda n: None if n in references else variants[n].base)
    if len(table):
        low, high = table.diff_ci95_low, table.diff_ci95_high
        beyond = (low > PAPER_UNCERTAINTY) | (high < -PAPER_UNCERTAINTY)
        inside = (low >= -PAPER_UNCERTAINTY) & (high <= PAPER_UNCERTAINTY)
        table["vs_paper_uncertainty"] = ["–" if pd.isna(lo) else "beyond" if b else "inside" if i else "undecided"
                                         for lo, b, i in zip(low, beyond, inside)]
    return table


def family_markdown(table: pd.DataFrame, stem: str, seeds: int, epochs: int, train_size: int) -> str:
    _, title, _, base_text = FAMILY_TABLES[stem]
    tested = family(table)
    lines = [
        f"# {title}: MNIST test error (%) after pass {epochs}", "",
        f"Generated by `python -m experiments.report` from the run folders in `runs/` (every finished seed "
        f"0 .. {seeds - 1}; {epochs} passes over {train_size:,} training patterns). Final pass, never the best. "
        f"Each row is compared with its *base*, {base_text}. The statistics are those of `ablation.md`: a run "
        f"trains when its final test error is below {LINEAR_CLASSIFIER_ERROR:.1f}% (the paper's linear "
        "classifier); the difference of means over the runs that train on both sides, with its Welch t interval "
        "(95%, two-sided, Welch-Satterthwaite degrees of freedom, not rounded); *Holm p*: Welch's t-test, "
        f"Holm-Bonferroni adjusted over the {len(tested)} comparisons of this table that have a test. "
        f"*vs ±{PAPER_UNCERTAINTY}*: whether the interval lies beyond the paper's quoted uncertainty of about "
        f"{PAPER_UNCERTAINTY} points (*beyond*), inside it (*inside*), or straddles its edge (*undecided*).",
        "",
        "| variant | base | change | trains (Wilson 95%) | test error %, median [IQR] | mean ± std, runs that "
        "train | n used (base) | vs base: difference [Welch 95% interval] | Holm p | resolved | "
        f"vs ±{PAPER_UNCERTAINTY} |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|:---:|:---:|",
    ]
    for r in table.itertuples():
        k_of_n = f"{r.n_train} of {r.n_runs} [{fmt(r.train_ci95_low)}, {fmt(r.train_ci95_high)}]"
        good = f"{fmt(r.test_error_mean_trains)} ± {fmt(r.test_error_std_trains)}" if r.n_train > 1 else \
            f"{fmt(r.test_error_mean_trains)} (one run)" if r.n_train else "– (none trains)"
        if not r.base:
            diff, resolved, used = "(reference)", "–", f"{r.n_used}"
        else:
            used = f"{r.n_used} ({r.n_used_base})"
            diff = "no interval" if math.isnan(r.diff_ci95_low) else \
                f"{fmt(r.diff, '+.2f')} [{fmt(r.diff_ci95_low, '+.2f')}, {fmt(r.diff_ci95_high, '+.2f')}]"
            resolved = "–" if pd.isna(r.resolved_holm) else ("yes" if r.resolved_holm else "no")
        lines.append(f"| {r.variant} | {r.base or '–'} | {r.what} | {k_of_n} | {fmt(r.test_error_median)} "
                     f"[{fmt(r.test_error_q1)}, {fmt(r.test_error_q3)}] | {good} | {used} | {diff} | "
                     f"{fmt_p(r.p_holm)} | {resolved} | {r.vs_paper_uncertainty} |")
    missing = [n for n in family_variants(stem) if n not in set(table.variant)]
    if missing:
        lines += ["", "Not run yet: " + ", ".join(f"`{m}`" for m in missing) + "."]
    return "\n".join(lines) + "\n"


def paper_by_engine(runs: pd.DataFrame) -> str:
    """`paper`'s seeds by the engine path that trained them, side by side (seeds 0-2 came from
    version 0.1's engine, later seeds from the C kernel), with the Welch interval between them."""
    paper = runs[(runs.variant == "paper") & (runs.status == "ok")] if len(runs) else runs
    groups = paper.groupby("engine") if len(paper) else []
    sets = {e: g.sort_values("seed") for e, g in sorted(groups, key=lambda eg: eg[1].seed.min())}  # oldest first
    if len(sets) < 2:
        return ""
    lines = ["", "## `paper` by the engine that trained it", "",
             "The same config trained by different engine paths (the manifests' `segments[].engine`; "
             "*unknown*: version 0.1, before the record). All paths are held to the reference trainer "
             "by the tests; this compares the seeds each one trained.", "",
             "| engine | seeds | n | test error %, mean ± std | code (commits) |", "|---|---|---:|---:|---|"]
    for e, g in sets.items():
        lines.append(f"| {e} | {', '.join(map(str, g.seed))} | {len(g)} | {fmt(g.test_error.mean())} ± "
                     f"{fmt(g.test_error.std(ddof=1))} | {', '.join(dict.fromkeys(g.git_commit))} |")
    (a, ga), (b, gb) = list(sets.items())[:2]
    w = welch_interval(gb.test_error, ga.test_error)
    if w:
        lines += ["", f"{b} minus {a}: {fmt(w.diff, '+.2f')} points, Welch 95% interval "
                  f"[{fmt(w.low, '+.2f')}, {fmt(w.high, '+.2f')}], p = {fmt_p(w.p)}."]
    return "\n".join(lines) + "\n"


def seeds_figure(runs: pd.DataFrame, table: pd.DataFrame, path: Path, title: str, reference_line=None):
    """One row per variant, top to bottom in table order: every seed a dot, the mean of the runs
    that train with its 95% t interval (a bar), the runs that do not train in red."""
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import stats as st

    ok = runs[runs.status == "ok"]
    fig, ax = plt.subplots(figsize=(7.5, 0.42 * len(table) + 1.6))
    for i, name in enumerate(table.variant):
        e = ok[ok.variant == name].test_error.to_numpy()
        good = e[e < LINEAR_CLASSIFIER_ERROR]
        ax.scatter(good, [i] * len(good), s=14, color="0.55", zorder=1, label="one seed" if i == 0 else None)
        ax.scatter(e[e >= LINEAR_CLASSIFIER_ERROR], [i] * int((e >= LINEAR_CLASSIFIER_ERROR).sum()), s=14,
                   color="tab:red", marker="x", zorder=1)
        if len(good) > 1:
            half = st.t.ppf(0.975, len(good) - 1) * good.std(ddof=1) / math.sqrt(len(good))
            ax.errorbar(good.mean(), i, xerr=half, fmt="o", color="tab:blue", capsize=3, zorder=2,
                        label="mean, 95% t interval (runs that train)" if i == 0 else None)
    if reference_line:
        ax.axvline(reference_line[0], color="k", ls="--", lw=1, label=reference_line[1])
    scale = "linear"
    if len(ok):
        low, high = 0.9 * min(ok.test_error.min(), reference_line[0] if reference_line else 1e9), 1.1 * ok.test_error.max()
        ax.set_xlim(low, high)
        if high / low > 4:  # runs that do not train next to runs near 1%: a log scale shows both
            scale = "log"
            ax.set_xscale("log")
            nice = [0.5, 0.6, 0.8, 1, 1.2, 1.5, 2, 3, 5, 10, 20, 50, 100]
            ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([t for t in nice if low <= t <= high]))
            ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
            ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax.set_yticks(range(len(table)), table.variant)
    ax.set(xlabel=f"final test error (%){', log scale' if scale == 'log' else ''}; x: a run that does not train",
           title=title)
    ax.invert_yaxis()
    ax.legend(fontsize=7, loc="best")
    return save_figure(fig, path)


PLAN_FROM_SEEDS = 10  # the seed plan reads seeds 0-9 only, so it never changes once they exist
PLAN_TARGET = 0.10  # points: the half-width the plan aims at (the ablation issue)
PLAN_REFERENCE_SEEDS = 20  # `paper` is the reference of every comparison: it gets the most seeds


def seed_plan(runs: pd.DataFrame) -> pd.DataFrame:
    """How many seeds each single-factor variant trains, chosen from the spreads of seeds 0-9
    alone, never from a difference (experiments.stats.seeds_needed): `paper` gets 20; a stable
    variant (all of its 10 runs train) gets the smallest count up to 20 whose Welch 95% interval
    against `paper`'s 20 would be at most +-0.10 points wide, with its projected half-width; an
    unstable variant keeps 10 (what it is compared on is how often it trains). Variants with
    fewer than 10 finished seeds are not planned yet."""
    from .stats import seeds_needed

    first = runs[(runs.seed < PLAN_FROM_SEEDS) & (runs.status == "ok")] if len(runs) else runs
    paper = first[first.variant == "paper"].test_error if len(first) else []
    if len(paper) < PLAN_FROM_SEEDS:
        return pd.DataFrame()
    rows = []
    for name in VARIANTS:
        e = first[first.variant == name].test_error
        if len(e) < PLAN_FROM_SEEDS:
            continue
        stable = bool(e.map(trains).all())
        if name == "paper":
            n, width, why = PLAN_REFERENCE_SEEDS, float("nan"), "the reference of every comparison"
        elif not stable:
            n, width, why = PLAN_FROM_SEEDS, float("nan"), "unstable: compared on how often it trains"
        else:
            n, width = seeds_needed(e.std(ddof=1), paper.std(ddof=1), PLAN_REFERENCE_SEEDS, PLAN_TARGET,
                                    PLAN_FROM_SEEDS, PLAN_REFERENCE_SEEDS)
            why = f"projected half-width {width:.3f}" + ("" if width <= PLAN_TARGET else " (20 seeds cannot reach 0.10)")
        rows.append({"variant": name, "stable": stable, "std_seeds_0_9": e.std(ddof=1), "seeds": n,
                     "projected_half_width": width, "why": why})
    return pd.DataFrame(rows)


def seed_plan_markdown(plan: pd.DataFrame) -> str:
    lines = ["# Seeds per single-factor variant, chosen from the spreads of seeds 0-9", "",
             "Generated by `python -m experiments.report` (experiments.report.seed_plan) and trained by "
             "`python -m experiments.ablate --all --seed-plan`. The counts come from the standard deviations of "
             "seeds 0-9 alone, never from a difference or a test, so the plan cannot stop on a result; seeds 0-9 "
             "never change, so neither does the plan. `paper` gets 20 seeds (it is the reference of every "
             f"comparison); a stable variant (all 10 runs train) the smallest count up to 20 whose Welch 95% "
             f"interval against `paper` would be at most ±{PLAN_TARGET:.2f} points wide; an unstable one stays at 10.",
             "", "| variant | stable | std of seeds 0-9 | seeds | why |", "|---|:---:|---:|---:|---|"]
    for r in plan.itertuples():
        lines.append(f"| {r.variant} | {'yes' if r.stable else 'no'} | {fmt(r.std_seeds_0_9, '.3f')} | {r.seeds} | {r.why} |")
    return "\n".join(lines) + "\n"


def build_families(out: Path, seeds: int, epochs: int, train_size: int, latex: bool = False) -> list:
    """<stem>.csv, <stem>.md and figures/<stem>.png for each family that has a run."""
    written = []
    for stem, (_, title, references, _) in FAMILY_TABLES.items():
        runs = collect_runs(out, seeds, epochs, train_size, variants=family_variants(stem))
        members = set(family_variants(stem)) - set(references)
        if not len(runs) or not runs.variant.isin(members).any():
            continue
        table = family_table(runs, stem)
        for name, text in [(f"{stem}.csv", table.to_csv(index=False, float_format="%.6g")),
                           (f"{stem}.md", family_markdown(table, stem, seeds, epochs, train_size))]:
            atomic_write_text(out / name, text)
            written.append(out / name)
        line = (0.95, "paper: 0.95%") if stem != "add_one_in" else None
        written.append(seeds_figure(runs, table, check_writable(out / "figures") / f"{stem}.png", title, line))
    return written


def latex_escape(text: str) -> str:
    for a, b in [("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"), ("#", r"\#"),
                 ("_", r"\_"), ("{", r"\{"), ("}", r"\}"), ("~", r"\textasciitilde{}"), ("^", r"\^{}"),
                 ("±", r"$\pm$"), ("–", "--")]:
        text = text.replace(a, b) if a != "{" and a != "}" else text
    return text


def ablation_latex(table: pd.DataFrame, seeds: int, epochs: int, train_size: int) -> str:
    """The ablation table as a LaTeX booktabs tabular (needs \\usepackage{booktabs})."""
    lines = [f"% Generated by `python -m experiments.report --format latex` from the run folders "
             f"(every finished seed below {seeds}, {epochs} passes over {train_size:,} patterns); final pass, never the best.",
             r"\begin{tabular}{lrrrrrr}", r"\toprule",
             r"variant & trains & median [IQR] & mean $\pm$ std (trains) & $\Delta$ vs paper [95\% CI] & "
             r"Holm $p$ & paper \\", r"\midrule"]
    for r in table.itertuples():
        good = f"{fmt(r.test_error_mean_trains)} $\\pm$ {fmt(r.test_error_std_trains)}" if r.n_train > 1 else \
            fmt(r.test_error_mean_trains)
        diff = "--" if math.isnan(r.diff_ci95_low) else \
            f"{fmt(r.diff_to_paper, '+.2f')} [{fmt(r.diff_ci95_low, '+.2f')}, {fmt(r.diff_ci95_high, '+.2f')}]"
        cells = [r"\texttt{" + latex_escape(r.variant) + "}", f"{r.n_train}/{r.n_runs}",
                 f"{fmt(r.test_error_median)} [{fmt(r.test_error_q1)}, {fmt(r.test_error_q3)}]", good, diff,
                 latex_escape(fmt_p(r.p_holm)).replace("<", "$<$"), fmt(r.paper_test_error)]
        lines.append(" & ".join(c.replace("–", "--") for c in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def machine_time_line(runs: pd.DataFrame) -> list:
    """The grid's cost from its run folders: each run's passes (training, h_kk estimate and
    evaluation; `pass_time_s`, summed over resumed stretches) shared by its lockstep group."""
    if not len(runs):
        return []
    hours = float((runs.pass_time_s / runs.replicas_in_group).sum()) / 3600
    return ["", f"Machine time of these {len(runs)} runs, from their run folders: {hours:.1f} h of one "
            f"process (per-pass wall times divided by the lockstep group size; compiling and loading not "
            f"counted), so about {hours / 2:.1f} h of wall time with `--jobs 2` on this 2-core machine."]


def paper_csv() -> str:
    rows = [{"source": "Fig. 5", "pass": p, "test_error": t, "train_error": tr} for p, (t, tr) in FIG5.items()]
    rows += [{"source": "Fig. 9", "method": m, "test_error": e} for m, e in FIG9_LENET.items()]
    return pd.DataFrame(rows).to_csv(index=False)


def per_pass(out: Path, runs: pd.DataFrame) -> pd.DataFrame:
    frames = []
    for r in runs[runs.status == "ok"].itertuples() if len(runs) else []:
        m = read_metrics(out / "runs" / r.run)
        frames.append(m.assign(variant=r.variant, seed=r.seed))
    return pd.concat(frames) if frames else pd.DataFrame()


def figures(out: Path, runs: pd.DataFrame, table: pd.DataFrame, data_dir) -> list:
    import matplotlib
    import matplotlib.ticker

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    sns.set_theme(style="whitegrid")
    folder = check_writable(out / "figures")  # a read-only figures/: one line naming it
    written = []

    # Per pass, small multiples by variant (experiments/figures.py): every seed a line.
    grouped = by_variant(out, runs[runs.status == "ok"] if len(runs) else runs)
    if grouped:
        written += test_error_curves(grouped, folder / "test_error_curves")[:1]
        written += loss_curves(grouped, folder / "loss_curves")[:1]

    ok = runs[runs.status == "ok"] if len(runs) else runs
    if len(table) and len(ok):  # every run failed: no error to plot
        fig, ax = plt.subplots(figsize=(7, 0.4 * len(table) + 1.5))
        position = {name: i for i, name in enumerate(table.variant)}
        ax.scatter(ok.test_error, [position[v] for v in ok.variant], s=12, color="0.6", zorder=1, label="one seed")
        ax.errorbar(table.test_error_mean, range(len(table)), xerr=table.test_error_std.fillna(0), fmt="o", capsize=3,
                    zorder=2, label="mean ± sd")
        ax.axvline(0.95, color="k", ls="--", lw=1, label="paper: 0.95%")
        ax.set_yticks(range(len(table)), table.variant)
        low, high = 0.9 * min(ok.test_error.min(), 0.95), 1.1 * ok.test_error.max()
        ax.set(xscale="log", xlim=(low, high), xlabel="final test error (%), log scale",
               title="Ablation: final test error over seeds")
        nice = [0.5, 0.7, 1, 1.5, 2, 3, 5, 10, 20, 50, 100]
        ax.xaxis.set_major_locator(matplotlib.ticker.FixedLocator([t for t in nice if low <= t <= high]))
        ax.xaxis.set_major_formatter(matplotlib.ticker.ScalarFormatter())
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.invert_yaxis()
        ax.legend()
        written.append(save_figure(fig, folder / "ablation.png"))

    # The figures that show digits need MNIST; without it the rest is still built.
    from lenet1998.data import DataError

    skipped, why = [], None
    try:
        written.append(distortion_examples(folder, data_dir, plt))
    except DataError as e:
        skipped, why = ["distortions.png"], e
    paper_runs = runs[(runs.variant == "paper") & (runs.status == "ok")] if len(runs) else runs
    if len(paper_runs):
        if why is None:
            written.append(misclassified(out, paper_runs.sort_values("seed").iloc[0], folder, data_dir, plt))
        else:
            skipped.append("misclassified.png")
    if skipped:
        click.echo(f"skipped the figures that show digits ({', '.join(skipped)}): {str(why).splitlines()[0]}", err=True)
    return written


def distortion_examples(folder, data_dir, plt):
    """Distorted versions of a few training digits, as drawn for seed 0 (the paper's Fig. 7)."""
    from lenet1998.data import ink, load_mnist
    from lenet1998.distortions import distort, sample_parameters
    from lenet1998.patterns import STREAM_DISTORTIONS, generator

    data = load_mnist(data_dir, download=False)
    digits = ink(data.train_images[:6])  # (6, 32, 32)
    copies = 9
    params = sample_parameters(6 * copies, generator(0, STREAM_DISTORTIONS))
    out = distort(digits.repeat_interleave(copies, 0), params).view(6, copies, 32, 32)
    fig, axes = plt.subplots(6, copies + 1, figsize=(copies + 1, 6.3))
    for i in range(6):
        axes[i, 0].imshow(digits[i].numpy(), cmap="gray_r", vmin=0, vmax=1)
        for c in range(copies):
            axes[i, c + 1].imshow(out[i, c].numpy(), cmap="gray_r", vmin=0, vmax=1)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_title("original", fontsize=8)
    fig.suptitle("Random affine distortions on the 32x32 field (translation, scale, squeeze, shear)")
    return save_figure(fig, folder / "distortions.png")


def misclassified(out, run, folder, data_dir, plt):
    """The test digits the first paper run gets wrong, true -> predicted (the paper's Fig. 8)."""
    import torch

    from lenet1998.data import encode, load_mnist
    from lenet1998.results import load_trained

    model = load_trained(out / "runs" / run.run / "checkpoint.pt")
    data = load_mnist(data_dir, download=False)
    with torch.no_grad():
        x = encode(data.test_images, model.config.input_coding).unsqueeze(1)
        pred = torch.cat([model.predict(model(x[s:s + 1000])) for s in range(0, len(x), 1000)])
    wrong = (pred != data.test_labels).nonzero().flatten().tolist()
    shown = wrong[:MAX_SHOWN]
    cols = 12
    rows = max(1, math.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 0.9, rows * 1.1))
    for ax in axes.flat:
        ax.axis("off")
    for ax, i in zip(axes.flat, shown):
        ax.imshow(data.test_images[i].numpy(), cmap="gray_r")
        ax.set_title(f"{int(data.test_labels[i])}->{int(pred[i])}", fontsize=8)
    more = f" (first {len(shown)} shown)" if len(shown) < len(wrong) else ""
    fig.suptitle(f"The {len(wrong)}{more} test patterns misclassified by the paper variant (seed {run.seed}), true->predicted")
    return save_figure(fig, folder / "misclassified.png")


def save_figure(fig, path):
    """Write `fig` to `path` (PNG) and beside it as PDF, each atomically, and close it
    (experiments.figures.save); returns the PNG's path."""
    fig.tight_layout()
    return save(fig, path.with_suffix(""))[0]


def paper_run_table(out: Path, runs: pd.DataFrame) -> pd.DataFrame:
    """Per pass: each paper-variant seed's test and on-the-fly training error, and Fig. 5."""
    curves = per_pass(out, runs)
    if not len(curves) or not (curves.variant == "paper").any():
        return pd.DataFrame()
    paper = curves[curves.variant == "paper"]
    table = paper.pivot_table(index="pass", columns="seed", values=["test_error", "train_error"])
    table.columns = [f"{kind}_seed{seed}" for kind, seed in table.columns]
    table["test_error_mean"] = paper.groupby("pass").test_error.mean()
    table["train_error_mean"] = paper.groupby("pass").train_error.mean()
    table["paper_test_error"] = [FIG5.get(p, (None, None))[0] for p in table.index]
    table["paper_train_error"] = [FIG5.get(p, (None, None))[1] for p in table.index]
    eps = [c for c in paper.columns if c.startswith("eps_")]
    if eps:  # the step sizes eps_k of seed 0's first pass, per layer (the paper: 7e-5 .. 0.016)
        first = paper[(paper.seed == paper.seed.min())].set_index("pass")[eps]
        table["eps_min"] = first.filter(like="eps_min").min(axis=1)
        table["eps_max"] = first.filter(like="eps_max").max(axis=1)
    return table.reset_index()


def paper_run_markdown(table: pd.DataFrame) -> str:
    seeds = sorted({c.rsplit("seed", 1)[1] for c in table.columns if "_seed" in c})
    head = ["pass"] + [f"test s{s}" for s in seeds] + ["test mean", "paper test"] + \
        [f"train s{s}" for s in seeds] + ["train mean", "paper train", "eps_k range (seed 0)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in table.to_dict("records"):
        cells = [str(int(r["pass"]))] + [fmt(r.get(f"test_error_seed{s}")) for s in seeds] + \
            [fmt(r["test_error_mean"]), fmt(r["paper_test_error"])] + \
            [fmt(r.get(f"train_error_seed{s}")) for s in seeds] + [fmt(r["train_error_mean"]), fmt(r["paper_train_error"])] + \
            [f"{r['eps_min']:.1e} .. {r['eps_max']:.1e}" if "eps_min" in r else "–"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def readme_section(table: pd.DataFrame, runs: pd.DataFrame) -> str:
    lines = ["## Results", "", "Generated from `results/ablation.csv` by `python -m experiments.report`; "
             f"final test error after 20 passes. A run trains when its test error is below {LINEAR_CLASSIFIER_ERROR:.1f}%, "
             "the paper's linear classifier (Fig. 9); median over every run, mean ± std over the runs that train. "
             "Full table, with Welch intervals and Holm-adjusted tests against `paper`: `results/ablation.md`.", "",
             "| variant | trains | test error %, median | mean ± std, runs that train | paper |",
             "|---|---:|---:|---:|---:|"]
    for r in table.itertuples():
        good = f"{fmt(r.test_error_mean_trains)} ± {fmt(r.test_error_std_trains)}" if r.n_train > 1 else \
            f"{fmt(r.test_error_mean_trains)} (one run)" if r.n_train else "–"
        lines.append(f"| {r.variant} | {r.n_train} of {r.n_runs} | {fmt(r.test_error_median)} | {good} | "
                     f"{fmt(r.paper_test_error)} |")
    return "\n".join(lines + missing_line(table))


def missing_line(table: pd.DataFrame) -> list:
    missing = [name for name in VARIANTS if name not in set(table.variant if len(table) else [])]
    return ["", "Not run yet: " + ", ".join(f"`{m}`" for m in missing) + "."] if missing else []


MAX_SEEDS = 20  # the report reads every finished seed below this (the ablation issue: at most 20)


def build_report(out, seeds=MAX_SEEDS, epochs=GRID_BUDGET.epochs, train_size=GRID_BUDGET.train_size, data_dir=None,
                 readme=None, latex=False) -> list:
    """Rebuild every table and figure under `out` from its run folders (every finished seed
    below `seeds`); returns the paths."""
    out = check_writable(out)
    broken = []
    runs = collect_runs(out, seeds, epochs, train_size, broken)
    for reason in broken:  # one line each; the tables are built from the healthy runs
        click.echo(f"skipped broken run: {reason}", err=True)
    table = ablation_table(runs)
    written = []
    for name, text in [("runs.csv", runs.to_csv(index=False)),
                       ("ablation.csv", table.to_csv(index=False, float_format="%.6g")),
                       ("ablation.md", ablation_markdown(table, seeds, epochs, train_size, runs)),
                       ("paper.csv", paper_csv())] + \
            ([("ablation.tex", ablation_latex(table, seeds, epochs, train_size))] if latex and len(table) else []):
        atomic_write_text(out / name, text)
        written.append(out / name)
    paper_run = paper_run_table(out, runs)
    paper_md = ""
    if len(paper_run):
        paper_md = paper_run_markdown(paper_run)
        atomic_write_text(out / "paper_run.csv", paper_run.to_csv(index=False, float_format="%.4g"))
        atomic_write_text(out / "paper_run.md", "# The paper variant per pass, against Fig. 5\n\n"
                          "Generated by `python -m experiments.report`. Error in %; training error measured on the "
                          "fly during each pass, as in Fig. 5 (digitized, about ±0.05%).\n\n" + paper_md)
        written += [out / "paper_run.csv", out / "paper_run.md"]
    plan = seed_plan(runs)
    if len(plan):
        atomic_write_text(out / "seed_plan.csv", plan.to_csv(index=False, float_format="%.6g"))
        atomic_write_text(out / "seed_plan.md", seed_plan_markdown(plan))
        written += [out / "seed_plan.csv", out / "seed_plan.md"]
    engine_section = paper_by_engine(runs)
    if engine_section:
        atomic_write_text(out / "ablation.md", ablation_markdown(table, seeds, epochs, train_size, runs) + engine_section)
    written += build_families(out, seeds, epochs, train_size, latex)
    written += figures(out, runs, table, data_dir)
    if readme is not None and len(table):
        repo = Path(readme).parent
        sections = {repo / "README.md": readme_section(table, runs),
                    repo / "REPRODUCING.md": "### Ablation (generated)\n\n" + ablation_markdown(table, seeds, epochs, train_size, runs).split("\n", 2)[2]
                    + ("\n### The paper variant per pass (generated)\n\n" + paper_md if paper_md else "")}
        for path, section in sections.items():
            if path.is_file() and fill_section(path, section):
                written.append(path)
    return written


def fill_section(path: Path, section: str, start: str = README_START, end: str = README_END) -> bool:
    """Replace the text between the markers `start` and `end` of `path`; False if it has none."""
    text = path.read_text()
    if start not in text or end not in text:
        return False
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    atomic_write_text(path, head + start + "\n" + section + "\n" + end + tail)
    return True


def repository_docs(out, quick: bool, seeds: int, epochs: int):
    """README.md (whose folder also holds REPRODUCING.md) when the report describes the grid
    committed in results/ (20 passes; the report reads every seed there is); None for --quick,
    another --out or another budget."""
    repo = Path(__file__).resolve().parent.parent
    if quick or Path(out).resolve() != (repo / "results").resolve() or epochs != GRID_BUDGET.epochs:
        return None
    return repo / "README.md"


@click.command()
@click.option("--out", type=click.Path(file_okay=False), default=None, help="Results folder (default results/).")
@click.option("--seeds", type=click.IntRange(min=1), default=None,
              help=f"Read seeds 0 .. N-1 of each variant (default {MAX_SEEDS}: every seed trained).")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Passes per run (default 20).")
@click.option("--quick", is_flag=True, help="The --quick grid of experiments.ablate.")
@click.option("--format", "formats", type=click.Choice(["markdown", "latex"]), multiple=True,
              help="latex: also write ablation.tex (a booktabs tabular) beside ablation.md and ablation.csv.")
@click.option("--tensorboard", type=click.Path(file_okay=False), default=None, metavar="DIR",
              help="Instead of rebuilding the tables: log every finished run under <out>/runs to TensorBoard, "
                   "from its metrics.csv, as DIR/<variant or label>/seed<N> (needs the tensorboard extra).")
@data_dir_option
@one_line_errors
def main(out, seeds, epochs, quick, formats, tensorboard, data_dir):
    """Rebuild results/ tables and figures from the run folders."""
    out = Path(out or ("results/quick" if quick else "results"))
    budget_ = QUICK if quick else GRID_BUDGET
    seeds, epochs = seeds or (budget_.seeds if quick else MAX_SEEDS), epochs or budget_.epochs
    if tensorboard:
        from .tensorboard import export_runs

        names = export_runs(out / "runs", Path(tensorboard))
        click.echo(f"logged {len(names)} runs of {out / 'runs'} to {tensorboard} (tensorboard --logdir {tensorboard})")
        return
    paths = build_report(out, seeds, epochs, budget_.train_size, data_dir,
                         readme=repository_docs(out, quick, seeds, epochs), latex="latex" in formats)
    click.echo("wrote " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()
