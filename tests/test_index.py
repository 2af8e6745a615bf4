"""The main job's index page of executed notebooks, and that writing it loads no training code."""

import base64
import io
import re
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import nbformat  # noqa: E402
import pytest  # noqa: E402

from ev2lite.index import write_index  # noqa: E402
from ev2lite.runbook import run_all  # noqa: E402

# ev2lite modules that make up the training stack (data, augmentation, the training loop and
# what builds on it) and the reporting modules that read results: the runbook needs none.
TRAINING_STACK = ("ev2lite.train", "ev2lite.recipe", "ev2lite.data", "ev2lite.augment", "ev2lite.study",
                  "ev2lite.measure", "ev2lite.results", "ev2lite.claims", "ev2lite.counts")


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

    index = write_index(tmp_path, [first, second])
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
        write_index(tmp_path, [tmp_path / "05_missing.ipynb"])


def loaded_after(statement):
    """The ev2lite modules, and torch if loaded, that a fresh interpreter holds after ``statement``."""
    code = (f"import sys; {statement}; "
            "print(' '.join(m for m in sys.modules if m.startswith('ev2lite') or m == 'torch'))")
    return set(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split())


def test_the_runbook_and_the_index_load_no_training_code():
    # ``import ev2lite`` loads nothing (its names load on first use); writing the main job's
    # index needs neither torch nor the training stack nor the reporting modules
    assert loaded_after("import ev2lite") == {"ev2lite"}
    loaded = loaded_after("import ev2lite.runbook, ev2lite.index")
    assert loaded == {"ev2lite", "ev2lite.runbook", "ev2lite.index", "ev2lite.profiles"}, sorted(loaded)
    assert not loaded & set(TRAINING_STACK)
    assert "torch" in loaded_after("import ev2lite; ev2lite.create_model")


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


def test_the_index_is_a_small_book_with_neighbours_and_committed_verdicts(tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    (results / "10_claims.csv").write_text(
        "id,verdict,result\n"
        "a,holds,05_table5.csv\nb,inconclusive,05_runs.csv 06_runs.csv\nc,fails,bench_convs.csv\n")
    out = tmp_path / "out"
    out.mkdir()
    paths = [executed_notebook(out / f"{n}.ipynb", f"{n[:2]} · {n[3:]}", [])
             for n in ("04_first", "05_second", "06_third")]
    page = write_index(out, paths, results_dir=results).read_text()
    assert "committed verdicts: 1 holds, 1 inconclusive" in page  # notebook 05
    assert page.count("committed verdicts") == 2  # 05 and 06; 04 measures no claim here
    middle = (out / "05_second.html").read_text()
    hrefs = re.findall(r'href="([^"]+)"', middle)
    assert {"04_first.html", "index.html", "06_third.html"} <= set(hrefs)
    assert "04_first.html" not in re.findall(r'href="([^"]+)"', (out / "04_first.html").read_text())
    for name in ("04_first", "05_second", "06_third"):  # every link of the book resolves
        for href in re.findall(r'href="([^"#:]+\.html)"', (out / f"{name}.html").read_text()):
            assert (out / href).is_file(), (name, href)
