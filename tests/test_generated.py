"""Every committed generated text file equals what the code regenerates from the committed run
folders: the report's tables (Markdown, CSV, LaTeX), Fig. 6's table, the model cards and the
generated sections of README.md and REPRODUCING.md. A file that drifts from its runs (a table of
3 seeds where there are 20) fails here.

Not regenerated here, by name: the figures (PNG/PDF) and the released weights (binary; the
weights are checked against their checkpoints in tests/test_pretrained_and_predict.py), and the
measurements, which only a new measurement remakes: bench.md/.csv, bench_networks.md/.csv,
kernel_bench_variants*.md,
profile.md, and the check folders engine-check/, mixed-check/, timing-2pass*/, timing-grid/ and
engine_check/ (each has its own runs and command, REPRODUCING.md "Commands"; engine_check.md
at the top, paired with runs/, is regenerated). fig9.md/.csv/.tex are regenerated from the run
folders and results/fig9/*.json (K-NN, pairwise, rejection, LeNet-4 / K-NN: experiments/fig9.py, and
boosted LeNet-4: experiments/boosted.py compute them
from MNIST, which this test does not read).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from experiments import release, trainsize
from experiments.grid import GRID as GRID_BUDGET
from experiments.report import MAX_SEEDS, build_report

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "results"
REPORT_FILES = ("runs.csv", "ablation.csv", "ablation.md", "ablation.tex", "paper.csv", "paper_run.csv", "paper_run.md",
                "seed_plan.csv", "seed_plan.md", "add_one_in.csv", "add_one_in.md", "roadmap.csv", "roadmap.md",
                "open_questions.csv", "open_questions.md", "machine_time.md", "paper_gap.md", "fingerprints.md",
                "fingerprints.csv", "trainsize.csv", "trainsize.md", "comparisons.csv", "comparisons.md") + \
    (("engine_check.csv", "engine_check.md") if (RESULTS / "engine_check.md").is_file() else ()) + \
    (("fig9.csv", "fig9.md", "fig9.tex") if (RESULTS / "fig9.md").is_file() else ())
NOT_REGENERATED = ("bench.md", "bench.csv", "bench_networks.md", "bench_networks.csv", "kernel_bench_variants.md", "kernel_bench_variants_k10.md", "profile.md")


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory):
    """A results folder rebuilt from the committed run folders (a link to them), with copies of
    README.md and REPRODUCING.md whose generated sections the report rewrites."""
    out = tmp_path_factory.mktemp("results")
    (out / "runs").symlink_to(RESULTS / "runs", target_is_directory=True)
    if (RESULTS / "engine_check" / "runs").is_dir():  # the pinned commit's runs (experiments/engine_check.py)
        (out / "engine_check").mkdir()
        (out / "engine_check" / "runs").symlink_to(RESULTS / "engine_check" / "runs", target_is_directory=True)
    (out / "fingerprints").mkdir()
    shutil.copy2(RESULTS / "fingerprints" / "pass1.csv", out / "fingerprints" / "pass1.csv")
    (out / "fig9").mkdir()
    for name in ("classical.json", "rejection.json", "lenet4_knn.json", "boosted.json"):  # experiments/fig9.py
        # and experiments/boosted.py: computed once, from MNIST and the run folders
        if (RESULTS / "fig9" / name).is_file():
            shutil.copy2(RESULTS / "fig9" / name, out / "fig9" / name)
    docs = tmp_path_factory.mktemp("docs")
    for name in ("README.md", "REPRODUCING.md"):
        shutil.copy2(REPO / name, docs / name)
    build_report(out, MAX_SEEDS, GRID_BUDGET.epochs, GRID_BUDGET.train_size, data_dir=out / "no-mnist",
                 readme=docs / "README.md", latex=True)
    sizes = (15000, 30000, GRID_BUDGET.train_size)
    trainsize.write_tables(out, trainsize.collect(out, sizes, GRID_BUDGET.seeds, GRID_BUDGET.epochs),
                           GRID_BUDGET.epochs, docs / "REPRODUCING.md")
    return out, docs


def test_every_generated_text_file_of_results_is_accounted_for():
    committed = {p.name for p in RESULTS.glob("*") if p.is_file()}
    assert committed == set(REPORT_FILES) | set(NOT_REGENERATED), committed ^ (set(REPORT_FILES) | set(NOT_REGENERATED))


@pytest.mark.parametrize("name", REPORT_FILES)
def test_a_committed_table_equals_its_regeneration(regenerated, name):
    out, _ = regenerated
    assert (out / name).read_text() == (RESULTS / name).read_text(), \
        f"results/{name} differs from what `python -m experiments.report` (or trainsize) makes of the run folders"


@pytest.mark.parametrize("name", ["README.md", "REPRODUCING.md"])
def test_the_generated_sections_equal_their_regeneration(regenerated, name):
    _, docs = regenerated
    assert (docs / name).read_text() == (REPO / name).read_text(), f"a generated section of {name} is stale"


@pytest.mark.parametrize("variant", sorted(p.parent.name for p in (RESULTS / "released").glob("*/MODEL_CARD.md")))
def test_a_model_card_equals_its_regeneration(variant):
    folder = RESULTS / "released" / variant
    card = folder / "MODEL_CARD.md"
    seed = int(card.read_text().split("- **Seed**: ", 1)[1].split()[0])
    assert release.model_card(variant, seed, folder, RESULTS / "runs") == card.read_text()
