"""Results are written with their provenance, to results/ only for the full profile, and read back."""

import pandas as pd

import ev2lite.results as results


def test_save_then_load_round_trip_and_only_full_reaches_results(tmp_path, monkeypatch):
    committed = tmp_path / "results"
    monkeypatch.setattr(results, "RESULTS_DIR", committed)
    table = pd.DataFrame({"size": [64, 128], "test_acc": [0.5, 0.625]})
    results.save_results("t", table, {"seeds": [0]}, profile="quick", out_dir=tmp_path / "out",
                         notebook="05_progressive_learning.ipynb")
    assert results.load_results("t", committed) is None  # quick runs do not touch results/
    results.save_results("t", table, {"seeds": [0]}, profile="full", out_dir=tmp_path / "out",
                         notebook="05_progressive_learning.ipynb")
    back = results.load_results("t", committed)
    pd.testing.assert_frame_equal(back, table)
    assert back.attrs["command"] == ("python -m ev2lite.runbook --profile full "
                                     "notebooks/05_progressive_learning.ipynb")
    assert back.attrs["metrics"] == {"seeds": [0]} and back.attrs["environment"]["threads"] >= 1
