"""Fig. 9-12: LeNet-5 among the paper's other networks, measured under one protocol.

    python -m experiments.fig9 classical     # K-NN (k = 1, 3) and the pairwise classifier, exact
    python -m experiments.ablate --family fig9   # the trained rows (lenet1998/networks.py)
    python -m experiments.report             # results/fig9.md/.csv from both (this module's table)

The rows not trained by back-propagation (lenet1998/classical.py) are deterministic: computed
once on the full MNIST sets into results/fig9/classical.json, with the commit and machine that
computed them. The trained rows come from their run folders (final pass, every seed); LeNet-5's
rows are `paper` and `paper+distortions`. Each row: the paper's error (Fig. 9), ours, the
difference against the paper's ±0.1, the share of test patterns rejected to reach 0.5% error
(Fig. 10: the smallest difference of the top two scores first), and the multiply-adds per
recognition and parameters (Fig. 11, 12) counted from the model.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import click
import torch

from lenet1998.classical import UNIT_OUTPUT, knn, pairwise_fit, pairwise_scores, rejection
from lenet1998.data import load_mnist
from lenet1998.results import atomic_write_text, check_writable, cpu_model, git_state

from .common import command, data_dir_option, one_line_errors

FOLDER = "fig9"
CLASSICAL = "classical.json"


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


@command()
@click.argument("what", type=click.Choice(["classical"]))
@click.option("--out", type=click.Path(file_okay=False), default="results", show_default=True,
              help="Results folder: writes <out>/fig9/classical.json.")
@data_dir_option
@one_line_errors
def main(what, out, data_dir):
    """Compute the rows of Fig. 9 that are not trained (K-NN, k = 1 and 3; the pairwise classifier)."""
    torch.set_num_threads(1)
    target = check_writable(Path(out) / FOLDER)
    data = load_mnist(data_dir)
    rows = classical_rows(data)
    record = {"rows": rows, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "cpu": cpu_model(), "torch": torch.__version__, **git_state(),
              "command": "python -m experiments.fig9 classical"}
    atomic_write_text(target / CLASSICAL, json.dumps(record, indent=2, sort_keys=True) + "\n")
    for name, r in rows.items():
        click.echo(f"{name}: test error {r['test_error']:.2f}%, rejection for 0.5% error {r['rejection_0.5']:.1f}%")
    click.echo(f"wrote {target / CLASSICAL}")


if __name__ == "__main__":
    main()
