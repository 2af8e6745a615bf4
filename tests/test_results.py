"""Results are written with their provenance to the run's folder, reach the committed results/
only through publish(), and are read back."""

import json

import pandas as pd
import pytest

import ev2lite.results as results


def test_save_then_publish_then_load_round_trip(tmp_path):
    committed, out = tmp_path / "results", tmp_path / "out"
    table = pd.DataFrame({"size": [64, 128], "test_acc": [0.5, 0.625]})
    results.save_results("q", table, {"seeds": [0]}, profile="quick", out_dir=out,
                         notebook="05_progressive_learning.ipynb")
    results.save_results("t", table, {"seeds": [0]}, profile="full", out_dir=out,
                         notebook="05_progressive_learning.ipynb")
    assert results.load_results("t", committed) is None  # saving never touches results/
    written = results.publish(out, committed)
    assert sorted(p.name for p in written) == ["t.csv", "t.json"]  # the quick result stays out
    back = results.load_results("t", committed)
    pd.testing.assert_frame_equal(back, table)
    assert back.attrs["command"] == ("python -m ev2lite.runbook --profile full "
                                     "notebooks/05_progressive_learning.ipynb")
    env = back.attrs["environment"]
    assert back.attrs["metrics"] == {"seeds": [0]} and env["threads"] >= 1
    assert len(env["load_average"]) == 3 and env["process_cpu_s"] > 0 and env["cpu_model"]


def test_publish_refuses_runs_without_full_results(tmp_path, capsys):
    with pytest.raises(FileNotFoundError, match="no run folder"):
        results.publish(tmp_path / "missing", tmp_path / "results")
    out = tmp_path / "out"
    results.save_results("q", pd.DataFrame({"a": [1]}), {}, profile="quick", out_dir=out, notebook="x.ipynb")
    with pytest.raises(FileNotFoundError, match="no full-profile result"):
        results.publish(out, tmp_path / "results")
    assert results.main([str(out)]) == 2 and "no full-profile result" in capsys.readouterr().err
    assert not (tmp_path / "results").exists()
    assert json.loads((out / "q.json").read_text())["profile"] == "quick"
