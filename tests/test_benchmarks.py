"""Each benchmark script runs end to end with ``--tiny`` and writes its CSV and JSON.

Only that they run and what they write are checked; their timings are not (see the scripts).
``bench_train_step`` and ``bench_data`` read Imagenette / CIFAR-10 and are skipped without them.
"""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from ev2lite.data import DATASETS, data_root

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
NEEDS = {"bench_train_step": ["imagenette"], "bench_data": ["cifar10", "imagenette"],
         "bench_convs": [], "time_to_accuracy": ["cifar10"], "bench_image_size": []}
COLUMNS = {
    "bench_train_step": ["model", "image_size", "ev2lite", "torchvision", "timm",
                         "out of the box", "ev2lite/torchvision", "ev2lite/timm",
                         "ev2lite/out of the box", "channels_last/NCHW", "bf16/fp32",
                         "2/1 threads"],
    "bench_data": ["dataset", "augment", "loader_images_per_s", "model_train_images_per_s",
                   "ratio"],
    "bench_convs": ["H", "C", "conv", "precision", "format", "ms", "ps/MAC", "x dense 3x3"],
    "time_to_accuracy": ["network", "epoch", "test_acc", "train_time_s", "train_min"],
    "bench_image_size": ["model", "image_size", "channels_last images/s", "NCHW images/s",
                         "pixel_ratio", "speedup_vs_largest", "load_1min", "busy"],
}


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """``tiny_run(name)``: (output folder, completed process) of ``name.py --tiny``, run once."""
    runs = {}

    def get(name):
        missing = [d for d in NEEDS[name] if not (data_root() / DATASETS[d].archive).exists()
                   and not (data_root() / d).is_dir()]
        if missing:
            pytest.skip(f"{missing} not found in {data_root()}: set EV2LITE_DATA")
        if name not in runs:
            out = tmp_path_factory.mktemp(name)
            runs[name] = out, subprocess.run(
                [sys.executable, str(BENCHMARKS / f"{name}.py"), "--tiny", "--out", str(out)],
                capture_output=True, text=True, timeout=120)
        return runs[name]
    return get


@pytest.mark.parametrize("name", list(NEEDS))
def test_benchmark_runs_tiny_and_writes_its_results(name, tiny_run):
    out, run = tiny_run(name)
    assert run.returncode == 0, run.stderr
    table = pd.read_csv(out / f"{name}.csv")
    assert set(COLUMNS[name]) <= set(table.columns) and len(table) > 0
    meta = json.loads((out / f"{name}.json").read_text())
    assert meta["mode"] == "tiny" and f"benchmarks/{name}.py --tiny" in meta["command"]
    assert {"torch", "threads", "cpu_model", "load_average", "process_cpu_s"} <= set(meta["environment"]) and meta["raw"]
    assert table.columns[-1] in run.stdout  # the table is printed


def test_train_step_marks_torchvision_v2_b0_as_missing(tiny_run):
    """torchvision has no EfficientNetV2-B0: its columns are n/a, not an error or a zero."""
    out, _ = tiny_run("bench_train_step")
    table = pd.read_csv(out / "bench_train_step.csv").set_index("model")
    assert table.loc["efficientnetv2_b0", ["torchvision", "out of the box"]].isna().all()
    speeds = table.loc["efficientnet_b0", ["ev2lite", "torchvision", "timm", "out of the box"]]
    assert (speeds > 0).all()
