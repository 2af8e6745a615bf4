"""Study helpers: seed statistics and the speed-up at equal accuracy of Table 12."""

import math

import pandas as pd
import pytest

from ev2lite.study import mean_std, paired_difference, speedup_at_equal_accuracy, time_to_reach


def history(training, seed, accs, seconds_per_epoch):
    return pd.DataFrame({"epoch": range(1, len(accs) + 1), "test_acc": accs,
                         "train_time_s": [seconds_per_epoch * (i + 1) for i in range(len(accs))],
                         "model": "net", "training": training, "seed": seed})


RUNS = pd.concat([history("baseline", 0, [0.3, 0.5, 0.6], 10.0),
                  history("progressive", 0, [0.2, 0.45, 0.58], 5.0),
                  history("baseline", 1, [0.3, 0.4, 0.5], 10.0),
                  history("progressive", 1, [0.2, 0.5, 0.55], 5.0)])


def test_time_to_reach_is_the_first_epoch_at_or_above_the_accuracy():
    run = RUNS[(RUNS.training == "baseline") & (RUNS.seed == 0)]
    assert time_to_reach(run, 0.5) == 20.0 and time_to_reach(run, 0.3) == 10.0
    assert math.isnan(time_to_reach(run, 0.61))


def test_speedup_at_equal_accuracy_uses_the_lower_final_accuracy_per_seed():
    table = speedup_at_equal_accuracy(RUNS, "model", "training", "baseline", "progressive")
    # seed 0: both reach 0.58 (progressive's final): baseline at 30 s, progressive at 15 s.
    # seed 1: both reach 0.5 (baseline's final): baseline at 30 s, progressive at 10 s.
    assert table.accuracy.tolist() == [0.58, 0.5]
    assert table.speedup_x.tolist() == [2.0, 3.0]
    with pytest.raises(ValueError, match="needs runs with training"):
        speedup_at_equal_accuracy(RUNS[RUNS.training == "baseline"], "model", "training",
                                  "baseline", "progressive")


def test_mean_std_takes_the_final_epoch_of_each_seed():
    table = mean_std(RUNS, ["training"])
    assert table.set_index("training")["mean"].to_dict() == pytest.approx(
        {"baseline": 0.55, "progressive": 0.565})
    assert table["count"].tolist() == [2, 2]


def test_paired_difference_pairs_runs_of_the_same_seed():
    table = paired_difference(RUNS, "model", "training", "progressive", "baseline")
    # seed 0: 0.58 - 0.6 = -0.02; seed 1: 0.55 - 0.5 = +0.05
    assert table.loc["net", "mean"] == pytest.approx(0.015)
    assert table.loc["net", "std"] == pytest.approx(0.0494975, rel=1e-5)
    assert table.loc["net", "count"] == 2
