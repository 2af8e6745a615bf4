"""The claims engine: one verdict test per word of the vocabulary, the uncertainty of each kind
(seeds paired and from summaries, binomial, tie bands, exact counts), malformed claims, and the
shipped claims against the committed results and the README."""

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from ev2lite import claim_measures as measures
from ev2lite import claims as engine
from ev2lite.claims import NOT_MEASURED, claims_table, load_claims, verdict
from ev2lite.counts import count_models
from ev2lite.paper import paper_table
from ev2lite.results import RESULTS_DIR
from ev2lite.stats import (Estimate, binomial_interval, geometric_tie_band, relative_iqr, t_interval,
                           tie_band, welch_interval)

HEADER = "# test claims\n" + ",".join(engine.CLAIM_COLUMNS) + "\n"
THREE_X = (3 ** 0.5, 9.0)  # the band of a 3x claim: half to twice its log effect


def claims_file(tmp_path, rows, name="claims.csv"):
    """A claims CSV with ``rows`` (dicts of some columns; the others empty)."""
    frame = pd.DataFrame([{c: r.get(c, "") for c in engine.CLAIM_COLUMNS} for r in rows])
    path = tmp_path / name
    path.write_text(HEADER + frame.to_csv(index=False, header=False))
    return path


# ----------------------------------------------------------------------------- the vocabulary
def test_a_ratio_inside_the_band_clear_of_its_tie_band_holds():
    assert verdict(tie_band(3.2, [5, 5]), THREE_X, 1.0, "x")[0] == "holds"


def test_a_ratio_of_1_2_against_a_3x_claim_is_direction_only():
    word, why = verdict(tie_band(1.2, [2, 2]), THREE_X, 1.0, "x")
    assert word == "direction only" and "outside the band" in why


@pytest.mark.parametrize("est", [
    Estimate(0.5, -1.0, 2.0, "seeds", 3, "3 seeds"),   # an interval straddling 0
    tie_band(1.05, [5, 5]),                             # a ratio inside its tie band (10%)
    Estimate(2.0, note="one seed only: no interval"),   # no interval at all
])
def test_noise_or_no_interval_is_inconclusive(est):
    band, null, unit = ((1.73, 9.0), 1.0, "x") if est.kind == "iqr" else ((0.4, 1.6), 0.0, "points")
    assert verdict(est, band, null, unit)[0] == "inconclusive"


def test_a_clear_reversal_fails():
    word, why = verdict(Estimate(-3.0, -4.0, -2.0, "seeds", 3), (0.4, 1.6), 0.0, "points")
    assert word == "fails" and "opposite direction" in why
    assert verdict(tie_band(0.5, [5, 5]), THREE_X, 1.0, "x")[0] == "fails"


def test_far_below_the_band_with_a_tight_interval_fails_but_not_with_a_wide_one():
    seven_x = (7 ** 0.5, 49.0)
    assert verdict(tie_band(1.05, [0.5, 0.5]), seven_x, 1.0, "x")[0] == "fails"
    assert verdict(tie_band(1.3, [5, 5]), seven_x, 1.0, "x")[0] == "direction only"  # reaches a quarter


def test_a_number_of_another_quantity_is_not_comparable_whatever_its_value():
    word, why = verdict(tie_band(3.0, [1, 1]), THREE_X, 1.0, "x", "a per-step proxy of total time")
    assert (word, why) == ("not comparable", "a per-step proxy of total time")


def test_below_null_claims_and_non_inferiority_margins():
    slower = (0.49, 0.975)  # "0.70x-0.95x": the claim is a slow-down
    assert verdict(tie_band(0.8, [2, 2]), slower, 1.0, "x")[0] == "holds"
    assert verdict(tie_band(1.3, [2, 2]), slower, 1.0, "x")[0] == "fails"
    matches = (-1.0, math.inf)  # "matches or beats", a 1-point margin
    assert verdict(Estimate(-0.2, -0.8, 0.4, "seeds", 3), matches, -1.0, "points")[0] == "holds"
    word, why = verdict(Estimate(-0.2, -1.5, 1.1, "seeds", 3), matches, -1.0, "points")
    assert word == "inconclusive" and "margin" in why
    with pytest.raises(ValueError, match="straddles"):
        verdict(Estimate(1.0, 0.5, 1.5, "seeds", 3), (-1.0, 1.0), 0.0, "points")


# ----------------------------------------------------------------------------- uncertainty
def test_t_interval_is_scipys_student_t_with_n_minus_1_degrees_of_freedom():
    x = [0.41, 0.44, 0.39, 0.47]
    est = t_interval(x)
    low, high = scipy_stats.t.interval(0.95, 3, loc=np.mean(x), scale=scipy_stats.sem(x))
    assert (est.low, est.high, est.n, est.kind) == (pytest.approx(low), pytest.approx(high), 4, "seeds")
    assert t_interval([0.4]).kind == "none" and not t_interval([0.4]).has_interval


def test_welch_interval_of_a_difference_matches_scipys_welch_test():
    a, b = np.array([0.44, 0.41, 0.43]), np.array([0.40, 0.37, 0.41, 0.39])
    est = welch_interval([a.mean(), b.mean()], [a.std(ddof=1), b.std(ddof=1)], [3, 4], [1, -1])
    ci = scipy_stats.ttest_ind(a, b, equal_var=False).confidence_interval(0.95)
    assert (est.low, est.high) == (pytest.approx(ci.low), pytest.approx(ci.high))
    assert welch_interval([0.4, 0.3], [0.01, 0.0], [1, 3], [1, -1]).kind == "none"


def test_binomial_interval_and_tie_bands():
    est = binomial_interval([0.5], 400, [1.0])
    assert est.high - est.value == pytest.approx(1.959964 * 0.025, rel=1e-5)
    band = tie_band(2.0, [10, 15])
    assert (band.low, band.high) == (pytest.approx(2 / 1.25), pytest.approx(2.5))
    assert tie_band(2.0, [float("nan"), 5]).kind == tie_band(2.0, [0.0, 5]).kind == "none"  # not saved, one repeat
    mean = geometric_tie_band([2.0, 8.0], [10, 30])
    assert mean.value == pytest.approx(4.0) and mean.high == pytest.approx(4.0 * 1.2)
    assert relative_iqr([1, 2, 3, 4, 5]) == pytest.approx(100 * 2 / 3)


def test_the_side_of_an_interval_is_a_tie_when_it_touches_the_null():
    assert tie_band(0.8, [5, 5]).side(1.0) == -1 and tie_band(1.3, [5, 5]).side(1.0) == 1
    assert tie_band(0.95, [5, 5]).side(1.0) == 0  # 0.86-1.05 includes 1
    assert Estimate(2.0, 1.0, 3.0, "seeds").side(1.0) == 0  # an end on the null is not clear of it
    assert Estimate(2.0).side(0.0) == 0  # no interval: never a side


# ----------------------------------------------------------------------------- the engine
SPEED = {"id": "speed", "claim": "b is faster", "paper_value": "3x", "source": "Table 0",
         "result": "speed.csv", "where": 'model == "b"', "measure": "images_per_s",
         "versus": 'model == "a"', "combine": "ratio", "unit": "x", "uncertainty": "iqr",
         "spread": "iqr_percent", "band": "1.73..9"}
GAIN = {"id": "gain", "claim": "adaptive helps", "paper_value": "+0.8 points", "source": "Table 13",
        "result": "gain.csv", "where": 'regularization == "adaptive"', "measure": "100 * mean",
        "versus": 'regularization == "vanilla"', "combine": "difference", "unit": "points",
        "uncertainty": "seeds", "spread": "mean std", "per_seed": "gain_runs.csv test_acc", "band": "0.4..1.6"}
COUNT = {"id": "count", "claim": "smaller", "paper_value": "6.8x", "source": "Figure 1", "result": "speed.csv",
         "where": 'model == "a"', "measure": "params", "unit": "x", "uncertainty": "exact", "band": "2.6..46"}
LATER = {"id": "later", "claim": "not run yet", "paper_value": "3x", "source": "Table 3", "result": "later.csv",
         "measure": "x", "unit": "x", "uncertainty": "exact", "band": "1.73..9"}


def write_results(folder, runs=True):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"model": ["a", "b"], "images_per_s": [10.0, 25.0], "iqr_percent": [5.0, 5.0],
                  "params": [7.0, 1.0]}).to_csv(folder / "speed.csv", index=False)
    pd.DataFrame({"regularization": ["vanilla", "adaptive"], "mean": [0.40, 0.42], "std": [0.02, 0.03],
                  "count": [3, 3]}).to_csv(folder / "gain.csv", index=False)
    if runs:  # two epochs per run: only the last counts; adaptive beats vanilla by 2, 2.5, 3 points
        rows = [{"regularization": reg, "seed": seed, "epoch": epoch,
                 "test_acc": (0.1 if epoch == 1 else base + 0.01 * seed)
                 + (0.02 + 0.005 * seed if reg == "adaptive" else 0)}
                for reg in ("vanilla", "adaptive") for seed, base in ((0, 0.38), (1, 0.40), (2, 0.39))
                for epoch in (1, 2)]
        pd.DataFrame(rows).to_csv(folder / "gain_runs.csv", index=False)


def test_claims_table_scores_what_exists_and_marks_the_rest_not_measured(tmp_path):
    path = claims_file(tmp_path, [SPEED, GAIN, COUNT, LATER])
    empty = claims_table(tmp_path / "nothing", path)
    assert list(empty.verdict) == [NOT_MEASURED] * 4 and empty.value.isna().all()

    write_results(tmp_path / "results")
    table = claims_table(tmp_path / "results", path).set_index("id")
    assert table.loc["speed", "value"] == pytest.approx(2.5)
    assert table.loc["speed", ["verdict", "uncertainty", "result"]].tolist() == ["holds", "iqr", "speed.csv"]
    assert table.loc["speed", "ours"].startswith("2.50x (tie band 2.27x-2.75x; ±10%")
    # per-seed file: the last epochs, paired by seed: +2, +2.5 and +3 points
    paired = t_interval([2.0, 2.5, 3.0])
    assert table.loc["gain", ["value", "low", "high"]].tolist() == pytest.approx([2.5, paired.low, paired.high])
    assert table.loc["gain", "verdict"] == "direction only" and "3 seeds, paired" in table.loc["gain", "ours"]
    assert table.loc["gain", "result"] == "gain.csv gain_runs.csv"
    assert table.loc["count", ["value", "verdict"]].tolist() == [7.0, "holds"]
    assert table.loc["later", "verdict"] == NOT_MEASURED


def test_without_per_seed_values_the_interval_falls_back_to_mean_std_count(tmp_path):
    write_results(tmp_path / "results", runs=False)
    row = claims_table(tmp_path / "results", claims_file(tmp_path, [GAIN])).iloc[0]
    expected = welch_interval([0.42, 0.40], [0.03, 0.02], [3, 3], [100, -100])
    assert (row.value, row.low, row.high) == pytest.approx((2.0, expected.low, expected.high))
    assert row.verdict == "inconclusive" and "Welch" in row.ours


def test_single_runs_use_the_binomial_error_of_the_test_set(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame({"name": ["v1", "v2"], "accuracy": [0.30, 0.36]}).to_csv(results / "search.csv", index=False)
    (results / "search.json").write_text(json.dumps({"metrics": {"test_subset": 1000}}))
    row = {"id": "acc", "claim": "v2 is more accurate", "paper_value": "(ours)", "source": "nb 03",
           "result": "search.csv", "where": 'name == "v2"', "versus": 'name == "v1"', "measure": "100 * accuracy",
           "combine": "difference", "unit": "points", "uncertainty": "binomial", "spread": "accuracy test_subset",
           "band": "0..inf"}
    out = claims_table(results, claims_file(tmp_path, [row])).iloc[0]
    se = math.sqrt(0.36 * 0.64 / 1000 + 0.30 * 0.70 / 1000)
    assert out.value == pytest.approx(6.0) and out.high - out.value == pytest.approx(100 * 1.959964 * se, rel=1e-5)
    assert out.verdict == "holds"
    missing = claims_table(results, claims_file(tmp_path, [{**row, "spread": "accuracy n_test"}])).iloc[0]
    assert missing.verdict == "inconclusive" and "not recorded" in missing.ours


def test_timing_pairs_matched_on_a_key_take_the_geometric_mean(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame({"name": ["v1a", "v2a", "v1b", "v2b"], "pair": ["a", "a", "b", "b"],
                  "ips": [1.0, 2.0, 1.0, 8.0], "iqr": [5.0, 5.0, 10.0, 10.0]}).to_csv(results / "t.csv", index=False)
    row = {**SPEED, "result": "t.csv", "where": 'name in ["v2a", "v2b"]', "versus": 'name in ["v1a", "v1b"]',
           "measure": "ips", "spread": "iqr by pair"}
    out = claims_table(results, claims_file(tmp_path, [row])).iloc[0]
    assert out.value == pytest.approx(4.0) and out.high == pytest.approx(4.0 * 1.15)
    no_spread = claims_table(results, claims_file(tmp_path, [{**row, "spread": "spread_pct by pair"}])).iloc[0]
    assert no_spread.verdict == "inconclusive" and "no spread" in no_spread.ours


def test_a_timing_this_profile_did_not_make_is_not_measured_yet(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame({"model": ["a", "b"], "images_per_s": [10.0, float("nan")],
                  "iqr_percent": [5.0, float("nan")]}).to_csv(results / "speed.csv", index=False)
    row = claims_table(results, claims_file(tmp_path, [SPEED])).iloc[0]
    assert row.verdict == NOT_MEASURED and row.ours == "-" and math.isnan(row.value)


def test_a_quick_result_counts_when_no_full_one_exists(tmp_path):
    write_results(tmp_path / "results" / "quick")
    table = claims_table(tmp_path / "results", claims_file(tmp_path, [SPEED]))
    assert table.loc[0, "verdict"] == "holds" and table.loc[0, "result"] == "quick/speed.csv"


def test_a_selection_without_rows_raises_unless_not_strict(tmp_path):
    write_results(tmp_path / "results")
    path = claims_file(tmp_path, [{**SPEED, "where": 'model == "z"'}])
    with pytest.raises(engine.NoRows, match="claim 'speed'"):
        claims_table(tmp_path / "results", path)
    assert claims_table(tmp_path / "results", path, strict=False).verdict.tolist() == [NOT_MEASURED]


@pytest.mark.parametrize("change", [{"measure": "no_such_column"}, {"where": "no_such_column == 1"}])
def test_a_selection_that_does_not_fit_its_file_names_the_claim_and_the_columns(tmp_path, change):
    write_results(tmp_path / "results")
    with pytest.raises(ValueError, match="claim 'speed'.*columns are"):
        claims_table(tmp_path / "results", claims_file(tmp_path, [{**SPEED, **change}]))


@pytest.mark.parametrize("change, message", [
    ({"uncertainty": "vibes"}, "uncertainty"),
    ({"band": "at least 1"}, "LOW..HIGH"),
    ({"band": "0.5..2"}, "straddles the null"),
    ({"combine": ""}, "versus"),
    ({"combine": "product"}, "versus"),
    ({"spread": ""}, "iqr needs spread"),
    ({"uncertainty": "seeds", "spread": "mean std"}, "no ratio"),
    ({"per_seed": "runs.csv test_acc"}, "per_seed belongs"),
    ({"result": "a.csv b.csv"}, "exactly one result file"),
    ({"measure": "fixres_speedup", "result": "", "versus": "", "combine": "", "spread": ""}, "reads 1 result"),
    ({"measure": "fixres_speedup", "result": "t.csv"}, "computes its own"),
])
def test_malformed_claims_are_refused_with_the_reason(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        load_claims(claims_file(tmp_path, [{**SPEED, **change}]))


def test_duplicate_ids_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        load_claims(claims_file(tmp_path, [SPEED, SPEED]))


def test_a_measure_function_must_return_the_declared_kind(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame({"image_size": [96, 128], "batch_size": [28, 16], "images_per_s": [45.0, 24.0],
                  "iqr_percent": [8.0, 15.0]}).to_csv(results / "t2.csv", index=False)
    row = {"id": "fixres", "claim": "smaller is faster", "paper_value": "2.2x", "source": "Table 2",
           "result": "t2.csv", "measure": "fixres_speedup", "unit": "x", "uncertainty": "iqr", "band": "1.34..4.84"}
    out = claims_table(results, claims_file(tmp_path, [row])).iloc[0]
    assert out.value == pytest.approx(45 / 24) and out.verdict == "holds" and "1.78x fewer pixels" in out.ours
    with pytest.raises(ValueError, match="not the declared 'seeds'"):
        claims_table(results, claims_file(tmp_path, [{**row, "uncertainty": "seeds"}]))


# ----------------------------------------------------------------------------- measure functions
def test_table5_measure_gives_the_papers_own_number():
    paper = paper_table("table5_image_size_randaug").astype(float).rename(
        columns={"randaug_magnitude": "magnitude", "image_size": "size", "top1_pct": "mean"})
    paper["mean"] /= 100
    # (83.2 - 82.5) at 300 px minus (77.7 - 78.3) at 128 px; no std saved: no interval
    est = measures.strong_augmentation_gain_growth(paper)
    assert est.value == pytest.approx(1.3) and est.kind == "none"


def test_table5_measure_pairs_seeds_when_runs_exist():
    cells = [(s, m) for s in (64, 128) for m in (0, 18)]
    # the strong-augmentation cell at the large size gains 3, 4, 5 points in seeds 0, 1, 2
    runs = pd.DataFrame([{"size": s, "magnitude": m, "seed": seed, "epoch": 1,
                          "test_acc": 0.4 + (0.01 * seed) + (0.03 + 0.01 * seed if (s, m) == (128, 18) else 0)}
                         for s, m in cells for seed in range(3)])
    table = runs.groupby(["size", "magnitude"], as_index=False).test_acc.mean().rename(columns={"test_acc": "mean"})
    est, paired = measures.strong_augmentation_gain_growth(table, seeds=runs), t_interval([3.0, 4.0, 5.0])
    assert (est.value, est.low, est.high, est.kind) == (pytest.approx(4.0), pytest.approx(paired.low),
                                                        pytest.approx(paired.high), "seeds")
    assert t_interval([3.0, 3.0, 3.0]).kind == "none"  # no spread observed: no interval


def nas_search(reward_of_share, n=24, seed=0):
    """A random search table: each sample's blocks drawn at random; reward from its share of
    Fused-MBConv early minus late, plus noise."""
    rng = np.random.default_rng(seed)
    blocks = rng.choice(["fused", "mbconv"], size=(n, 6))
    share = (blocks[:, :3] == "fused").mean(1) - (blocks[:, 3:] == "fused").mean(1)
    reward = reward_of_share(share) + rng.normal(0, 0.01, n)
    return pd.DataFrame({"kind": "sample", "reward": reward, "accuracy": reward, "step_time_s": 1 - share,
                         **{f"block_{i + 1}": blocks[:, i] for i in range(6)}}), share


@pytest.mark.parametrize("slope, expected", [(0.05, "holds"), (-0.05, "fails"), (0.0, "inconclusive")])
def test_nas_measure_is_a_test_that_can_fail(slope, expected):
    search, share = nas_search(lambda share: 0.2 + slope * share)
    # a reference row is not a sample and does not count
    search = pd.concat([search, search.iloc[:1].assign(kind="reference", reward=9.0)])
    est = measures.fused_early_reward_correlation(search, resamples=999)
    assert est.kind == "models" and est.n == 24 and "permutation p" in est.detail
    assert est.value == pytest.approx(scipy_stats.pearsonr(share, search.reward[:24]).statistic)  # scipy
    assert verdict(est, (0, math.inf), 0, "")[0] == expected
    assert math.isnan(measures.fused_early_reward_correlation(search.iloc[:2]).value)


def test_total_time_ratio_uses_total_time_at_equal_epochs_and_the_final_size_spread():
    rows = []
    for training, sizes, seconds in (("baseline", [128] * 4, 100.0), ("progressive", [64, 64, 128, 128], 50.0)):
        for epoch, size in enumerate(sizes, 1):
            rows.append({"model": "m", "seed": 1, "training": training, "epoch": epoch, "image_size": size,
                         "images_per_s": 10.0 + (epoch % 2), "train_time_s": seconds * epoch / 4})
    est = measures.total_time_ratio(pd.DataFrame(rows))
    spread = relative_iqr([11, 10, 11, 10]) + relative_iqr([11, 10])
    assert est.value == pytest.approx(2.0) and est.high == pytest.approx(2.0 * (1 + spread / 100))


def test_depthwise_measure_reads_the_raw_timings_of_its_json():
    convs = pd.DataFrame({"H": [64, 64], "C": [32, 32], "conv": ["depthwise 3x3", "dense 3x3"],
                          "precision": ["fp32"] * 2, "format": ["channels_last"] * 2, "ps/MAC": [60.0, 10.0]})
    convs.attrs = {"raw": [{"H": 64, "C": 32, "conv": c, "precision": "fp32", "format": "channels_last",
                            "seconds": s} for c, s in (("depthwise 3x3", [1, 2, 3, 4, 5]), ("dense 3x3", [1, 2, 3]))]}
    est = measures.depthwise_time_per_mac(convs)
    assert est.value == pytest.approx(6.0) and est.high == pytest.approx(6.0 * (1 + 2 / 3 + 1 / 2))
    convs.attrs = {}
    assert measures.depthwise_time_per_mac(convs).kind == "none"


def test_count_models_gives_exact_parameters_and_multiply_adds():
    counted = count_models({"B0": ("efficientnet_b0", 224), "V2-S": ("efficientnetv2_s", None)})
    assert counted.params.tolist() == [5_288_548, 21_458_488]  # torchvision's and timm's
    assert counted.multiply_adds[0] == 385_814_752 and math.isnan(counted.multiply_adds[1])  # 0.39 G
    with pytest.raises(ValueError):
        count_models({"bad": ("efficientnet_b99", None)})


# ----------------------------------------------------------------------------- the shipped claims
@pytest.fixture(scope="module")
def shipped():
    return claims_table(RESULTS_DIR), claims_table(RESULTS_DIR, engine.FINDINGS_CSV)


def test_the_shipped_claims_fit_the_committed_results(shipped):
    claims, findings = shipped
    assert len(claims) >= 25 and claims.source.str.contains("Graphcore").any()
    for table, source in zip(shipped, (engine.CLAIMS_CSV, engine.FINDINGS_CSV)):
        files = load_claims(source).set_index("id").result
        pending = table.verdict.eq(engine.NOT_MEASURED)
        # every claim's study has full results, except a redesigned study's before its full run
        assert all(engine.superseded(RESULTS_DIR, files[i]) and not any((RESULTS_DIR / f).is_file() for f in files[i].split())
                   for i in table.id[pending])
        assert table.why[pending].str.contains("redesigned and awaits its full run (earlier design: history/", regex=False).all()
        measured = table[~pending]
        assert set(measured.verdict) <= set(engine.VERDICTS)
        assert measured.value.notna().all() and not measured.ours.eq("-").any()
        assert all((RESULTS_DIR / f).is_file() for r in measured.result for f in r.split())
    assert not set(claims.id) & set(findings.id)
    # the claims the paper does not make are in the findings, not the claims
    assert {"transfer_beats_scratch", "v2_faster_than_v1_training"} <= set(findings.id)


def test_the_committed_claims_table_and_readme_are_the_engines_output(shipped):
    claims, findings = shipped
    committed = pd.read_csv(RESULTS_DIR / "10_claims.csv", keep_default_na=False)
    assert committed.verdict.tolist() == claims.verdict.tolist() and committed.ours.tolist() == claims.ours.tolist()
    meta = json.loads((RESULTS_DIR / "10_claims.json").read_text())
    assert meta["metrics"]["verdicts"] == engine.verdict_counts(claims)
    assert meta["command"] in ("python -m ev2lite.claims",  # or notebook 10's full run, published
                               "python -m ev2lite.runbook --profile full notebooks/10_paper_figures.ipynb")
    readme = engine.README.read_text()
    assert engine.claims_section(claims, findings) in readme, "regenerate with: python -m ev2lite.claims"


def test_claims_markdown_is_a_table_with_escaped_pipes_and_the_verdicts_reason():
    table = pd.DataFrame({"claim": ["a | b", "c"], "paper": ["1x", "2x"], "verdict": ["holds", "fails"],
                          "why": ["inside", "reversed"]})
    lines = engine.claims_markdown(table, ["claim", "paper", "verdict"]).splitlines()
    assert lines[:2] == ["| claim | paper | verdict |", "| --- | --- | --- |"] and len(lines) == 4
    assert lines[2] == r"| a \| b | 1x | **holds**: inside |"


def test_training_cpu_time_ratio_is_a_geometric_mean_with_an_interval_over_pairs():
    rows = []
    for seed, speedup in ((0, 1.5), (1, 1.6), (2, 1.7)):
        for training, per_epoch in (("baseline", 10.0 * speedup), ("progressive", 10.0)):
            rows += [{"model": "m", "seed": seed, "training": training, "epoch": e, "cpu_s": per_epoch}
                     for e in (1, 2)]
    est = measures.training_cpu_time_ratio(pd.DataFrame(rows))
    assert est.value == pytest.approx((1.5 * 1.6 * 1.7) ** (1 / 3)) and est.kind == "seeds" and est.n == 3
    assert est.low < 1.5 < 1.7 < est.high
    one = measures.training_cpu_time_ratio(pd.DataFrame(rows[:4]))
    assert one.value == pytest.approx(1.5) and one.kind == "none"


def test_a_result_that_missed_its_regime_is_not_comparable(tmp_path):
    results = tmp_path / "results"
    write_results(results)
    missed = {"what": "train-test gap", "value": 10.7, "threshold": 15, "unit": "points", "at_least": True,
              "reached": False}
    (results / "gain_runs.json").write_text(json.dumps({"metrics": {"regime": [missed]}}))
    row = claims_table(results, claims_file(tmp_path, [GAIN])).iloc[0]
    assert row.verdict == "not comparable" and row.value == pytest.approx(2.5)  # the number stays shown
    assert "did not reach the regime" in row.why and "train-test gap = 10.7 points (needs >= 15)" in row.why
    (results / "gain_runs.json").write_text(json.dumps({"metrics": {"regime": [{**missed, "value": 20.0,
                                                                                "reached": True}]}}))
    assert claims_table(results, claims_file(tmp_path, [GAIN])).iloc[0].verdict == "direction only"
