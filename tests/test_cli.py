"""The command line: every Recipe field is a flag; real tiny runs write their files, resume and
read configs; bad input stops with one error line and exit status 2."""

import json
import subprocess
import sys
from dataclasses import fields

import pandas as pd
import pytest

import ev2lite.train as train_module
from ev2lite.cli import main, read_config
from ev2lite.recipe import Recipe


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


TINY = ["--train-subset", "256", "--test-subset", "100", "--batch-size", "64", "--no-progress"]


def test_help_documents_every_recipe_field(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for field in fields(Recipe):
        assert f"--{field.name.replace('_', '-')}" in text, field.name
    assert "--no-channels-last" in text and "--epochs" in text and "--config" in text


def test_python_dash_m_ev2lite_train_is_the_command_line():
    result = subprocess.run([sys.executable, "-m", "ev2lite.train", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "--batch-size" in result.stdout and "torchrun" in result.stdout


def test_version_and_python_dash_m_ev2lite(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["--version"])
    assert stop.value.code == 0 and capsys.readouterr().out.startswith("ev2lite-train ")
    result = subprocess.run([sys.executable, "-m", "ev2lite", "--help"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "--batch-size" in result.stdout, result.stderr


def test_values_are_checked_before_any_data_is_read(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("EV2LITE_DATA", str(tmp_path))  # no data here: a load would fail first
    with pytest.raises(SystemExit) as stop:
        main(["--epochs", "1", "--randaugment", "99"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Stage needs randaugment in [0, 30]" in err and "not found" not in err


@pytest.mark.usefixtures("cifar_archive")
def test_tiny_run_writes_history_checkpoint_metrics_and_a_rerun_resumes(tmp_path, monkeypatch, capsys):
    out = tmp_path / "run"
    command = [*TINY, "--epochs", "1", "--out", str(out)]
    assert main(command) == 0
    assert sorted(p.name for p in out.iterdir()) == ["checkpoint.pt", "history.csv", "metrics.json"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0 <= metrics["test_acc"] <= 1 and metrics["train_time_s"] > 0
    assert metrics["params"] == 769_658 and metrics["images_per_s"] > 0
    assert metrics["config"]["recipe"]["batch_size"] == 64 and metrics["world_size"] == 1
    assert {"torch", "device", "threads"} <= set(metrics["environment"])
    history = (out / "history.csv").read_text()

    def no_training(*args, **kwargs):
        raise AssertionError("the rerun trained again instead of resuming")

    monkeypatch.setattr(train_module, "evaluate", no_training)  # called once per trained epoch
    monkeypatch.setenv("EV2LITE_DATA", str(tmp_path))  # a finished run reads no data either
    assert main(command) == 0
    assert "already holds this finished run" in capsys.readouterr().out
    assert (out / "history.csv").read_text() == history
    assert json.loads((out / "metrics.json").read_text())["test_acc"] == metrics["test_acc"]


@pytest.mark.usefixtures("cifar_archive")
def test_yaml_config_with_two_stages_and_flags_overriding_it(tmp_path):
    config = tmp_path / "progressive.yaml"
    config.write_text("""
model: efficientnetv2_cifar
train_subset: 256
test_subset: 100
recipe:
  batch_size: 32
  weight_decay: 1e-5
stages:
  - {epochs: 1, image_size: 24, randaugment: 5}
  - {epochs: 1, image_size: 32, randaugment: 10, mixup_alpha: 0.2}
""")
    out = tmp_path / "run"
    assert main(["--config", str(config), "--batch-size", "64", "--dropout", "0.1",
                 "--no-progress", "--out", str(out)]) == 0
    assert pd.read_csv(out / "history.csv").image_size.tolist() == [24, 32]
    resolved = json.loads((out / "metrics.json").read_text())["config"]
    assert resolved["recipe"]["batch_size"] == 64  # the explicit flag wins over the file
    assert resolved["recipe"]["weight_decay"] == 1e-5  # YAML reads 1e-5 as text: converted
    assert [s["randaugment"] for s in resolved["stages"]] == [5, 10]
    assert [s["dropout"] for s in resolved["stages"]] == [0.1, 0.1]  # a stage flag: every stage
    (tmp_path / "resolved.json").write_text(json.dumps(resolved))  # metrics' config is a config
    assert read_config(tmp_path / "resolved.json") == resolved


@pytest.mark.parametrize("argv, message", [
    (["--model", "efficientnetv2_sm", "--epochs", "1"], "did you mean efficientnetv2_s"),
    (["--dataset", "cifar100"], "invalid choice: 'cifar100'"),
    (["--lr", "fast"], "invalid float value: 'fast'"),
])
def test_bad_flags_exit_2_with_one_error_line(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last.startswith("ev2lite-train: error:") and message in last


def test_bad_config_missing_epochs_or_data_exit_2(tmp_path, monkeypatch, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text("recipe: {batchsize: 32}\n")
    for argv, message in [(["--config", str(config)], "recipe must be a mapping with keys among"),
                          ([], "how many epochs?")]:
        with pytest.raises(SystemExit) as stop:
            main(argv)
        assert stop.value.code == 2 and message in capsys.readouterr().err
    monkeypatch.setenv("EV2LITE_DATA", str(tmp_path))
    with pytest.raises(SystemExit) as stop:
        main(["--epochs", "1"])
    err = capsys.readouterr().err
    assert stop.value.code == 2 and "Dataset 'cifar10' (train split) not found" in err
    assert "Traceback" not in err
