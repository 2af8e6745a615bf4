"""The project's own rules: one source of dependencies, clean notebooks, the two README commands."""

import json
import re
import tomllib
from pathlib import Path

import pytest
import yaml

from ev2lite.profiles import PROFILE_NAMES, STUDIES, settings

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_environment_yml_installs_the_package_from_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert sorted(conda) == ["pip", "python=3.11"], "dependencies belong in pyproject.toml only"
    assert project["requires-python"] == ">=3.11"
    (install,) = pip
    extras = re.fullmatch(r"-e \.\[(.+)\]", install).group(1).split(",")
    assert set(extras) <= set(project["optional-dependencies"])
    pinned = {d.split("==")[0]: d.split("==")[1] for d in project["dependencies"] if "==" in d}
    assert pinned == {"torch": "2.14.1", "torchvision": "0.29.1"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_is_committed_clean_and_well_formed(path):
    nb = json.loads(path.read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    assert not any(c["outputs"] or c["execution_count"] for c in code), "strip outputs before committing"
    first = "".join(nb["cells"][0]["source"])
    assert nb["cells"][0]["cell_type"] == "markdown" and "**Paper:**" in first and "Section" in first
    assert "**Question" in first
    params = [c for c in code if "parameters" in c["metadata"].get("tags", [])]
    assert len(params) == 1 and code.index(params[0]) == 0
    assert "PROFILE" in "".join(params[0]["source"]) and "OUTPUT_DIR" in "".join(params[0]["source"])
    assert nb["metadata"]["kernelspec"]["name"] == "ev2lite"  # the kernel `make setup` registers


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_papermill_knows_the_type_and_help_of_every_parameter(path):
    import papermill

    parameters = papermill.inspect_notebook(str(path))  # what `papermill --help-notebook` shows
    assert {"PROFILE", "OUTPUT_DIR"} <= set(parameters)
    assert all(p["inferred_type_name"] in ("str", "int", "bool") and p["help"] for p in parameters.values()), parameters


def test_the_kernel_is_registered_where_any_jupyter_finds_it_and_lab_runs_as_root():
    makefile = (ROOT / "Makefile").read_text()
    assert "ipykernel install --user --name ev2lite" in makefile
    assert "--allow-root" in makefile


def test_notebooks_exist_and_are_numbered():
    assert NOTEBOOKS and all(re.fullmatch(r"\d\d_[a-z0-9_]+\.ipynb", p.name) for p in NOTEBOOKS)


def test_readme_gives_the_two_commands_and_ci_runs_the_test_one():
    readme = (ROOT / "README.md").read_text()
    assert "make\n" in readme and "make test\n" in readme
    assert "make test" in (ROOT / ".ci" / "run").read_text()


@pytest.mark.parametrize("study", STUDIES)
def test_profiles_differ_in_scale_only(study):
    keys = {name: set(settings(study, name)) for name in PROFILE_NAMES}
    assert len({frozenset(k) for k in keys.values()}) == 1


def test_unknown_profile_is_refused():
    with pytest.raises(ValueError, match="smoke, quick, full"):
        settings("quickstart", "fast")


@pytest.mark.parametrize("study", STUDIES)
def test_the_gpu_profile_scales_the_full_design_without_new_keys(study):
    from ev2lite.profiles import GPU_SCALE

    assert set(GPU_SCALE[study]) <= set(settings(study, "full"))
    assert settings(study, "gpu") == {**settings(study, "full"), **GPU_SCALE[study]}


# Training studies redesigned for the regime their claim needs (issue 14); the others follow.
REDESIGNED = ["05_progressive_learning.ipynb", "06_adaptive_regularization.ipynb",
              "07_progressive_other_networks.ipynb"]


@pytest.mark.parametrize("name", REDESIGNED)
def test_a_redesigned_study_checks_its_regime_generates_its_conclusion_and_ends_with_exercises(name):
    nb = json.loads((ROOT / "notebooks" / name).read_text())
    text = ["".join(c["source"]) for c in nb["cells"]]
    code = "\n".join(t for t, c in zip(text, nb["cells"]) if c["cell_type"] == "code")
    assert "regime_check(" in code and "conclusion_markdown(" in code and "cache=" in code
    assert any("**Regime check**" in t and "**Verdict rule" in t for t in text)
    assert text[-1].startswith("## Exercises") and text[-1].count("<details>") >= 2
