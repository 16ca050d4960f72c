"""The statistics of the result tables against cases computed by hand or tabulated."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from experiments.ablation_tables import ablation_markdown, ablation_table
from experiments.stats import holm, trains, variant_summary, welch_interval, wilson_interval
from lenet1998.paper import LINEAR_CLASSIFIER_ERROR


@pytest.mark.parametrize("df, tabulated", [(2, 4.303), (10, 2.228), (30, 2.042)])
def test_t_quantiles_match_the_printed_table(df, tabulated):
    assert scipy_stats.t.ppf(0.975, df) == pytest.approx(tabulated, abs=5e-4)


def test_t_quantile_for_two_degrees_of_freedom_has_a_closed_form():
    # Student's t with 2 df: F^-1(q) = (2q - 1) / sqrt(2 q (1 - q)).
    q = 0.975
    assert scipy_stats.t.ppf(q, 2) == pytest.approx((2 * q - 1) / math.sqrt(2 * q * (1 - q)), rel=1e-12)


def test_welch_with_equal_spread_and_size_has_the_pooled_degrees_of_freedom():
    # Same n = 6 and variance 3.5 on both sides: df = 2 (n - 1) = 10, se = sqrt(2 * 3.5 / 6).
    w = welch_interval([1, 2, 3, 4, 5, 6], [3, 4, 5, 6, 7, 8])
    assert w.df == pytest.approx(10)
    assert w.diff == pytest.approx(-2)
    half = 2.228139 * math.sqrt(7 / 6)  # t(0.975, 10) to 6 digits
    assert (w.low, w.high) == pytest.approx((-2 - half, -2 + half), abs=1e-5)


def test_welch_uses_the_unrounded_satterthwaite_degrees_of_freedom():
    # a = 1, 2, 3: mean 2, s^2 = 1; b = 2, 4, 7: mean 13/3, s^2 = 19/3.
    # s_a^2/3 = 1/3, s_b^2/3 = 19/9; df = (22/9)^2 / ((1/3)^2/2 + (19/9)^2/2) = 484/185.
    w = welch_interval([1, 2, 3], [2, 4, 7])
    assert w.df == pytest.approx(484 / 185)
    assert w.diff == pytest.approx(-7 / 3)
    half = scipy_stats.t.ppf(0.975, 484 / 185) * math.sqrt(22 / 9)
    assert (w.low, w.high) == pytest.approx((-7 / 3 - half, -7 / 3 + half))
    assert 3.182 < half / math.sqrt(22 / 9) < 4.303  # between t(0.975, 3) and t(0.975, 2), not either
    reference = scipy_stats.ttest_ind([1, 2, 3], [2, 4, 7], equal_var=False)
    assert w.p == pytest.approx(reference.pvalue) and w.p == pytest.approx(0.2451127, abs=1e-7)


def test_welch_interval_of_sum_subsampling_is_the_exact_one():
    # The committed runs: the old table floored df = 2.08 to 2 and printed [+0.43, +3.62].
    w = welch_interval([2.81, 2.63, 3.81], [1.02, 0.99, 1.16])
    assert w.df == pytest.approx(2.0815, abs=1e-4)
    assert (w.low, w.high) == pytest.approx((0.49, 3.56), abs=0.005)


def test_welch_interval_ends_have_p_value_alpha():
    # Shifting b by an end of the 95% interval makes the difference exactly significant at 5%.
    a, b = np.array([2.81, 2.63, 3.81]), np.array([1.02, 0.99, 1.16])
    w = welch_interval(a, b)
    assert welch_interval(a, b + w.low).p == pytest.approx(0.05)
    assert welch_interval(a, b + w.high).p == pytest.approx(0.05)


def test_welch_needs_two_values_a_side():
    assert welch_interval([2.76], [1.02, 0.99, 1.16]) is None
    assert welch_interval([], [1.0, 2.0]) is None
    flat = welch_interval([1.0, 1.0], [2.0, 2.0])
    assert (flat.low, flat.high) == (-1.0, -1.0) and math.isnan(flat.p)


def test_holm_adjusted_p_values():
    # Sorted 0.005, 0.01, 0.03, 0.04 times 4, 3, 2, 1: 0.02, 0.03, 0.06, 0.04 -> monotone 0.06.
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.6]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([0.02]) == pytest.approx([0.02])  # a family of one: unadjusted
    out = holm([0.01, float("nan"), 0.04])  # nan: no test, not in the family (m = 2)
    assert out[0] == pytest.approx(0.02) and math.isnan(out[1]) and out[2] == pytest.approx(0.04)
    assert len(holm([])) == 0


@pytest.mark.parametrize("k, low, high", [(0, 0.0, 0.2775), (10, 0.7225, 1.0), (3, 0.1078, 0.6032)])
def test_wilson_interval(k, low, high):
    assert wilson_interval(k, 10) == pytest.approx((low, high), abs=1e-4)
    ci = scipy_stats.binomtest(k, 10).proportion_ci(method="wilson")
    assert wilson_interval(k, 10) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_wilson_of_nothing_is_undefined():
    assert all(math.isnan(x) for x in wilson_interval(0, 0))


def test_a_run_trains_when_it_beats_the_linear_classifier():
    assert LINEAR_CLASSIFIER_ERROR == 12.0  # Fig. 9, "Linear"
    assert trains(11.99) and not trains(12.0) and not trains(90.2) and not trains(float("nan"))


def test_summary_of_an_unstable_variant():
    s = variant_summary([90.18, 90.20, 2.76])
    assert (s["n_runs"], s["n_train"]) == (3, 1)
    assert s["test_error_median"] == pytest.approx(90.18)
    assert (s["test_error_q1"], s["test_error_q3"]) == pytest.approx(((2.76 + 90.18) / 2, (90.18 + 90.20) / 2))
    assert s["test_error_mean"] == pytest.approx((90.18 + 90.20 + 2.76) / 3)
    assert s["test_error_mean_trains"] == pytest.approx(2.76)
    assert math.isnan(s["test_error_std_trains"])  # one run that trains: no spread
    assert (s["train_ci95_low"], s["train_ci95_high"]) == pytest.approx(wilson_interval(1, 3))


def test_summary_counts_a_failed_run_as_not_training():
    s = variant_summary([1.0, 1.2, float("nan")])
    assert (s["n_runs"], s["n_train"]) == (3, 2)
    assert s["test_error_median"] == pytest.approx(1.1)
    none = variant_summary([90.0, 89.9])
    assert none["n_train"] == 0 and math.isnan(none["test_error_mean_trains"])


def fake_runs(errors: dict) -> pd.DataFrame:
    return pd.DataFrame([{"variant": v, "seed": s, "status": "ok", "test_error": e, "train_error": e / 2}
                         for v, es in errors.items() for s, e in enumerate(es)])


def holm_of(runs):
    from experiments import comparisons

    return comparisons.adjusted(comparisons.family(runs))


def test_the_ablation_table_compares_only_runs_that_train():
    runs = fake_runs({"paper": [1.02, 0.99, 1.16], "relu": [90.18, 90.20, 2.76], "sgd": [90.26, 89.68, 89.9],
                      "sum_subsampling": [2.81, 2.63, 3.81], "tanh": [39.75, 3.72, 9.31]})
    table = ablation_table(runs, holm_of(runs)).set_index("variant")
    relu, sgd, tanh, s = table.loc["relu"], table.loc["sgd"], table.loc["tanh"], table.loc["sum_subsampling"]
    assert (relu.n_train, relu.n_runs, relu.n_used) == (1, 3, 1)
    assert math.isnan(relu.diff_ci95_low) and math.isnan(relu.p_holm)  # fewer than 2 train: no interval, no Holm p
    assert relu.diff_to_paper == pytest.approx(2.76 - np.mean([1.02, 0.99, 1.16]))
    assert sgd.n_used == 0 and math.isnan(sgd.diff_to_paper)
    w = welch_interval([3.72, 9.31], [1.02, 0.99, 1.16])
    assert (tanh.diff_ci95_low, tanh.diff_ci95_high) == pytest.approx((w.low, w.high))
    assert s.resolved_holm == (s.p_holm < 0.05)
    assert sgd.p_fisher == pytest.approx(0.1)  # 0 of 3 against 3 of 3: Fisher's exact two-sided p = 2 / 20
    assert not math.isnan(relu.p_fisher_holm)  # the fraction is tested where the mean is not
    text = ablation_markdown(table.reset_index(), 3, 20, 60000, "over the family")
    assert "no interval: 1 run trains" in text and "no interval: 0 runs train" in text
    assert "2 rows have one" in text and "Welch-Satterthwaite" in text and "over the family" in text
    row = next(line for line in text.splitlines() if line.startswith("| sum_subsampling"))
    assert "+2.03 [+0.49, +3.56]" in row
    assert "0/3 vs 3/3, Holm p" in next(line for line in text.splitlines() if line.startswith("| sgd"))


def test_one_holm_family_covers_every_comparison_of_every_table_once():
    """Every distinct (variant, base) pair of the ablation and family tables, fixed by the
    definitions: 2 tests each (mean: Welch; trained fraction: Fisher), untested ones at p = 1; a
    pair that two tables print (road1_input = unit_input against paper) is one test with one p."""
    from scipy.stats import fisher_exact

    from experiments import comparisons
    from experiments.ablation_tables import family_table

    runs = fake_runs({"paper": [1.02, 0.99, 1.16, 1.05], "tanh": [39.75, 3.72, 9.31], "sgd": [90.26, 89.68, 89.9],
                      "unit_input": [1.50, 1.60, 1.55], "road1_input": [1.50, 1.60, 1.55]})
    pairs = comparisons.pairs()
    assert len(pairs) == len({comparisons.key(*p) for p in pairs}) == 39  # the definitions fix the family
    assert ("road1_input", "paper") not in pairs and ("unit_input", "paper") in pairs
    family = comparisons.family(runs)
    raw = [1.0] * (2 * len(pairs))  # no data: p = 1, still counted
    at = {p: i for i, p in enumerate(pairs)}
    raw[at[("tanh", "paper")]] = welch_interval([3.72, 9.31], [1.02, 0.99, 1.16, 1.05]).p
    raw[at[("unit_input", "paper")]] = welch_interval([1.50, 1.60, 1.55], [1.02, 0.99, 1.16, 1.05]).p
    raw[len(pairs) + at[("tanh", "paper")]] = fisher_exact([[2, 1], [4, 0]]).pvalue
    raw[len(pairs) + at[("sgd", "paper")]] = fisher_exact([[0, 3], [4, 0]]).pvalue
    expected = holm(raw)
    got = list(family.p_welch_holm) + list(family.p_fisher_holm)
    # tests of their own: tanh's and unit_input's means, the fractions of tanh, sgd and unit_input (3/3 vs 4/4:
    # p = 1, a test); sgd's mean (none trains) and every comparison without runs count at p = 1 and print none
    tested = [at[("tanh", "paper")], at[("unit_input", "paper")]] + \
        [len(pairs) + at[p] for p in [("tanh", "paper"), ("sgd", "paper"), ("unit_input", "paper")]]
    assert [got[i] for i in tested] == pytest.approx([expected[i] for i in tested])
    assert sorted(i for i, p in enumerate(got) if not math.isnan(p)) == sorted(tested)
    holm_p = comparisons.adjusted(family)
    ablation = ablation_table(runs, holm_p).set_index("variant")
    road = family_table(runs, "roadmap", holm_p).set_index("variant")
    assert road.loc["road1_input", "p_holm"] == ablation.loc["unit_input", "p_holm"] == \
        pytest.approx(expected[at[("unit_input", "paper")]])
    assert ablation.loc["sgd", "p_fisher_holm"] == pytest.approx(expected[len(pairs) + at[("sgd", "paper")]])
    text = comparisons.markdown(family, 4, 20, 60000)
    assert "of 78 tests" in text and "| tanh | paper | 2 of 3 | 4 of 4 |" in text


def test_the_ablation_figure_marks_runs_that_do_not_train_and_averages_only_those_that_do(tmp_path, monkeypatch):
    import matplotlib.collections

    from experiments import report_figures as report

    drawn = {}
    monkeypatch.setattr(report, "save_figure", lambda fig, path: drawn.setdefault(path.name, fig) and path)
    monkeypatch.setattr(report, "by_variant", lambda out, runs: {})  # no run folders: no per-pass figures
    runs = fake_runs({"paper": [1.02, 0.99, 1.16], "relu": [90.18, 90.20, 2.76, 2.50]})
    report.figures(tmp_path, runs, ablation_table(runs, holm_of(runs)), data_dir=tmp_path / "no-mnist")
    ax = drawn["ablation.png"].axes[0]
    relu_row = list(ablation_table(runs, holm_of(runs)).variant).index("relu")
    means = {}  # the errorbar markers: one per variant with 2 runs that train, at their mean
    for line in ax.lines:
        x, y = line.get_xdata(), line.get_ydata()
        if line.get_marker() == "o" and len(x) == 1:
            means[int(y[0])] = float(x[0])
    assert means[relu_row] == pytest.approx((2.76 + 2.50) / 2)  # not 46.4, the mean of every run
    crosses = [c for c in ax.collections if isinstance(c, matplotlib.collections.PathCollection)
               and c.get_offsets().shape[0] and (c.get_offsets()[:, 0] >= LINEAR_CLASSIFIER_ERROR).all()]
    assert sorted(x for c in crosses for x in c.get_offsets()[:, 0]) == pytest.approx([90.18, 90.20])
    assert "2 of 4 do not train" in [t.get_text() for t in ax.texts]  # the crosses overlap: counted in words


def test_a_family_table_compares_each_variant_with_its_own_base():
    from experiments.ablation_tables import family_markdown, family_table

    # the road: paper -> road1_input -> road2_init; road2 is compared with road1, not with paper
    runs = fake_runs({"paper": [1.02, 0.99, 1.16], "road1_input": [1.50, 1.60, 1.55],
                      "unit_input": [1.50, 1.60, 1.55],  # the same config: collect_runs gives both names its runs
                      "road2_init": [1.52, 1.58, 90.1]})
    table = family_table(runs, "roadmap", holm_of(runs)).set_index("variant")
    assert table.loc["paper", "base"] == "" and math.isnan(table.loc["paper", "p_holm"])
    assert table.loc["road1_input", "base"] == "paper" and table.loc["road2_init", "base"] == "road1_input"
    w1 = welch_interval([1.50, 1.60, 1.55], [1.02, 0.99, 1.16])
    w2 = welch_interval([1.52, 1.58], [1.50, 1.60, 1.55])  # the run at 90.1% does not train
    assert table.loc["road2_init", "diff"] == pytest.approx(w2.diff)
    assert table.loc["road2_init", "p_holm"] >= w2.p and table.loc["road1_input", "p_holm"] >= w1.p  # adjusted
    assert w1.low > 0.1 and table.loc["road1_input", "vs_paper_uncertainty"] == "beyond"
    assert table.loc["road2_init", "vs_paper_uncertainty"] == ("inside" if -0.1 <= w2.low and w2.high <= 0.1
                                                              else "undecided")
    text = family_markdown(table.reset_index(), "roadmap", 20, 20, 60000, "over the family")
    assert "`road3_output`" in text.splitlines()[-1]  # the steps without runs are named
    row = next(line for line in text.splitlines() if line.startswith("| road2_init"))
    assert "2 of 3" in row and "2 (3)" in row


def test_the_seed_count_comes_from_the_spreads_alone():
    from experiments.stats import seeds_needed, welch_half_width

    # equal spreads and sizes: df = 2n - 2, half-width t * s * sqrt(2 / n)
    assert welch_half_width(0.1, 10, 0.1, 10) == pytest.approx(scipy_stats.t.ppf(0.975, 18) * 0.1 * math.sqrt(0.2))
    n, width = seeds_needed(0.05, 0.12, 20)
    assert n == 10 and width <= 0.10  # already narrow enough at 10
    n, width = seeds_needed(0.14, 0.12, 20)
    assert 10 < n <= 20 and width <= 0.10 < welch_half_width(0.14, n - 1, 0.12, 20)  # the smallest such n
    n, width = seeds_needed(0.40, 0.12, 20)
    assert n == 20 and width > 0.10  # 20 seeds cannot reach +-0.10: the width is reported


def test_the_seed_plan_reads_seeds_0_to_9_and_never_a_difference():
    from experiments.ablation_tables import seed_plan

    rng = np.random.default_rng(0)
    paper = list(1.0 + 0.12 * rng.standard_normal(10))
    runs = fake_runs({"paper": paper + [5.0] * 5,  # seeds 10-14 are ignored by the plan
                      "full_c3": list(1.3 + 0.05 * rng.standard_normal(10)),
                      "max_pool": list(1.3 + 0.60 * rng.standard_normal(10)),
                      "relu": [90.2] * 5 + [1.2] * 5, "mle": [1.0] * 9})  # mle: 9 seeds, not planned yet
    plan = seed_plan(runs).set_index("variant")
    assert list(plan.index) == ["paper", "max_pool", "full_c3", "relu"]
    assert plan.loc["paper", "seeds"] == 20 and plan.loc["relu", "seeds"] == 10 and not plan.loc["relu", "stable"]
    assert plan.loc["full_c3", "seeds"] < plan.loc["max_pool", "seeds"] == 20
    shifted = runs.assign(test_error=runs.test_error.where(runs.variant != "full_c3", runs.test_error + 0.5))
    assert seed_plan(shifted).equals(seed_plan(runs))  # a difference of means moves nothing


def test_the_grid_machine_time_counts_each_run_once_in_its_first_family(monkeypatch):
    from experiments import paper_tables as report

    def run(name, seconds, group):
        return {"run": name, "pass_time_s": seconds, "replicas_in_group": group}

    by_family = {"single": [run("a", 7200, 2), run("b", 3600, 1)],
                 "add_one_in": [run("c", 1800, 1), run("b", 3600, 1)],  # b: a road step = a single factor
                 "road": [run("b", 3600, 1), run("b", 3600, 1)], "open_question": [], "fingerprint": [], "fig9": []}

    def collect(out, seeds, epochs, train_size, variants):
        family = next(iter(variants.values())).family
        assert all(v.family == family for v in variants.values())
        return pd.DataFrame(by_family[family], columns=["run", "pass_time_s", "replicas_in_group"])

    monkeypatch.setattr(report, "collect_runs", collect)
    table = report.machine_time_table("results", 20, 20, 60000).set_index("family")
    assert table.runs.to_dict() == {"single": 2, "add_one_in": 1, "road": 0, "open_question": 0, "fingerprint": 0,
                                    "fig9": 0, "total": 3}
    assert table.process_hours.to_dict() == pytest.approx(
        {"single": 2.0, "add_one_in": 0.5, "road": 0.0, "open_question": 0.0, "fingerprint": 0.0, "fig9": 0.0,
         "total": 2.5})
    assert "| total | 3 | 2.5 | 1.2 |" in report.machine_time_markdown(table.reset_index())


def test_the_t_interval_of_one_mean_and_its_test_against_the_papers_value():
    from experiments.stats import mean_interval

    # x = 1.0, 1.1, 1.2: mean 1.1, s = 0.1, se = 0.1 / sqrt(3); t(0.975, 2) = 4.302653 (closed form above)
    m = mean_interval([1.0, 1.1, 1.2], mu=0.95)
    se = 0.1 / math.sqrt(3)
    assert (m.n, m.mean, m.std, m.se) == pytest.approx((3, 1.1, 0.1, se))
    assert (m.low, m.high) == pytest.approx((1.1 - 4.302653 * se, 1.1 + 4.302653 * se), abs=1e-6)
    assert m.p == pytest.approx(2 * scipy_stats.t.sf(0.15 / se, 2))
    assert mean_interval([1.0], mu=0.95) is None


def test_the_paper_gap_counts_the_seeds_at_or_below_the_papers_value():
    from experiments.paper_tables import paper_gap_markdown

    # float32 test errors: 0.95 is stored as 0.9499999881 and 0.80 as 0.8000000119; both count as reaching it
    runs = fake_runs({"paper": [0.9499999881, 1.1, 1.2, 0.9], "paper+distortions": [0.8000000119, 0.9]})
    text = paper_gap_markdown(runs)
    paper = next(line for line in text.splitlines() if line.startswith("| paper |"))
    assert "| 0.95 1.10 1.20 0.90 |" in paper and "| 2 of 4 |" in paper
    assert "1.037 ± 0.138" in paper  # mean 1.0375 - 3e-9 and std (ddof=1) of the four seeds
    dist = next(line for line in text.splitlines() if line.startswith("| paper+distortions |"))
    assert "| 1 of 2 |" in dist


def test_the_engine_check_pairs_each_seed_with_its_committed_run():
    """results/engine_check.md: new minus old by seed over the seeds where both train, the paired t
    interval and test (Holm over the variants), and the trained fractions by Fisher."""
    from scipy.stats import fisher_exact, ttest_rel

    from experiments.engine_check import markdown, paired_table

    def rows(errors, commit):
        return pd.DataFrame([{"variant": v, "seed": s, "status": "ok", "test_error": e, "engine": "kernel",
                              "git_commit": commit} for v, es in errors.items() for s, e in enumerate(es)])

    old = rows({"paper": [1.02, 0.99, 1.16, 1.05], "relu": [90.2, 2.1, 2.5, 90.1]}, "aaa")
    new = rows({"paper": [1.00, 1.05, 1.10], "relu": [2.2, 2.0, 90.2, 2.4]}, "bbb")  # paper: 3 seeds so far
    table = paired_table(old, new).set_index("variant")
    paper, relu = table.loc["paper"], table.loc["relu"]
    assert paper.pairs == 3 and paper["diff"] == pytest.approx(np.mean([-0.02, 0.06, -0.06]))
    assert paper.p_paired == pytest.approx(ttest_rel([1.00, 1.05, 1.10], [1.02, 0.99, 1.16]).pvalue)
    assert relu.pairs_both_train == 1 and math.isnan(relu.p_paired)  # seed 1 only: no interval
    assert (relu.old_trains, relu.new_trains) == (2, 3)
    assert relu.p_fisher == pytest.approx(fisher_exact([[3, 1], [2, 2]]).pvalue)
    assert paper.p_holm == pytest.approx(paper.p_paired) and paper.agrees == (paper.p_holm >= 0.05)
    text = markdown(table.reset_index(), 20, 60000)
    assert "7 of 170 pairs" in text and "| relu | 4 | 1 |" in text and "`avg_pool`" in text.splitlines()[-1]
