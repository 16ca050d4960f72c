"""The Fig. 9 table (experiments/fig9.py): each row reads its own source (runs of its variant,
classical.json, rejection.json), the interval is the t interval of the mean minus the paper's
value, and a row without results says so."""

from __future__ import annotations

import json
import math

import pandas as pd
import pytest
from scipy import stats

from experiments import fig9


@pytest.fixture
def results(tmp_path, monkeypatch):
    runs = pd.DataFrame([{"variant": "net_fc300", "seed": s, "status": "ok", "test_error": e}
                         for s, e in enumerate([4.0, 4.2, 4.4, 4.6, 4.8])] +
                        [{"variant": "net_lenet1", "seed": 0, "status": "ok", "test_error": 1.5},
                         {"variant": "net_lenet1", "seed": 1, "status": "ok", "test_error": 1.9},
                         {"variant": "net_lenet1", "seed": 2, "status": "ok", "test_error": 90.2},  # does not train
                         {"variant": "net_linear", "seed": 0, "status": "ok", "test_error": 12.3},  # trains: below 50%
                         {"variant": "paper", "seed": 0, "status": "ok", "test_error": 0.9},
                         {"variant": "paper", "seed": 1, "status": "failed", "test_error": 90.0}])
    monkeypatch.setattr(fig9, "load_runs", lambda out, configs, seeds: runs[runs.variant.isin(configs)])
    (tmp_path / "fig9").mkdir()
    (tmp_path / "fig9" / "classical.json").write_text(json.dumps({"rows": {
        "knn_k1": {"test_error": 3.0, "rejection_0.5": 10.0, "params": 47_040_000, "multiply_adds": 47_040_000}}}))
    (tmp_path / "fig9" / "rejection.json").write_text(json.dumps({"runs": {
        "a": {"variant": "net_fc300", "seed": 0, "rejection_0.5": 20.0},
        "b": {"variant": "net_fc300", "seed": 1, "rejection_0.5": 30.0},
        "c": {"variant": "net_fc300", "seed": 7, "rejection_0.5": 99.0}}}))  # seed 7 has no run: left out
    return tmp_path


def test_a_trained_row_is_its_seeds_against_the_papers_value(results):
    t = fig9.table(results).set_index("source")
    r = t.loc["net_fc300"]
    assert r.n == 5 and r.error == pytest.approx(4.4) and r.seeds == "4.00 4.20 4.40 4.60 4.80"
    half = stats.t.ppf(0.975, 4) * pd.Series([4.0, 4.2, 4.4, 4.6, 4.8]).std() / math.sqrt(5)
    assert (r.difference, r.diff_ci95_low, r.diff_ci95_high) == pytest.approx((-0.3, -0.3 - half, -0.3 + half))
    assert r.vs_paper_uncertainty == "undecided"  # [-0.69, +0.09]: crosses the -0.1 edge
    assert r.rejection == pytest.approx(25.0)  # the mean over the seeds that have a run
    assert (r.params, r.multiply_adds) == (238_510, 238_610)  # the model's counts (+100: the +-1 targets' head)
    assert t.loc["paper"].n == 1 and t.loc["paper"].failed == 1  # a failed run is counted, not averaged


def test_an_exact_row_and_a_row_without_results(results):
    t = fig9.table(results).set_index("source")
    knn = t.loc["classical:knn_k1"]
    assert (knn.n, knn.error, knn.difference, knn.rejection) == (1, 3.0, -2.0, 10.0) and math.isnan(knn.diff_ci95_low)
    assert t.loc["classical:pairwise"].n == 0 and t.loc["net_lenet4"].n_runs == 0
    text = fig9.markdown(fig9.table(results), 20, 20, 60_000)
    assert "| LeNet-4 | 1.10 | not run yet |" in text
    assert "| K-NN Euclidean, k = 1 | 5.00 | 3.00 (exact) |" in text
    assert "| 28x28-300-10 | 4.70 | 4.40 ± 0.32 (5) |" in text


def test_a_run_that_does_not_train_is_listed_but_not_averaged(results):
    t = fig9.table(results).set_index("source")
    r = t.loc["net_lenet1"]
    assert (r.n, r.n_runs, r.seeds) == (2, 3, "1.50 1.90 90.20") and r.error == pytest.approx(1.7)
    assert t.loc["net_linear"].n == 1  # the linear classifier's runs train below 50%, not below its own 12%
    assert "1.70 ± 0.28 (2), 1 of 3 do not train" in fig9.markdown(fig9.table(results), 20, 20, 60_000)


def test_the_table_is_written_only_with_a_row_of_its_own(results, tmp_path, monkeypatch):
    assert [p.name for p in fig9.build(results, tex=True)] == ["fig9.csv", "fig9.md", "fig9.tex", "fig9.png"]
    monkeypatch.setattr(fig9, "load_runs", lambda out, configs, seeds: pd.DataFrame(columns=["variant", "seed", "status", "test_error"]))
    empty = tmp_path / "empty"
    empty.mkdir()
    assert fig9.build(empty) == []  # no run of the family, no classical.json: nothing to show


def test_the_boosted_row_is_the_sum_of_three_nets_per_seed(results):
    def seed(s, error, called, shortcut):
        return {"seed": s, "test_error": error, "rejection_0.5": 1.0 + s, "nets_called": called,
                "shortcut_test_error": shortcut}
    (results / "fig9" / "boosted.json").write_text(json.dumps({"rows": {"net_lenet4": {
        "0": seed(0, 0.8, 1.5, 0.9), "1": seed(1, 1.0, 1.7, 1.0), "2": seed(2, 0.9, 1.6, 0.95),
        "25": seed(25, 0.1, 3.0, 0.1)}}}))  # a seed beyond the table's: left out
    t = fig9.table(results, seeds=20).set_index("source")
    r = t.loc["boosted:net_lenet4"]
    assert t.loc["boosted:net_lenet4+distortions"].n_runs == 0  # the other reading: not run yet
    assert (r.n, r.seeds, r.error, r.paper_error) == (3, "0.80 1.00 0.90", pytest.approx(0.9), 0.7)
    assert (r.rejection, r.nets_called, r.shortcut_error) == pytest.approx((2.0, 1.6, 0.95))
    params, connections = fig9.networks.build(fig9.VARIANTS["net_lenet4"].config).counts()["total"]
    assert (r.params, r.multiply_adds) == (3 * params, pytest.approx(1.6 * connections))  # three nets stored, 1.6 called
    text = fig9.markdown(fig9.table(results), 20, 20, 60_000)
    assert "| boosted LeNet-4 + distortions | 0.70 | 0.90 ± 0.10 (3) |" in text
    assert "the error is 0.95% at 1.60 nets per pattern on average (boosted LeNet-4 + distortions)" in text


def test_lenet4_knn_rows_read_one_result_per_run_and_k(results):
    (results / "fig9" / "lenet4_knn.json").write_text(json.dumps({"runs": {
        "a k=1": {"seed": 0, "k": 1, "test_error": 1.2, "rejection_0.5": 2.0},
        "a k=3": {"seed": 0, "k": 3, "test_error": 1.0, "rejection_0.5": 2.0},
        "b k=1": {"seed": 1, "k": 1, "test_error": 1.4, "rejection_0.5": 3.0}}}))
    t = fig9.table(results).set_index("source")
    one, three = t.loc["lenet4_knn:1"], t.loc["lenet4_knn:3"]
    assert (one.n, one.seeds, one.error, one.rejection) == (2, "1.20 1.40", pytest.approx(1.3), pytest.approx(2.5))
    assert (three.n, three.error, three.paper_error, three.paper_rejection) == (1, 1.0, 1.1, 1.6)
    counts = fig9.networks.build(fig9.VARIANTS["net_lenet4"].config).counts()
    below_f = sum(counts[n][0] for n in ("C1", "S2", "C3", "S4", "H"))
    assert one.params == below_f + 60_000 * 120  # the layers up to H, and 60,000 stored codes of 120 units


def test_lenet4_features_are_what_its_last_layer_reads():
    import torch

    from lenet1998.networks import build

    model = build(fig9.VARIANTS["net_lenet4"].config)
    x = torch.randn(3, 32, 32)
    h = fig9.features(model, model.config, x)
    assert h.shape == (3, 120)
    # the last layer's own computation from these codes gives the network's output
    f = model.activations["F"](model.layers["F"].linear(h, model.params("F")))
    assert torch.allclose(model.head(f), model(x.unsqueeze(1)), atol=1e-6)
