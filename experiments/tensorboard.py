"""TensorBoard logs of run folders: one TensorBoard run per run, one step per pass.

    python -m experiments.train --seed 0 --tensorboard runs-tb     # logged as the passes finish
    python -m experiments.ablate --quick --tensorboard runs-tb     # every run of the grid
    python -m experiments.report --tensorboard runs-tb             # the finished runs of results/runs, no training
    tensorboard --logdir runs-tb

A run is logged under <DIR>/<variant or label>/seed<N>: `ablate` names a run by its variant,
`train` by --label, and `report` by the label stored in its config.json, except that a run
labelled `train` (the default) is named by the variant whose config it has (run_label). Its scalars come from the run
folder's metrics.csv, the record of the run, so a log always equals the run's own numbers: per
pass (step = pass number) the test error, the training error measured on the fly, the
validation error (runs with val_size > 0), the training loss, eta, the range of the SDLM steps
eps_k per layer, and the pass's wall time. Only the passes not yet in the log are written, so a
resumed run, or a second export into the same folder, adds nothing twice.

Needs the optional extra: pip install -e ".[tensorboard]".
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import click

from lenet1998.results import ResultsError, read_metrics

INSTALL = 'pip install -e ".[tensorboard]"'

# metrics.csv column -> TensorBoard tag; the eps_min_<layer> / eps_max_<layer> columns become
# eps_min/<layer> and eps_max/<layer>.
TAGS = {
    "test_error": "error/test", "train_error": "error/train", "val_error": "error/val",
    "train_loss": "loss/train", "eta": "eta", "wall_time_s": "time/pass_s",
}
EPS_PREFIXES = ("eps_min_", "eps_max_")


def summary_writer():
    """torch's SummaryWriter class; a one-line ClickException naming the extra if TensorBoard is missing."""
    try:
        import tensorboard  # noqa: F401  (torch.utils.tensorboard needs it)
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise click.ClickException(f"--tensorboard needs TensorBoard, which is not installed: {INSTALL}") from None
    return SummaryWriter


def tag_of(column: str) -> str | None:
    """The TensorBoard tag of a metrics.csv column, or None for a column that is not logged."""
    if column in TAGS:
        return TAGS[column]
    for prefix in EPS_PREFIXES:
        if column.startswith(prefix):
            return f"{prefix[:-1]}/{column[len(prefix):]}"
    return None


def scalars(row: dict) -> dict:
    """{tag: value} of one metrics.csv row; missing values (NaN, empty) are left out."""
    out = {}
    for column, value in row.items():
        tag = tag_of(column)
        if tag is not None and value is not None and not (isinstance(value, float) and math.isnan(value)):
            out[tag] = float(value)
    return out


def read_scalars(folder: Path) -> dict:
    """{tag: [(step, value), ...]} of every scalar in a TensorBoard run folder (empty if none)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    if not Path(folder).is_dir():
        return {}
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})  # 0: keep every event
    events.Reload()
    return {tag: [(e.step, e.value) for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def run_name(label: str, seed: int) -> str:
    return f"{label}/seed{seed}"


class TensorBoardLog:
    """The TensorBoard runs under `logdir`; log(run folder, name) writes the passes of its
    metrics.csv not yet written. Use as a context manager (or call close()) to flush the files."""

    def __init__(self, logdir):
        self.writer_class = summary_writer()
        self.logdir = Path(logdir)
        self.writers, self.passes = {}, {}

    def log(self, run_path: Path, name: str) -> int:
        """Write the passes of run_path/metrics.csv after the last one in the log `name`;
        returns how many were written."""
        metrics = read_metrics(run_path)
        if name not in self.passes:  # a log from an earlier process: continue after its last pass
            logged = read_scalars(self.logdir / name).get(TAGS["test_error"], [])
            self.passes[name] = max((step for step, _ in logged), default=0)
        rows = [r for r in metrics.to_dict("records") if int(r["pass"]) > self.passes[name]]
        if not rows:
            return 0
        if name not in self.writers:
            self.writers[name] = self.writer_class(log_dir=str(self.logdir / name))
        writer = self.writers[name]
        for row in rows:
            for tag, value in scalars(row).items():
                writer.add_scalar(tag, value, global_step=int(row["pass"]))
        writer.flush()
        self.passes[name] = int(rows[-1]["pass"])
        return len(rows)

    def close(self) -> None:
        for writer in self.writers.values():
            writer.close()
        self.writers = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


TRAIN_LABEL = "train"  # what runs stored before experiments.train named them by their variant are labelled


def run_label(label: str, config) -> str:
    """The name a stored run is shown under: its label, except that a run labelled `train` (by
    experiments.train before it named runs by variant) takes the name of the ablation variant
    whose config it has (experiments.variants.label_of)."""
    from .variants import label_of

    return label_of(config, label) if label == TRAIN_LABEL else label


def export_runs(runs_root: Path, logdir: Path) -> list:
    """Log every finished run folder under `runs_root` (from its metrics.csv, without training)
    as <name>/seed<N>, named by run_label from its config.json. Two runs with the same name and
    seed get their config hash appended. A folder that cannot be read costs one line on stderr.
    Returns the names logged."""
    from lenet1998.config import LeNetConfig

    found = []
    for done in sorted(Path(runs_root).glob("*/done")):
        try:
            stored = json.loads((done.parent / "config.json").read_text())
            label = stored.pop("label", "run")
            config = LeNetConfig.from_dict(stored)
        except Exception as e:  # unreadable JSON, or a config this version cannot hold
            click.echo(f"skipped {done.parent}: config.json unusable ({type(e).__name__})", err=True)
            continue
        found.append((run_name(run_label(label, config), config.seed), done.parent))
    counts = {}
    for name, _ in found:
        counts[name] = counts.get(name, 0) + 1
    names = []
    with TensorBoardLog(logdir) as log:
        for name, path in found:
            name = name if counts[name] == 1 else f"{name}-{path.name}"
            try:
                log.log(path, name)
            except ResultsError as e:
                click.echo(f"skipped {e}", err=True)
                continue
            names.append(name)
    return names
