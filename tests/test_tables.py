"""experiments/tables.py: summarize against a plain computation, and pooled runs say where they came from."""

import math

import numpy as np
import pandas as pd
from scipy import stats

from experiments.tables import markdown, summarize, trained_on, trained_on_line


def runs():
    rows = [("paper", 1.0, "kernel", "cpu", "node1"), ("paper", 1.2, "kernel", "cpu", "node2"),
            ("paper", 0.9, "compiled", "cuda", "gpu1"), ("relu", 1.5, "kernel", "cpu", "node1"),
            ("relu", 1.9, "kernel", "cpu", "node1"), ("relu", 9.0, "kernel", "cpu", "node1")]
    frame = pd.DataFrame(rows, columns=["variant", "test_error", "engine", "devices", "hosts"])
    frame["status"] = ["ok"] * 5 + ["failed"]  # a failed run is not in the summary
    frame["device"] = frame.devices
    return frame


def test_summarize_matches_a_plain_welch_computation():
    table = summarize(runs(), reference="paper", paper={"paper": 0.95}).set_index("variant")
    a, b = np.array([1.5, 1.9]), np.array([1.0, 1.2, 0.9])
    assert table.loc["relu", "n"] == 2 and table.loc["paper", "n"] == 3
    assert math.isclose(table.loc["relu", "mean"], a.mean()) and math.isclose(table.loc["relu", "std"], a.std(ddof=1))
    assert math.isclose(table.loc["relu", "diff"], a.mean() - b.mean())
    va, vb = a.var(ddof=1) / 2, b.var(ddof=1) / 3
    df = (va + vb) ** 2 / (va**2 / 1 + vb**2 / 2)
    half = stats.t.ppf(0.975, df) * math.sqrt(va + vb)
    assert math.isclose(table.loc["relu", "diff_ci95_low"], a.mean() - b.mean() - half)
    assert math.isclose(table.loc["relu", "diff_ci95_high"], a.mean() - b.mean() + half)
    assert math.isnan(table.loc["paper", "diff"]) and table.loc["paper", "paper"] == 0.95


def test_pooled_runs_name_their_engines_devices_and_hosts():
    table = summarize(runs(), reference="paper")
    paper = table.set_index("variant").loc["paper"]
    assert paper.trained_on == "compiled on cuda; kernel on cpu" and paper.hosts == 3
    text = markdown(table)
    assert "Runs pooled by config hash from 2 engine/device combinations" in text and "3 hosts" in text
    line = trained_on_line(runs())[-1]
    assert "kernel on cpu (5 runs)" in line and "compiled on cuda (1 run)" in line and "3 hosts" in line


def test_trained_on_reads_every_resumed_stretch():
    manifest = {"device": "cpu", "segments": [{"engine": "kernel", "device": "cpu", "host": "a"},
                                              {"engine": "compiled", "device": "cuda", "host": "b"}]}
    assert trained_on(manifest) == ("kernel+compiled", "cpu+cuda", "a+b")
    assert trained_on({"device": "cpu", "segments": [{"engine": "kernel"}]}) == ("kernel", "cpu", "unknown")
