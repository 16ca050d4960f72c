"""The report's one family of tests: every distinct comparison of a variant with its base.

Each row of ablation.md (a variant against `paper`) and of the family tables (add_one_in.md,
roadmap.md, open_questions.md: a variant against its `base`) compares two configs twice:

    mean      the mean final test error over the runs that train on both sides (Welch's t-test)
    fraction  how many runs train, k of n against the base's (Fisher's exact test, two-sided)

The comparisons are fixed by the variant definitions (experiments/variants.py and the tables'
FAMILY_TABLES), never by the data: a pair of configs that two tables both show (a road step and
the single-factor variant with the same config) is one comparison, and a comparison that has no
test yet (fewer than 2 runs that train on a side, no spread, no runs) still counts, with p = 1.
Holm-Bonferroni adjusts all of them together, so that a test has one adjusted p wherever it is
printed, and the family-wise error rate of 5% covers every verdict of the report.

    pairs()            the distinct (variant, base) comparisons, in table order
    family(runs)       one row per comparison: its raw p-values and their Holm-adjusted ones
    adjusted(family)   {(variant, base): (Holm p of the mean, Holm p of the fraction)}, by config
"""

from __future__ import annotations

import math

import pandas as pd
from .stats import fraction_test, holm, trains, welch_interval
from .variants import GRID, comparison_key as key

TESTS = ("mean", "fraction")


def table_pairs() -> dict:
    """{table stem: [(variant, base), ...]}: the comparisons each table prints."""
    from .ablation_tables import FAMILY_TABLES, family_variants

    out = {"ablation": [(name, "paper") for name in GRID if name != "paper"]}
    for stem, (_, _, references, _) in FAMILY_TABLES.items():
        out[stem] = [(name, v.base) for name, v in family_variants(stem).items() if name not in references]
    return out


def pairs() -> list:
    """Every distinct (variant, base) comparison of the report, in table order, each once (by the
    configs it compares)."""
    seen = {}
    for table in table_pairs().values():
        for variant, base in table:
            seen.setdefault(key(variant, base), (variant, base))
    return list(seen.values())


def family(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per comparison of `pairs()`: n and k (runs, runs that train) on both sides, Welch's
    p over the runs that train and Fisher's p of the fractions (nan where there is no test), and
    both Holm-adjusted over the whole family of 2 x len(pairs()) tests, in which a comparison
    without a test counts with p = 1 (its adjusted p is nan: there is nothing to read). runs:
    experiments.tables load_runs rows of every variant of the pairs (a failed run does not train)."""
    def errors(name):
        if not len(runs):
            return pd.Series([], dtype=float)
        mine = runs[runs.variant == name]
        return mine.test_error.where(mine.status == "ok").astype(float)

    rows = []
    for variant, base in pairs():
        e, b = errors(variant), errors(base)
        good, good_base = e[e.map(trains).astype(bool)], b[b.map(trains).astype(bool)]
        welch = welch_interval(good, good_base)
        p_mean = welch.p if welch is not None else math.nan  # nan: no test (counted below with p = 1)
        rows.append({"variant": variant, "base": base, "n": len(e), "k": len(good), "n_base": len(b),
                     "k_base": len(good_base), "p_welch": p_mean,
                     "p_fisher": fraction_test(len(good), len(e), len(good_base), len(b))})
    table = pd.DataFrame(rows)
    raw = pd.concat([table.p_welch, table.p_fisher], ignore_index=True)
    adjusted = pd.Series(holm(raw.fillna(1.0))).where(raw.notna())  # every test counts; untested ones at p = 1
    table["p_welch_holm"] = adjusted[:len(table)].to_numpy()
    table["p_fisher_holm"] = adjusted[len(table):].to_numpy()
    return table


def adjusted(family_table: pd.DataFrame) -> dict:
    """{(canonical variant, canonical base): (Holm p of the mean, Holm p of the fraction)}; look a
    row up with `key(variant, base)`."""
    return {key(r.variant, r.base): (r.p_welch_holm, r.p_fisher_holm) for r in family_table.itertuples()}


def caption(family_table: pd.DataFrame) -> str:
    """The sentence every table's caption uses to say what its Holm p is adjusted over."""
    n = len(family_table)
    return (f"Holm-Bonferroni adjusted over the report's one family of {2 * n} tests: the {n} distinct comparisons "
            "of a variant with its base in ablation.md, add_one_in.md, roadmap.md and open_questions.md, each by "
            "its mean (Welch) and by its trained fraction (Fisher's exact test), fixed by the variant "
            "definitions (experiments/comparisons.py); a comparison without a test yet counts with p = 1")


def markdown(family_table: pd.DataFrame, seeds: int, epochs: int, train_size: int) -> str:
    """comparisons.md: every test of the family, raw and adjusted, in table order."""
    from .tables import fmt_p

    lines = [
        "# The report's one family of tests", "",
        f"Generated by `python -m experiments.report` from the run folders (every finished seed 0 .. {seeds - 1}; "
        f"{epochs} passes over {train_size:,} training patterns). Every distinct comparison of a variant with its "
        "base that ablation.md, add_one_in.md, roadmap.md and open_questions.md print, each once (a pair of configs "
        "shown in two tables is one comparison, listed under its first name), fixed by the variant definitions. "
        "Each is tested twice: its mean test error over the runs that train on both sides (Welch's t-test, "
        "two-sided) and its trained fraction, k of n runs below the linear classifier's 12% against the base's "
        "(Fisher's exact test, two-sided). A comparison without a test yet (fewer than 2 runs that train on a "
        f"side, no spread, no runs) counts with p = 1. {caption(family_table)}. The tables print these adjusted "
        "p-values, so that one test has one p wherever it appears.", "",
        "| variant | base | train (k of n) | base trains | Welch p | Holm p (mean) | Fisher p | Holm p (fraction) |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in family_table.itertuples():
        lines.append(f"| {r.variant} | {r.base} | {r.k} of {r.n} | {r.k_base} of {r.n_base} | {fmt_p(r.p_welch)} | "
                     f"{fmt_p(r.p_welch_holm)} | {fmt_p(r.p_fisher)} | {fmt_p(r.p_fisher_holm)} |")
    resolved = family_table[(family_table.p_welch_holm < 0.05) | (family_table.p_fisher_holm < 0.05)]
    lines += ["", f"Resolved at a family-wise error rate of 5%: {len(resolved)} of {len(family_table)} comparisons "
              f"({int((family_table.p_welch_holm < 0.05).sum())} by the mean, "
              f"{int((family_table.p_fisher_holm < 0.05).sum())} by the trained fraction)."]
    return "\n".join(lines) + "\n"
