"""The generated sections of README.md and REPRODUCING.md: the text between two markers is
replaced by a table the report generates, and only for the grid committed in results/.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from lenet1998.paper import LINEAR_CLASSIFIER_ERROR
from lenet1998.results import atomic_write_text

from .ablation_tables import missing_line
from .grid import GRID as GRID_BUDGET
from .tables import fmt


README_START, README_END = "<!-- results:start -->", "<!-- results:end -->"


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
