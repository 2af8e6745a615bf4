"""The main job shows where it is and resumes: a notebook executed with the same profile and code
is skipped, a changed one runs again, ``--force`` runs everything."""

import nbformat
import pytest

from ev2lite.runbook import main, up_to_date


def tiny_notebook(path, text):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_markdown_cell("# 00 · Tiny"),
                nbformat.v4.new_code_cell('PROFILE = "quick"\nOUTPUT_DIR = "."',
                                          metadata={"tags": ["parameters"]}),
                nbformat.v4.new_code_cell(f"print({text!r}, PROFILE)")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path.parent.mkdir(exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.mark.slow
def test_a_finished_notebook_is_skipped_until_its_code_changes_or_force(tmp_path, capsys):
    source, out = tiny_notebook(tmp_path / "notebooks" / "00_tiny.ipynb", "first"), tmp_path / "out"
    assert main(["--profile", "smoke", "--out", str(out), str(source)]) == 0
    printed = capsys.readouterr().out
    assert "[smoke 1/1] 00_tiny.ipynb ..." in printed and "first smoke" in printed  # cell output shown
    assert up_to_date(source, "smoke", out) and not up_to_date(source, "quick", out)

    assert main(["--profile", "smoke", "--out", str(out), str(source)]) == 0
    assert "up to date" in capsys.readouterr().out

    tiny_notebook(source, "second")  # the code changed: it runs again
    assert not up_to_date(source, "smoke", out)
    assert main(["--profile", "smoke", "--out", str(out), str(source)]) == 0
    assert "second smoke" in capsys.readouterr().out

    assert main(["--profile", "smoke", "--out", str(out), "--force", "--quiet", str(source)]) == 0
    printed = capsys.readouterr().out
    assert "done in" in printed and "up to date" not in printed and "second smoke" not in printed


@pytest.mark.slow
def test_a_notebook_edited_while_it_runs_is_not_recorded_as_up_to_date(tmp_path):
    source, out = tmp_path / "notebooks" / "00_tiny.ipynb", tmp_path / "out"
    edit = f"import pathlib; p = pathlib.Path({str(source)!r}); p.write_bytes(p.read_bytes() + b' ')"
    tiny_notebook(source, "x")
    nb = nbformat.read(source, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(edit))  # the file changes during its own run
    nbformat.write(nb, source)
    assert main(["--profile", "smoke", "--out", str(out), "--quiet", str(source)]) == 0
    assert not up_to_date(source, "smoke", out)
