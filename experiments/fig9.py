"""Fig. 9-12: LeNet-5 among the paper's other networks, measured under one protocol.

    python -m experiments.fig9 classical     # K-NN (k = 1, 3) and the pairwise classifier, exact
    python -m experiments.ablate --family fig9   # the trained rows (lenet1998/networks.py)
    python -m experiments.fig9 rejection     # Fig. 10 of every finished trained run, from its checkpoint
    python -m experiments.fig9 lenet4-knn    # LeNet-4 / K-NN: each net_lenet4 run's 120 units, k = 1 and 3
    python -m experiments.boosted            # boosted LeNet-4: nets 2 and 3, and the combination
    python -m experiments.report             # results/fig9.md/.csv/.tex and figures/fig9.png

The rows not trained by back-propagation (lenet1998/classical.py) are deterministic: computed
once on the full MNIST sets into results/fig9/classical.json, with the commit and machine that
computed them. LeNet-4 / K-NN reads each finished net_lenet4 run (results/fig9/lenet4_knn.json),
boosted LeNet-4 the combinations in results/fig9/boosted.json (experiments/boosted.py). The
trained rows come from their run folders (final pass, every seed); LeNet-5's
rows are `paper` and `paper+distortions`. Each row: the paper's error (Fig. 9), ours, the
difference against the paper's ±0.1, the share of test patterns rejected to reach 0.5% error
(Fig. 10: the smallest difference of the top two scores first; for a trained row, each run's
final network on the test set, in results/fig9/rejection.json, averaged over the seeds), and the
multiply-adds per recognition and parameters (Fig. 11, 12) counted from the model.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import click
import numpy as np
import pandas as pd
import torch

from lenet1998 import networks
from lenet1998.classical import UNIT_OUTPUT, knn, pairwise_fit, pairwise_scores, rejection
from lenet1998.data import encode, load_mnist
from lenet1998.paper import LINEAR_CLASSIFIER_ERROR
from lenet1998.patterns import test_images
from lenet1998.results import (
    RunFolder, atomic_write_text, check_writable, cpu_model, git_state, load_trained, read_manifest,
)

from .ablation_tables import PAPER_UNCERTAINTY, latex_escape, latex_signs, versus_uncertainty
from .common import command, data_dir_option, one_line_errors
from .grid import GRID
from .stats import mean_interval
from .tables import fmt, load_runs
from .variants import VARIANTS, budget, family

FOLDER = "fig9"
CLASSICAL = "classical.json"
REJECTION = "rejection.json"
MAX_SEEDS = 20  # seeds read per trained row (paper has 20)

# The rows of Fig. 9 built here, in the paper's order: (row, source, what). source: a variant
# (trained rows, every finished seed) or "classical:<key>" (classical.json); NOT_BUILT names the rest.
ROWS = [
    ("linear", "net_linear", "784 -> 10, bias"),
    ("pairwise", "classical:pairwise", "45 units i/j, least squares"),
    ("K-NN Euclidean, k = 1", "classical:knn_k1", "28x28 pixels, exact"),
    ("K-NN Euclidean, k = 3", "classical:knn_k3", "28x28 pixels, exact"),
    ("28x28-300-10", "net_fc300", ""),
    ("28x28-300-10 + distortions", "net_fc300+distortions", ""),
    ("28x28-1000-10", "net_fc1000", ""),
    ("28x28-1000-10 + distortions", "net_fc1000+distortions", ""),
    ("28x28-300-100-10", "net_fc300_100", ""),
    ("28x28-300-100-10 + distortions", "net_fc300_100+distortions", ""),
    ("28x28-500-150-10", "net_fc500_150", ""),
    ("28x28-500-150-10 + distortions", "net_fc500_150+distortions", ""),
    ("LeNet-1 [16x16]", "net_lenet1", ""),
    ("LeNet-4", "net_lenet4", ""),
    ("LeNet-4 + distortions", "net_lenet4+distortions", "no number in the paper: net 1 of a boosted reading"),
    ("LeNet-4 / K-NN, k = 1", "lenet4_knn:1", "K-NN on LeNet-4's 120 units"),
    ("LeNet-4 / K-NN, k = 3", "lenet4_knn:3", "K-NN on LeNet-4's 120 units"),
    ("LeNet-5", "paper", ""),
    ("LeNet-5 + distortions", "paper+distortions", ""),
    ("boosted LeNet-4 + distortions", "boosted:net_lenet4", "3 LeNet-4s, nets 2 and 3 on filtered new distortions"),
    ("boosted, net 1 on distortions", "boosted:net_lenet4+distortions", "the same, net 1 on the distortion pool"),
]
# The paper's numbers of the rows not in lenet1998/networks.py PAPER_ROWS (Fig. 9-12, SPEC.md
# section 16): error %, Fig. 10 rejection %, thousands of multiply-adds, thousands of variables.
PAPER_CLASSICAL = {"pairwise": (7.6, None, 36, 35), "knn_k1": (5.0, None, None, None),
                   "knn_k3": (5.0, None, None, None)}
PAPER_REJECTION = {"net_lenet1": 3.7, "net_lenet4": 1.8}  # Fig. 10's other bars: rows not built here
LENET4_KNN = "lenet4_knn.json"  # python -m experiments.fig9 lenet4-knn: one entry per net_lenet4 run and k
PAPER_LENET4_KNN = (1.1, 1.6, 10_000, 24_000)  # error %, Fig. 10 rejection %, Fig. 11 and 12 (thousands)
BOOSTED = "boosted.json"  # python -m experiments.boosted: one entry per net 1 reading and seed
PAPER_BOOSTED = (0.7, 0.5, 460, 51)  # error %, Fig. 10 rejection %, Fig. 11 and 12 (thousands)
PAPER_BOOSTED_COST = 1.75  # "about 1.75 times the cost of a single LeNet-4" (Sec. III-C.8)


VALIDATION = 10_000  # the last training patterns: the pairwise classifier's reading is chosen on them


def classical_rows(data) -> dict:
    """{row: {"test_error", "rejection_0.5", "params", "multiply_adds"}} of K-NN (k = 1, 3) and
    the pairwise classifier on the full sets. How a pairwise unit's output enters the score
    (lenet1998/classical.py UNIT_OUTPUT) is chosen first: units fitted on the first 50,000
    training patterns, each reading's error on the last 10,000 (recorded), the lower one kept;
    then the units are fitted on all 60,000 and the test set is read once."""
    rows = {}
    for k in (1, 3):
        predicted, scores = knn(data.train_images, data.train_labels, data.test_images, k=k)
        rows[f"knn_k{k}"] = {
            "test_error": 100.0 * float((predicted != data.test_labels).double().mean()),
            "rejection_0.5": rejection(scores, data.test_labels),  # scores: minus each class's nearest distance
            "params": int(data.train_images.numel()),  # the stored training set: 60,000 x 784 values
            "multiply_adds": int(data.train_images.numel()),  # one per stored value and test pattern
        }
    fit_images, fit_labels = data.train_images[:-VALIDATION], data.train_labels[:-VALIDATION]
    val_images, val_labels = data.train_images[-VALIDATION:], data.train_labels[-VALIDATION:]
    units = pairwise_fit(fit_images, fit_labels)
    validation = {o: 100.0 * float((pairwise_scores(units, val_images, o).argmax(1) != val_labels).double().mean())
                  for o in UNIT_OUTPUT}
    chosen = min(validation, key=lambda o: (validation[o], o != "linear"))  # a tie keeps the literal reading
    units = pairwise_fit(data.train_images, data.train_labels)
    scores = pairwise_scores(units, data.test_images, chosen)
    rows["pairwise"] = {"test_error": 100.0 * float((scores.argmax(1) != data.test_labels).double().mean()),
                        "rejection_0.5": rejection(scores, data.test_labels), "params": int(units.numel()),
                        "multiply_adds": int(units.numel()), "unit_output": chosen,
                        "validation_error": validation}
    return rows


def trained_variants() -> dict:
    """The variants of the trained rows: the fig9 family and LeNet-5's own rows."""
    return {n: VARIANTS[n] for n in ["paper", "paper+distortions", *family("fig9")]}


def scores(model, config, images) -> torch.Tensor:
    """(N, 10) scores of a trained network, the highest being its answer: minus the penalties of
    an RBF or target head, or the logits of a linear output."""
    with torch.no_grad():
        out = torch.cat([model(images[s:s + 1000].unsqueeze(1)) for s in range(0, len(images), 1000)])
    return out if config.output == "linear" else -out


def rejection_rows(out: Path, data, known: dict) -> dict:
    """{run folder name: {variant, seed, test_error, recorded_test_error, rejection_0.5}} of every
    finished run of the trained rows (the grid's budget: 20 passes over 60,000 patterns; seeds
    below MAX_SEEDS), from its final checkpoint on the test set; runs already in `known` are
    kept as they are."""
    rows = dict(known)
    coded = {}
    for name, v in trained_variants().items():
        for seed in range(MAX_SEEDS):
            folder = RunFolder(out / "runs", budget(v.config, GRID.epochs, GRID.train_size).replace(seed=seed))
            if folder.path.name in rows or not folder.finished:
                continue
            model = load_trained(folder.path / "checkpoint.pt")
            if folder.config.input_coding not in coded:
                coded[folder.config.input_coding] = test_images(folder.config, data)
            images, labels = coded[folder.config.input_coding]
            s = scores(model, folder.config, images)
            rows[folder.path.name] = {
                "variant": name, "seed": seed, "test_error": 100.0 * float((s.argmax(1) != labels).double().mean()),
                "recorded_test_error": read_manifest(folder.path)["final_test_error"],
                "rejection_0.5": rejection(s, labels)}
    return rows


def features(model, config, images) -> torch.Tensor:
    """(N, 120) outputs of LeNet-4's fully connected layer H: what its last layer reads."""
    out = []
    with torch.no_grad():
        for s in range(0, len(images), 1000):
            trace = []
            model(images[s:s + 1000].unsqueeze(1), trace)
            out.append(trace[-1][2])  # the input of the last stage, F
    return torch.cat(out)


def lenet4_knn_rows(out: Path, data) -> dict:
    """{"<run folder> k=<k>": {seed, k, test_error, rejection_0.5}} for every finished net_lenet4
    run (the grid's budget, seeds below MAX_SEEDS): its last layer replaced by K-NN on H's 120
    outputs of the 60,000 training images (Sec. III-C.7, "LeNet-4 with K-nearest neighbors"),
    k = 1 and 3 (not stated), Euclidean, by lenet1998.classical.knn (its vote and tie rule; the
    distances of these float codes are float64 sums, not exact integers)."""
    rows = {}
    v = VARIANTS["net_lenet4"]
    for seed in range(MAX_SEEDS):
        folder = RunFolder(out / "runs", budget(v.config, GRID.epochs, GRID.train_size).replace(seed=seed))
        if not folder.finished:
            continue
        model = load_trained(folder.path / "checkpoint.pt")
        train = features(model, folder.config, encode(data.train_images, folder.config.input_coding))
        images, labels = test_images(folder.config, data)
        test = features(model, folder.config, images)
        for k in (1, 3):
            predicted, s = knn(train, data.train_labels, test, k=k)
            rows[f"{folder.path.name} k={k}"] = {
                "seed": seed, "k": k, "test_error": 100.0 * float((predicted != labels).double().mean()),
                "rejection_0.5": rejection(s, labels)}
    return rows


@command()
@click.argument("what", type=click.Choice(["classical", "rejection", "lenet4-knn"]))
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True,
              help="Results folder: writes <out>/fig9/classical.json or <out>/fig9/rejection.json "
                   "(rejection reads the run folders under <out>/runs).")
@data_dir_option
@one_line_errors
def main(what, out, data_dir):
    """Compute the rows of Fig. 9 that are not trained (classical: K-NN, k = 1 and 3; the pairwise
    classifier), or Fig. 10's rejection of every finished trained run (rejection)."""
    torch.set_num_threads(1)
    target = check_writable(Path(out) / FOLDER)
    data = load_mnist(data_dir)
    if what == "lenet4-knn":
        path = target / LENET4_KNN
        rows = lenet4_knn_rows(Path(out), data)
        record = {"runs": rows, "command": "python -m experiments.fig9 lenet4-knn", **git_state()}
        atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
        click.echo(f"wrote {path}: {len(rows)} runs")
        return
    if what == "rejection":
        path = target / REJECTION
        known = json.loads(path.read_text())["runs"] if path.is_file() else {}
        rows = rejection_rows(Path(out), data, known)
        record = {"runs": rows, "command": "python -m experiments.fig9 rejection", **git_state()}
        atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n")
        click.echo(f"wrote {path}: {len(rows)} runs ({len(rows) - len(known)} new)")
        return
    rows = classical_rows(data)
    record = {"rows": rows, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "cpu": cpu_model(), "torch": torch.__version__, **git_state(),
              "command": "python -m experiments.fig9 classical"}
    atomic_write_text(target / CLASSICAL, json.dumps(record, indent=2, sort_keys=True) + "\n")
    for name, r in rows.items():
        click.echo(f"{name}: test error {r['test_error']:.2f}%, rejection for 0.5% error {r['rejection_0.5']:.1f}%")
    click.echo(f"wrote {target / CLASSICAL}")


# --------------------------------------------------------------------------------------------
# The table (experiments.report): results/fig9.md/.csv/.tex and figures/fig9.png


def trains_below(source: str) -> float:
    """A run trains when its final test error is below the paper's linear classifier (12%, as in
    every table of the report); the linear classifier's own runs, whose target that is, when
    below 50% (chance is 90%)."""
    return 50.0 if source == "net_linear" else LINEAR_CLASSIFIER_ERROR


def _read(path: Path, key: str) -> dict:
    return json.loads(path.read_text())[key] if path.is_file() else {}


def table(out: Path, seeds: int = MAX_SEEDS, epochs: int = GRID.epochs, train_size: int = GRID.train_size) -> pd.DataFrame:
    """One row per row of Fig. 9 that is built here (ROWS): the paper's numbers beside ours."""
    classical = _read(out / FOLDER / CLASSICAL, "rows")
    rejected = pd.DataFrame(_read(out / FOLDER / REJECTION, "runs").values(), columns=["variant", "seed", "rejection_0.5"])
    variants = trained_variants()
    runs = load_runs(out, {n: budget(v.config, epochs, train_size) for n, v in variants.items()}, seeds)
    rows = []
    for label, source, what in ROWS:
        row = {"row": label, "source": source, "what": what}
        if source.startswith("classical:"):
            key = source.split(":", 1)[1]
            paper = PAPER_CLASSICAL[key]
            c = classical.get(key)
            row.update(paper_error=paper[0], paper_rejection=paper[1], paper_multiply_adds_k=paper[2],
                       paper_params_k=paper[3], n=1 if c else 0, n_runs=1 if c else 0, seeds="exact" if c else "")
            if c:
                row.update(error=c["test_error"], error_std=math.nan, rejection=c["rejection_0.5"],
                           multiply_adds=c["multiply_adds"], params=c["params"], difference=c["test_error"] - paper[0],
                           diff_ci95_low=math.nan, diff_ci95_high=math.nan, errors="")
        elif source.startswith("lenet4_knn:"):
            row.update(lenet4_knn_row(_read(out / FOLDER / LENET4_KNN, "runs"), int(source.split(":")[1]), seeds))
        elif source.startswith("boosted:"):
            row.update(boosted_row(_read(out / FOLDER / BOOSTED, "rows").get(source.split(":", 1)[1], {}), seeds))
        else:
            v = variants[source]
            network = v.config.network
            paper = networks.PAPER_ROWS[network]
            distorted = v.config.distortions != "none"
            params, connections = networks.build(v.config).counts()["total"]
            r = runs[(runs.variant == source) & (runs.status == "ok")] if len(runs) else runs
            everything = r.sort_values("seed").test_error.to_numpy() if len(r) else np.array([])
            e = everything[everything < trains_below(source)]  # the runs that train
            rej = rejected[(rejected.variant == source) & rejected.seed.isin(r[r.test_error < trains_below(source)].seed
                                                                               if len(r) else [])]
            m = mean_interval(e)
            row.update(paper_error=v.paper_test_error, paper_rejection=PAPER_REJECTION.get(source),
                       paper_multiply_adds_k=paper["multiply_adds_k"] if not distorted else None,
                       paper_params_k=paper["memory_k"] if not distorted else None, n=len(e), n_runs=len(everything),
                       seeds=" ".join(f"{x:.2f}" for x in everything), error=float(e.mean()) if len(e) else math.nan,
                       error_std=m.std if m else math.nan,
                       rejection=float(rej["rejection_0.5"].mean()) if len(rej) else math.nan,
                       n_rejection=len(rej), multiply_adds=connections, params=params,
                       difference=(float(e.mean()) - v.paper_test_error) if len(e) and v.paper_test_error else math.nan,
                       diff_ci95_low=m.low - v.paper_test_error if m and v.paper_test_error else math.nan,
                       diff_ci95_high=m.high - v.paper_test_error if m and v.paper_test_error else math.nan,
                       failed=int((runs.variant == source).sum() - len(r)) if len(runs) else 0)
        rows.append(row)
    return versus_uncertainty(pd.DataFrame(rows))


def _over_seeds(r: list, paper_error: float) -> dict:
    """The cells every row of per-seed results shares: `r` ({test_error, rejection_0.5} per seed,
    in seed order) summarised over the seeds that train, against the paper's error."""
    everything = np.array([x["test_error"] for x in r])
    train = [x for x in r if x["test_error"] < LINEAR_CLASSIFIER_ERROR]
    e = np.array([x["test_error"] for x in train])
    m = mean_interval(e)
    return dict(paper_error=paper_error, n=len(e), n_runs=len(everything), seeds=" ".join(f"{x:.2f}" for x in everything),
                error=float(e.mean()) if len(e) else math.nan, error_std=m.std if m else math.nan,
                rejection=float(np.mean([x["rejection_0.5"] for x in train])) if train else math.nan,
                n_rejection=len(train), difference=float(e.mean()) - paper_error if len(e) else math.nan,
                diff_ci95_low=m.low - paper_error if m else math.nan,
                diff_ci95_high=m.high - paper_error if m else math.nan, failed=0)


def lenet4_knn_row(runs: dict, k: int, seeds: int) -> dict:
    """A LeNet-4 / K-NN row from lenet4_knn.json: one result per net_lenet4 seed below `seeds`.
    Counts: LeNet-4 up to H, then 60,000 stored 120-unit codes, each compared once."""
    error, rejection_, multiply_adds, memory = PAPER_LENET4_KNN
    counts = networks.build(VARIANTS["net_lenet4"].config).counts()
    stored = GRID.train_size * 120
    r = sorted((x for x in runs.values() if x["k"] == k and x["seed"] < seeds), key=lambda x: x["seed"])
    return dict(_over_seeds(r, error), paper_rejection=rejection_, paper_multiply_adds_k=multiply_adds,
                paper_params_k=memory,
                multiply_adds=sum(counts[n][1] for n in ("C1", "S2", "C3", "S4", "H")) + stored,
                params=sum(counts[n][0] for n in ("C1", "S2", "C3", "S4", "H")) + stored)


def boosted_row(runs: dict, seeds: int) -> dict:
    """The boosted LeNet-4 row from boosted.json's seeds below `seeds`: the full sum's error
    (mean over the seeds whose combination trains), its rejection, the multiply-adds of the
    shortcut (the nets it calls on average times one LeNet-4's), and three LeNet-4s' parameters."""
    error, rejection_, cost, params = PAPER_BOOSTED
    params_one, connections_one = networks.build(VARIANTS["net_lenet4"].config).counts()["total"]
    r = sorted((x for k, x in runs.items() if int(k) < seeds), key=lambda x: x["seed"])
    train = [x for x in r if x["test_error"] < LINEAR_CLASSIFIER_ERROR]
    called = float(np.mean([x["nets_called"] for x in train])) if train else math.nan
    return dict(_over_seeds(r, error), paper_rejection=rejection_, paper_multiply_adds_k=cost, paper_params_k=params,
                multiply_adds=called * connections_one if train else math.nan, params=3 * params_one,
                nets_called=called,
                shortcut_error=float(np.mean([x["shortcut_test_error"] for x in train])) if train else math.nan)


def _k(x) -> str:
    """Thousands, as Fig. 11 and 12 print them."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    return f"{x / 1000:,.0f}" if x >= 10_000 else f"{x / 1000:,.1f}"


NOT_BUILT = ("Not built yet: LeNet-4 / Local (local learning), the deslanted rows "
             "(20x20-300-10, K-NN on deslanted images), the 1000-unit RBF net and the tangent-distance and SVM rows. "
             "LeNet-4's sizes are a reading (no reading of its unstated sizes is within 25% of both the paper's "
             "17,000 parameters and 260,000 connections): REPRODUCING.md.")


def markdown(t: pd.DataFrame, seeds: int, epochs: int, train_size: int) -> str:
    lines = [f"# Fig. 9-12: LeNet-5 among the paper's other networks, MNIST test error (%) after pass {epochs}", "",
             "Generated by `python -m experiments.report` from the run folders in `runs/` (every finished seed "
             f"0 .. {seeds - 1} of the `fig9` family and of `paper` / `paper+distortions`; {epochs} passes over "
             f"{train_size:,} patterns, per-pattern SDLM as LeNet-5 trains; final pass, never the best) and from "
             "`fig9/classical.json` (K-NN and the pairwise classifier, exact: no seeds) and `fig9/rejection.json` "
             "(`python -m experiments.fig9 rejection`). *ours*: mean ± std (n) over the runs that train (final test "
             f"error below {LINEAR_CLASSIFIER_ERROR:.0f}%, the paper's linear classifier, as in every table of the report; "
             "the linear classifier's own runs: below 50%), every seed listed. "
             "*ours - paper*: the difference of the mean from the paper's value with its 95% t interval (n - 1 "
             f"degrees of freedom); *vs ±{PAPER_UNCERTAINTY}*: whether that interval lies beyond the paper's quoted "
             f"uncertainty of about {PAPER_UNCERTAINTY} points, inside it, or straddles an edge. *rejection*: the "
             "share of test patterns to reject, smallest difference of the two highest scores first, so that the "
             "rest reach 0.5% error (Fig. 10; a trained row: the mean over its seeds). *multiply-adds* and "
             "*parameters*: thousands, per recognition, counted from the model (Sec. II-B's rule: biases count as "
             "connections; a fully connected net's multiply-adds equal its parameters; K-NN stores and compares "
             "every training value); the paper's are Fig. 11 and 12, shown only where its bar is this row. The "
             "readings these rows rest on: REPRODUCING.md, \"The other networks of Fig. 9\".", "",
             f"| row | paper % | ours %: mean ± std (n) | seeds | ours - paper [95%] | vs ±{PAPER_UNCERTAINTY} | "
             "rejection % for 0.5% error: paper | ours | multiply-adds (k): paper | ours | parameters (k): paper | "
             "ours |",
             "|---|---:|---:|---|---:|:---:|---:|---:|---:|---:|---:|---:|"]
    for r in t.itertuples():
        if r.n_runs == 0:
            ours, diff = "not run yet", "–"
        elif r.seeds == "exact":
            ours, diff = f"{r.error:.2f} (exact)", f"{r.difference:+.2f}"
        else:
            ours = (f"{r.error:.2f} ± {fmt(r.error_std)} ({r.n})" if r.n else "–") + \
                (f", {r.n_runs - r.n} of {r.n_runs} do not train" if r.n_runs > r.n else "") + \
                (f", {r.failed} failed" if r.failed else "")
            diff = f"{r.difference:+.2f} [{r.diff_ci95_low:+.2f}, {r.diff_ci95_high:+.2f}]" if not math.isnan(r.diff_ci95_low) else \
                (f"{r.difference:+.2f}" if not math.isnan(r.difference) else "–")
        lines.append(f"| {r.row} | {fmt(r.paper_error)} | {ours} | {r.seeds if r.seeds != 'exact' else '–'} | "
                     f"{diff} | {r.vs_paper_uncertainty} | {fmt(r.paper_rejection, '.1f')} | {fmt(r.rejection, '.1f')} | "
                     f"{fmt(r.paper_multiply_adds_k, ',.0f')} | {_k(r.multiply_adds)} | "
                     f"{fmt(r.paper_params_k, ',.0f')} | {_k(r.params)} |")
    boosted = t[t.source.str.startswith("boosted:") & (t.n > 0)]
    if len(boosted):
        lines += ["", "Boosted LeNet-4 (`python -m experiments.boosted`, `fig9/boosted.json`): *ours* is the sum of the "
                      "three nets' outputs on every test pattern; net 1 is the LeNet-4 run of the same seed (`net_lenet4`, "
                      "or `net_lenet4+distortions` on the second row). With the shortcut (net 1 alone where its margin "
                      "reaches a threshold chosen on new distorted patterns, not the test set) the error is " +
                  "; ".join(f"{b.shortcut_error:.2f}% at {b.nets_called:.2f} nets per pattern on average ({b.row})"
                            for b in boosted.itertuples()) +
                  f" (the paper: about {PAPER_BOOSTED_COST} nets); the multiply-adds are that many LeNet-4s'. The "
                  "readings (set sizes, the stream, the threshold, net 1): REPRODUCING.md."]
    lines += ["", NOT_BUILT]
    return "\n".join(lines) + "\n"


def latex(t: pd.DataFrame, seeds: int, epochs: int, train_size: int) -> str:
    """The table as a LaTeX booktabs tabular (needs \\usepackage{booktabs})."""
    lines = [f"% Generated by `python -m experiments.report --format latex` (every finished seed below {seeds}, "
             f"{epochs} passes over {train_size:,} patterns); final pass, never the best. See fig9.md.",
             r"\begin{tabular}{lrrrrrr}", r"\toprule",
             r"row & paper (\%) & ours (\%) & ours $-$ paper [95\% CI] & rejection (\%) & mult.-adds (k) & "
             r"params (k) \\", r"\midrule"]
    for r in t.itertuples():
        ours = "--" if r.n == 0 else f"{r.error:.2f}" if r.seeds == "exact" else f"{r.error:.2f} $\\pm$ {fmt(r.error_std)}" + \
            (f" ({r.n}/{r.n_runs} train)" if r.n_runs > r.n else "")
        diff = "--" if r.n == 0 else latex_signs(f"{r.difference:+.2f}" + ("" if math.isnan(r.diff_ci95_low) else
                                                                     f" [{r.diff_ci95_low:+.2f}, {r.diff_ci95_high:+.2f}]"))
        cells = [latex_escape(r.row), fmt(r.paper_error), ours, diff, fmt(r.rejection, ".1f"), _k(r.multiply_adds),
                 _k(r.params)]
        lines.append(" & ".join(c.replace("–", "--") for c in cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}"]
    return "\n".join(lines) + "\n"


def figure(t: pd.DataFrame, runs_by_row: dict, path: Path):
    """Every seed a dot (a red cross: a run that does not train), the paper's value a cross,
    one line per row (log scale)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .report_figures import save_figure

    fig, ax = plt.subplots(figsize=(7.5, 0.36 * len(t) + 1.4))
    for i, r in enumerate(t.itertuples()):
        e = runs_by_row.get(r.row, [])
        bad = [x for x in e if not r.source.startswith("classical:") and x >= trains_below(r.source)]
        good = [x for x in e if x not in bad]
        ax.scatter(good, [i] * len(good), s=14, color="0.45", zorder=2,
                   label="ours, one seed (exact: K-NN, pairwise)" if i == 0 else None)
        ax.scatter(bad, [i] * len(bad), s=18, color="tab:red", marker="x", zorder=2)  # runs that do not train
        if r.paper_error:
            ax.scatter([r.paper_error], [i], marker="x", color="tab:red", s=30, zorder=3,
                       label="paper (Fig. 9)" if i == 0 else None)
    ax.set_yticks(range(len(t)), t.row)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("MNIST test error (%), final pass")
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(axis="x", alpha=0.3, which="both")
    return save_figure(fig, path)


def build(out: Path, seeds: int = MAX_SEEDS, epochs: int = GRID.epochs, train_size: int = GRID.train_size, tex: bool = False) -> list:
    """fig9.md/.csv (and .tex) and figures/fig9.png, if a row of its own (K-NN, pairwise, a
    network of the fig9 family) has a result; returns the paths."""
    t = table(out, seeds, epochs, train_size)
    if not ((t.n_runs > 0) & ~t.source.isin(["paper", "paper+distortions"])).any():
        return []
    written = []
    for name, text in [("fig9.csv", t.to_csv(index=False, float_format="%.6g")),
                       ("fig9.md", markdown(t, seeds, epochs, train_size))] + \
            ([("fig9.tex", latex(t, seeds, epochs, train_size))] if tex else []):
        atomic_write_text(out / name, text)
        written.append(out / name)
    by_row = {r.row: ([r.error] if r.seeds == "exact" else [float(x) for x in r.seeds.split()]) for r in t.itertuples() if r.n_runs}
    written.append(figure(t, by_row, check_writable(out / "figures") / "fig9.png"))
    return written


if __name__ == "__main__":
    main()
