"""The reproduction report: the claims table (measured, not measured yet, malformed claims) and the
main job's index page of executed notebooks."""

import base64
import io
import math
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from ev2lite import report  # noqa: E402
from ev2lite.paper import paper_table  # noqa: E402
from ev2lite.results import RESULTS_DIR  # noqa: E402
from ev2lite.runbook import run_all  # noqa: E402

HEADER = "# test claims\n" + ",".join(report.CLAIM_COLUMNS) + "\n"


def claims_file(tmp_path, rows):
    """A claims CSV with ``rows`` (dicts of some columns; the others empty)."""
    frame = pd.DataFrame([{c: r.get(c, "") for c in report.CLAIM_COLUMNS} for r in rows])
    path = tmp_path / "claims.csv"
    path.write_text(HEADER + frame.to_csv(index=False, header=False))
    return path


SPEED = {"id": "speed", "claim": "b is faster", "paper_value": "2x", "source": "Table 0",
         "result": "speed.csv", "where": 'model == "b"', "measure": "images_per_s",
         "versus": 'model == "a"', "combine": "ratio", "unit": "x", "holds_if": ">= 1"}
GAIN = {"id": "gain", "claim": "adaptive helps", "paper_value": "+0.8 points", "source": "Table 13",
        "result": "gain.csv", "where": 'regularization == "adaptive"', "measure": "100 * mean",
        "versus": 'regularization == "vanilla"', "combine": "difference", "unit": "points",
        "holds_if": "> 0"}
LATER = {"id": "later", "claim": "not run yet", "paper_value": "3x", "source": "Table 3",
         "unit": "x", "holds_if": ">= 1"}
TIME = {"id": "time", "claim": "progressive is faster", "paper_value": "qualitative",
        "source": "Section 4", "result": "fixed.csv progressive.csv",
        "measure": "time_to_accuracy_speedup", "unit": "x", "holds_if": ">= 1"}


def write_results(folder):
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"model": ["a", "b", "b"], "images_per_s": [10.0, 24.0, 26.0]}).to_csv(
        folder / "speed.csv", index=False)
    pd.DataFrame({"regularization": ["vanilla", "adaptive"], "mean": [0.80, 0.79]}).to_csv(
        folder / "gain.csv", index=False)


def test_claims_table_measures_what_exists_and_marks_the_rest_not_measured(tmp_path):
    path = claims_file(tmp_path, [SPEED, GAIN, LATER, TIME])
    empty = report.claims_table(tmp_path / "nothing", path)
    assert list(empty.holds) == [report.NOT_MEASURED] * 4 and empty.value.isna().all()

    write_results(tmp_path / "results")
    table = report.claims_table(tmp_path / "results", path).set_index("id")
    assert table.loc["speed", "value"] == pytest.approx(25.0 / 10.0)  # mean of the "b" rows
    assert table.loc["speed", ["ours", "holds", "result"]].tolist() == ["2.50x", "yes", "speed.csv"]
    assert table.loc["gain", "value"] == pytest.approx(-1.0)
    assert table.loc["gain", ["ours", "holds"]].tolist() == ["-1.00 points", "no"]
    assert table.loc["later", "holds"] == table.loc["time", "holds"] == report.NOT_MEASURED
    assert table.loc["gain", "rule"] == "> 0 points" and table.loc["speed", "paper"] == "2x"


def test_a_quick_result_counts_when_no_full_one_exists(tmp_path):
    write_results(tmp_path / "results" / "quick")
    table = report.claims_table(tmp_path / "results", claims_file(tmp_path, [SPEED]))
    assert table.loc[0, "holds"] == "yes" and table.loc[0, "result"] == "quick/speed.csv"


def test_a_result_that_holds_nan_is_not_measured_yet(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame({"claim": ["inference", "training"], "ours": [float("nan"), 2.0]}).to_csv(
        results / "article.csv", index=False)
    rows = [{**LATER, "id": claim, "result": "article.csv", "where": f'claim == "{claim}"',
             "measure": "ours"} for claim in ("inference", "training")]
    table = report.claims_table(results, claims_file(tmp_path, rows))
    assert table.holds.tolist() == [report.NOT_MEASURED, "yes"]


def test_measure_functions_read_several_files(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    # fixed reaches 0.75 (the best both reach) after 300 s, progressive after 200 s: 1.5x
    pd.DataFrame({"test_acc": [0.5, 0.75, 0.8], "train_time_s": [100.0, 300.0, 400.0]}).to_csv(
        results / "fixed.csv", index=False)
    pd.DataFrame({"test_acc": [0.6, 0.75], "train_time_s": [120.0, 200.0]}).to_csv(
        results / "progressive.csv", index=False)
    table = report.claims_table(results, claims_file(tmp_path, [TIME]))
    assert table.loc[0, "value"] == pytest.approx(1.5) and table.loc[0, "holds"] == "yes"


def test_table5_measure_gives_the_papers_own_number():
    paper = paper_table("table5_image_size_randaug").astype(float).rename(
        columns={"randaug_magnitude": "magnitude", "image_size": "size", "top1_pct": "mean"})
    paper["mean"] /= 100
    # (83.2 - 82.5) at 300 px minus (77.7 - 78.3) at 128 px
    assert report.strong_augmentation_gain_growth(paper) == pytest.approx(1.3)


def test_nas_measure_compares_fused_stages_early_and_late_on_the_front():
    # front: one model fused in stages 1-3, one in stages 1-2; a reference and an off-front
    # sample (fused everywhere) do not count
    search = pd.DataFrame({"kind": ["sample", "sample", "reference", "sample"],
                           "pareto": [True, True, True, False],
                           **{f"block_{i}": ["fused" if i <= 3 else "mbconv", "fused" if i <= 2 else "mbconv",
                                             "fused", "fused"] for i in range(1, 7)}})
    assert report.fused_share_early_minus_late(search) == pytest.approx(5 / 6)  # 5 of 6 early, 0 late
    assert math.isnan(report.fused_share_early_minus_late(search.assign(pareto=False)))


def test_v2_speedup_counts_only_when_v2_reaches_v1s_accuracy():
    search = pd.DataFrame({"name": ["efficientnetv2_cifar", "efficientnet_cifar", "sample_00"],
                           "accuracy": [0.30, 0.28, 0.5], "step_time_s": [0.2, 0.3, 0.1]})
    assert report.v2_speedup_at_v1_accuracy(search) == pytest.approx(1.5)
    assert math.isnan(report.v2_speedup_at_v1_accuracy(search.assign(accuracy=[0.27, 0.28, 0.5])))


def test_count_models_gives_exact_parameters_and_multiply_adds():
    counted = report.count_models({"B0": ("efficientnet_b0", 224), "V2-S": ("efficientnetv2_s", None)})
    assert counted.params.tolist() == [5_288_548, 21_458_488]  # torchvision's and timm's
    assert counted.multiply_adds[0] == 385_814_752 and math.isnan(counted.multiply_adds[1])  # 0.39 G
    with pytest.raises(ValueError):
        report.count_models({"bad": ("efficientnet_b99", None)})


@pytest.mark.parametrize("change, message", [
    ({"holds_if": "at least 1"}, "holds_if"),
    ({"combine": ""}, "versus"),
    ({"combine": "product"}, "versus"),
    ({"result": "a.csv b.csv"}, "several result files"),
    ({"measure": "time_to_accuracy_speedup"}, "reads 2 result"),
    ({"measure": "strong_augmentation_gain_growth"}, "selects its own rows"),
])
def test_malformed_claims_are_refused_with_the_reason(tmp_path, change, message):
    with pytest.raises(ValueError, match=message):
        report.load_claims(claims_file(tmp_path, [{**SPEED, **change}]))


def test_duplicate_ids_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unique"):
        report.load_claims(claims_file(tmp_path, [SPEED, SPEED]))


@pytest.mark.parametrize("change", [{"where": 'model == "z"'}, {"measure": "no_such_column"}])
def test_a_selection_that_does_not_fit_its_file_names_the_claim(tmp_path, change):
    write_results(tmp_path / "results")
    with pytest.raises(ValueError, match="claim 'speed'.*columns are"):
        report.claims_table(tmp_path / "results", claims_file(tmp_path, [{**SPEED, **change}]))


def test_the_shipped_claims_fit_the_committed_results():
    claims = report.load_claims()
    assert len(claims) >= 20 and claims.source.str.contains("Graphcore").any()
    read = claims[claims.result != ""]  # the others count model parameters (notebook 10 does)
    table = report.claims_table(RESULTS_DIR, read)  # raises if a selection does not fit its file
    assert set(table.holds) <= {"yes", "no", report.NOT_MEASURED}
    measured = table[table.holds != report.NOT_MEASURED]
    assert measured.value.notna().all() and (measured.ours != "-").all()
    assert all((RESULTS_DIR / f).is_file() for r in measured.result for f in r.split())


def test_claims_markdown_is_a_table_with_escaped_pipes():
    table = pd.DataFrame({"claim": ["a | b", "c"], "paper": ["1x", "2x"]})
    text = report.claims_markdown(table, ["claim", "paper"])
    lines = text.splitlines()
    assert lines[:2] == ["| claim | paper |", "| --- | --- |"] and len(lines) == 4
    assert lines[2] == r"| a \| b | 1x |"


# ----------------------------------------------------------------------------- index page
def png_base64():
    fig, ax = plt.subplots(figsize=(1, 1))
    ax.plot([0, 1], [1, 0])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=20)
    plt.close(fig)
    return base64.b64encode(buffer.getvalue()).decode()


def executed_notebook(path, title, outputs):
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("x = 1", execution_count=1, outputs=outputs)
    nb.cells = [nbformat.v4.new_markdown_cell(f"# {title}\n\n**Paper:** Section 1"), code]
    nb.metadata["papermill"] = {"duration": 3.2, "parameters": {"PROFILE": "smoke"}}
    nbformat.write(nb, path)
    return path


def test_index_links_every_notebook_with_its_title_and_figure(tmp_path):
    png = png_base64()
    first = executed_notebook(tmp_path / "00_first.ipynb", "00 · First <study>", [
        nbformat.v4.new_output("display_data", data={"image/png": png, "text/plain": "<Figure>"})])
    second = executed_notebook(tmp_path / "01_second.ipynb", "01 · Second", [
        nbformat.v4.new_output("error", ename="ValueError", evalue="boom",
                                traceback=["ValueError: boom"])])
    (tmp_path / "figures").mkdir()
    (tmp_path / "figures" / "01_saved.png").write_bytes(base64.b64decode(png))
    (tmp_path / "figures" / "02_other.png").write_bytes(base64.b64decode(png))

    index = report.write_index(tmp_path, [first, second])
    page = index.read_text()
    links = re.findall(r'href="([^"]+)"', page)
    assert set(links) == {"00_first.html", "01_second.html"}
    assert all((tmp_path / link).is_file() for link in links)
    assert "00 · First &lt;study&gt;" in page and "01 · Second" in page
    assert f'src="data:image/png;base64,{png}"' in page  # the notebook's own figure
    assert 'src="figures/01_saved.png"' in page and "02_other" not in page  # its saved figure
    assert page.count("failed: see the traceback") == 1 and "profile smoke" in page and "ran in 3 s" in page
    assert "boom" in (tmp_path / "01_second.html").read_text()


def test_index_refuses_a_missing_notebook(tmp_path):
    with pytest.raises(FileNotFoundError, match="no executed notebook"):
        report.write_index(tmp_path, [tmp_path / "05_missing.ipynb"])


@pytest.mark.slow
def test_the_main_job_writes_the_index(tmp_path):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 00 · Tiny"),
                nbformat.v4.new_code_cell('PROFILE = "quick"\nOUTPUT_DIR = "."',
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell("print(PROFILE)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    source = tmp_path / "notebooks" / "00_tiny.ipynb"
    source.parent.mkdir()
    nbformat.write(nb, source)
    run_all("smoke", tmp_path / "out", [source])
    page = (tmp_path / "out" / "index.html").read_text()
    assert 'href="00_tiny.html"' in page and "00 · Tiny" in page and "profile smoke" in page
    assert "smoke" in (tmp_path / "out" / "00_tiny.html").read_text()
