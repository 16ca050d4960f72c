"""Tables from run folders: one builder of rows, one summary, one renderer.

    load_runs(out, configs, seeds)        one row per finished run (a broken one is listed, not read)
    summarize(runs, by=..., reference=...) per group: n, mean ± std (ddof=1), the difference to a
                                          reference group with its Welch 95% interval
                                          (experiments/stats.py), the paper's value, and the
                                          engines, devices and hosts that trained its runs
    comparison_table(runs, variants, base_of, holm_p)  per variant: the summary of experiments.stats
                                          (runs that train, median and IQR, mean ± std), the Welch
                                          difference to its base over the runs that train and Fisher's
                                          test of the trained fractions, with their Holm-adjusted p from
                                          the report's one family (experiments/comparisons.py)
    markdown(table, columns), csv_text(table)

A run is identified by its config hash, whatever machine trained it: runs of one config from
several machines (a laptop, cluster nodes, a GPU) share a folder name and pool in one row;
the `trained on` column says which engines and devices they came from.
Every number comes from a finished run folder, final pass, never the best one.
"""

from __future__ import annotations

import math

import pandas as pd

from lenet1998.results import RunFolder, read_manifest, read_metrics

from .stats import fraction_test, trains, variant_summary, welch_interval


def trained_on(manifest: dict) -> tuple[str, str, str]:
    """(engines, devices, hosts) of a finished run, each '+'-joined over its resumed stretches."""
    segments = manifest.get("segments") or [{}]

    def seen(key, fallback):
        return "+".join(dict.fromkeys(str(s.get(key) or fallback) for s in segments))

    return seen("engine", "unknown"), seen("device", manifest.get("device", "unknown")), seen("host", "unknown")


def load_runs(out, configs: dict, seeds, by: str = "variant", broken: list | None = None) -> pd.DataFrame:
    """One row per finished run under <out>/runs: configs {key: config with its budget}, each
    for seeds 0..seeds-1 (an int, or {key: seeds}); the key goes in column `by`. A finished run
    whose folder no longer reads back (corrupt manifest, metrics or checkpoint) is left out; its
    one-line reason goes to `broken`."""
    from pathlib import Path

    from lenet1998.networks import build

    rows = []
    for key, config in configs.items():
        params, connections = build(config).counts()["total"]  # the config's own network (networks.py)
        for seed in range(seeds if isinstance(seeds, int) else seeds[key]):
            folder = RunFolder(Path(out) / "runs", config.replace(seed=seed))
            if not folder.finished:
                continue
            reason = folder.check()
            if reason:
                if broken is not None:
                    broken.append(reason)
                continue
            m = read_manifest(folder.path)
            engines, devices, hosts = trained_on(m)
            rows.append({
                by: key, "seed": seed, "status": m["status"], "failure": m.get("failure"),
                "test_error": m["final_test_error"], "train_error": m.get("final_train_error"),
                "train_error_eval": m.get("final_train_error_eval"), "passes": m["passes"],
                "params": params, "connections": connections, "git_commit": str(m.get("git_commit", ""))[:12],
                "git_dirty": m.get("git_dirty"), "torch": m.get("torch"), "device": m.get("device"),
                "cpu": m.get("cpu"), "threads": m.get("threads"), "wall_time_s": round(m["wall_time_s"], 1),
                "pass_time_s": round(float(read_metrics(folder.path).wall_time_s.sum()), 1),
                "replicas_in_group": m.get("replicas_in_group", 1), "engine": engines, "devices": devices,
                "hosts": hosts, "run": folder.path.name,
            })
    return pd.DataFrame(rows)


def summarize(runs: pd.DataFrame, by: str = "variant", value: str = "test_error", reference=None,
              paper: dict | None = None, order=None) -> pd.DataFrame:
    """One row per value of `by` among the runs that ended ok: n, mean and std (ddof=1) of
    `value`; the difference of means to the `reference` group with its Welch 95% interval (none
    when either side has fewer than 2 runs); the paper's value (paper: {group: value}); and
    `trained_on`, the engines/devices seen (runs of one config trained on several machines pool)."""
    nan = float("nan")
    ok = runs[runs.status == "ok"] if len(runs) else runs
    groups = [g for g in (order if order is not None else dict.fromkeys(ok[by] if len(ok) else []))
              if len(ok) and (ok[by] == g).any()]
    base = ok[ok[by] == reference][value].astype(float) if reference is not None and len(ok) else pd.Series([], dtype=float)
    rows = []
    for g in groups:
        x = ok[ok[by] == g]
        values = x[value].astype(float)
        compare = reference is not None and g != reference and len(base)
        welch = welch_interval(values, base) if compare else None
        seen = sorted({f"{e} on {d}" for e, d in zip(x.get("engine", ["?"] * len(x)), x.get("devices", x.device))})
        rows.append({
            by: g, "n": len(values), "mean": values.mean(), "std": values.std(ddof=1) if len(values) > 1 else nan,
            "diff": values.mean() - base.mean() if compare else nan,
            "diff_ci95_low": welch.low if welch else nan, "diff_ci95_high": welch.high if welch else nan,
            "paper": (paper or {}).get(g, nan), "trained_on": "; ".join(seen),
            "hosts": len({h for hs in x.get("hosts", []) for h in str(hs).split("+")}),
        })
    return pd.DataFrame(rows)


def comparison_table(runs: pd.DataFrame, variants: dict, base_of, holm_p: dict) -> pd.DataFrame:
    """One row per variant of `variants` that has runs, compared with its base (`base_of(name)`,
    a variant of `variants`; None: a reference row, not compared): the summary of
    experiments.stats over every run; over the runs that train on both sides the difference of
    means, its Welch 95% interval and Welch's t-test; Fisher's exact test of the trained
    fractions (k of n against the base's); and both p-values Holm-adjusted over the report's one
    family (holm_p: experiments.comparisons.adjusted, looked up by the configs compared; a row
    prints its adjusted p only where it has a test of its own)."""
    from .variants import comparison_key as key

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
            "n_train_base": len(used[base]) if base in used else nan,
            "n_runs_base": len(errors[base]) if base in errors else nan,
            "p_fisher": fraction_test(len(used[name]), len(errors[name]), len(used[base]), len(errors[base]))
            if base in errors else nan,
            "paper_test_error": variant.paper_test_error,
        })
    table = pd.DataFrame(rows)
    family = [holm_p.get(key(r.variant, r.base), (nan, nan)) if r.base else (nan, nan) for r in table.itertuples()]
    table["p_holm"] = [p if not math.isnan(own) else nan for (p, _), own in zip(family, table.p_welch)]
    table["resolved_holm"] = (table.p_holm < 0.05).where(table.p_holm.notna())  # empty: no test
    table["p_fisher_holm"] = [p if not math.isnan(own) else nan for (_, p), own in zip(family, table.p_fisher)]
    table["fraction_resolved_holm"] = (table.p_fisher_holm < 0.05).where(table.p_fisher_holm.notna())
    return table


def fmt(x, spec: str = ".2f") -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def fmt_p(p) -> str:
    """A p-value as the tables print it: three decimals, "< 0.001" below that, "–" for none."""
    return "–" if math.isnan(p) else ("< 0.001" if p < 0.001 else f"{p:.3f}")


def mean_std(mean, std) -> str:
    return f"{fmt(mean)} ± {fmt(std)}" if not (isinstance(std, float) and math.isnan(std)) else f"{fmt(mean)} (one run)"


def difference(diff, low, high) -> str:
    if isinstance(diff, float) and math.isnan(diff):
        return "–"
    if isinstance(low, float) and math.isnan(low):
        return f"{fmt(diff, '+.2f')}, no interval"
    return f"{fmt(diff, '+.2f')} [{fmt(low, '+.2f')}, {fmt(high, '+.2f')}]"


def markdown(table: pd.DataFrame, by: str = "variant", label: str | None = None, key_format=str) -> str:
    """A summarize() table as Markdown: group, n, mean ± std, difference [Welch 95%], paper,
    trained on; the last line says whether runs from several engines, devices or hosts pooled."""
    lines = [f"| {label or by} | n | mean ± std | difference [Welch 95%] | paper | trained on |",
             "|---:|---:|---:|---:|---:|---|"]
    for r in table.to_dict("records"):
        lines.append(f"| {key_format(r[by])} | {r['n']} | {mean_std(r['mean'], r['std'])} | "
                     f"{difference(r['diff'], r['diff_ci95_low'], r['diff_ci95_high'])} | {fmt(r['paper'])} | "
                     f"{r['trained_on']} |")
    return "\n".join(lines + pooled_line(table)) + "\n"


def pooled_line(table: pd.DataFrame) -> list:
    """A caption line naming the engines/devices/hosts when runs of several pooled."""
    if not len(table):
        return []
    seen = sorted({s for cell in table.trained_on for s in str(cell).split("; ") if s})
    hosts = int(table.hosts.max()) if "hosts" in table else 1
    if len(seen) <= 1 and hosts <= 1:
        return []
    return ["", f"Runs pooled by config hash from {len(seen)} engine/device combinations ({', '.join(seen)})"
            + (f" and up to {hosts} hosts per row" if hosts > 1 else "") + "."]


def csv_text(table: pd.DataFrame) -> str:
    return table.to_csv(index=False, float_format="%.6g")


def trained_on_line(runs: pd.DataFrame) -> list:
    """A caption line: the engines and devices behind the runs, with counts (runs of one config
    pool whatever machine trained them)."""
    if not len(runs) or "engine" not in runs:
        return []
    counts = pd.Series([f"{e} on {d}" for e, d in zip(runs.engine, runs.devices)]).value_counts()
    hosts = {h for hs in runs.hosts for h in str(hs).split("+") if h != "unknown"}
    return ["", "Trained on: " + ", ".join(f"{k} ({v} run{'s' if v > 1 else ''})" for k, v in counts.items())
            + (f", {len(hosts)} hosts" if len(hosts) > 1 else "")
            + "; runs of one config (one hash) pool whatever engine, device or machine trained them."]
